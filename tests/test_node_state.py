"""Counters through engine restarts, spend accrual and windowed figures."""

from __future__ import annotations

import math

import pytest
from conftest import minimal_config_dict

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import REASONS
from llm_cost_exporter.collectors.readings import EngineReading, GpuReading, GpuSnapshot
from llm_cost_exporter.config import config_from_mapping

API = ApiPrices(0.80, 0.08, 4.00)
TARGET = "http://engine:8000/metrics"


def reading(prompt, cached, generation, started_at=1000.0, model="m") -> EngineReading:
    return EngineReading(
        model=model,
        engine="0",
        prompt_tokens=prompt,
        cached_prompt_tokens=cached,
        generation_tokens=generation,
        running=3,
        waiting=0,
        kv_usage_ratio=0.1,
        kv_capacity_tokens=1000,
        kv_tokens=100,
        started_at=started_at,
    )


def make_state(**overrides) -> NodeState:
    config = config_from_mapping(minimal_config_dict(**overrides))
    return NodeState(config, {}, API, wall_clock=lambda: 2000.0)


def test_first_observation_is_a_baseline_not_a_spike() -> None:
    state = make_state()
    state.record_engine_readings("vllm", TARGET, [reading(1e6, 0, 5e5)], 0.01)
    assert state.tokens.tokens_total == 0


def test_engine_started_after_the_exporter_counts_from_zero() -> None:
    state = make_state()
    state.record_engine_readings("vllm", TARGET, [reading(100, 0, 50, started_at=2500.0)], 0.01)
    assert state.tokens.tokens_total == 150


def test_restart_keeps_tokens_monotonic_and_counts_post_restart_tokens() -> None:
    state = make_state()
    sequence = [
        reading(1000, 100, 500),
        reading(2000, 300, 900),
        reading(150, 0, 40, started_at=3000.0),  # restarted: counters dropped
        reading(400, 50, 100, started_at=3000.0),
    ]
    seen = []
    for r in sequence:
        state.record_engine_readings("vllm", TARGET, [r], 0.01)
        seen.append(dict(state.tokens.models["m"].tokens))
    totals = [sum(t.values()) for t in seen]
    assert totals == sorted(totals), "tokens_total went down"
    # 1000+400 prompt increase, 300+50 cached, 400+100 generation... as deltas:
    assert seen[-1]["generation"] == (900 - 500) + 40 + (100 - 40)
    assert seen[-1]["cached_prompt"] == (300 - 100) + 0 + 50
    assert seen[-1]["prompt"] == (2000 - 1000) + 150 + (400 - 150) - seen[-1]["cached_prompt"]
    assert state.targets[("vllm", TARGET)].restarts == 1


def test_cost_per_million_has_no_spike_across_a_restart() -> None:
    state = make_state(capacity={"tokens_per_second": 1000}, windows=["1m"])
    now = 0.0
    page_prompt = page_gen = 0.0
    started = 1000.0
    per_million = []
    for step in range(60):
        if step == 30:  # the engine restarts: its counters start again from zero
            page_prompt = page_gen = 0.0
            started = 5000.0
        page_prompt += 3500
        page_gen += 1500
        state.record_engine_readings(
            "vllm", TARGET, [reading(page_prompt, 0, page_gen, started)], 0.01
        )
        now += 5
        state.advance(now)
        figure = state.window(60)
        if figure is not None and step > 2:
            per_million.append(figure.effective_cost_per_million)
    # 1000 tok/s on $3.20/h is $0.8889 per 1M, before and after the restart alike.
    assert max(per_million) == pytest.approx(3.20 / 3.6, rel=0.01)
    assert min(per_million) == pytest.approx(3.20 / 3.6, rel=0.01)


def test_spend_accrues_with_wall_time_even_without_tokens() -> None:
    state = make_state(
        cost={
            "gpus": [{"model": "H100", "count": 8}],
            "gpu_prices_per_hour": {"H100": 2.50},
            "node_extra_per_hour": 1.0,
            "overhead_ratio": 0.3,
            "fixed_per_month": 730.0,
        }
    )
    state.advance(0.0)
    state.advance(1800.0)
    assert state.accrual.spend["gpu"] == pytest.approx(10.0)
    assert state.accrual.spend["node_extra"] == pytest.approx(0.5)
    assert state.accrual.spend["overhead"] == pytest.approx(3.15)
    assert state.accrual.spend["fixed"] == pytest.approx(0.5)
    figure = state.window(300)
    assert figure.effective_cost_per_million == math.inf
    assert figure.cost_ratio == math.inf


def test_window_figures_from_counter_deltas() -> None:
    state = make_state(capacity={"tokens_per_second": 2000}, windows=["5m"])
    state.record_engine_readings("vllm", TARGET, [reading(0, 0, 0)], 0.0)
    state.advance(0.0)
    # 300 s at 1000 tok/s: 600k uncached prompt, 0 cached, 300k... as a 70/30 mix.
    state.record_engine_readings("vllm", TARGET, [reading(210_000, 0, 90_000)], 0.0)
    state.advance(300.0)
    figure = state.window(300)
    assert figure.tokens_per_second == pytest.approx(1000)
    assert figure.utilization == pytest.approx(0.5)
    assert figure.effective_cost_per_million == pytest.approx(3.20 / 3.6)
    assert figure.api_cost_per_million == pytest.approx(0.7 * 0.80 + 0.3 * 4.00)
    assert figure.cost_ratio == pytest.approx((3.20 / 3.6) / 1.76)
    assert figure.breakeven_utilization == pytest.approx(0.5 * figure.cost_ratio)


def test_model_without_price_withholds_comparisons_and_is_flagged() -> None:
    config = config_from_mapping(
        minimal_config_dict(api_prices={"models": {"priced": {"input": 1, "output": 2}}})
    )
    state = NodeState(config, {"priced": ApiPrices(1, 1, 2)}, None, wall_clock=lambda: 2000.0)
    state.record_engine_readings("vllm", TARGET, [reading(0, 0, 0, model="other")], 0.0)
    state.advance(0.0)
    state.record_engine_readings("vllm", TARGET, [reading(100, 0, 100, model="other")], 0.0)
    state.advance(60.0)
    assert state.tokens.unpriced == {"other"}
    assert state.tokens.models["other"].api_equivalent == 0
    figure = state.window(60)
    assert figure.cost_ratio is None and figure.api_cost_per_million is None
    assert figure.effective_cost_per_million > 0


def shared_node_state(**overrides) -> NodeState:
    """Two models on 4 GPUs each of different prices, two GPUs nobody claims."""
    config = minimal_config_dict(
        engines=[
            {"url": "http://a/metrics", "gpus": [0, 1, 2, 3]},
            {"url": "http://b/metrics", "gpus": [4, 5, 6, 7]},
        ],
        cost={
            "gpus": [{"model": "H100", "count": 4}, {"model": "L40S", "count": 6}],
            "gpu_prices_per_hour": {"H100": 2.50, "L40S": 1.00},
            "node_extra_per_hour": 1.60,
            "overhead_ratio": 0.25,
            "fixed_per_month": 730.0,
        },
        **overrides,
    )
    return NodeState(config_from_mapping(config), {}, API, wall_clock=lambda: 2000.0)


def test_per_model_spend_sums_to_the_node_and_follows_each_engines_traffic() -> None:
    state = shared_node_state(windows=["10m"])
    for target, model in (("http://a/metrics", "big"), ("http://b/metrics", "small")):
        state.record_engine_readings("vllm", target, [reading(0, 0, 0, model=model)], 0.0)
    state.advance(0.0)
    state.record_engine_readings(
        "vllm", "http://a/metrics", [reading(7e5, 0, 3e5, model="big")], 0.0
    )
    state.record_engine_readings(
        "vllm", "http://b/metrics", [reading(7e4, 0, 3e4, model="small")], 0.0
    )
    state.advance(600.0)
    spend = state.accrual.owner_spend
    assert set(spend) == {"big", "small", "(unclaimed)"}
    assert sum(spend.values()) == pytest.approx(state.accrual.spend_total, rel=1e-12)
    # 10 minutes: GPUs at 10, 4 and 2 per hour of 16 in all; the node's extra $1.60/h and
    # fixed $1/h are split by that share; 25% overhead on GPUs and node extra.
    big_expected = (10.0 + 1.60 * 10 / 16) * 1.25 / 6 + 1.0 * 10 / 16 / 6
    assert spend["big"] == pytest.approx(big_expected)
    big = state.model_window("big", 600)
    small = state.model_window("small", 600)
    assert big.effective_cost_per_million == pytest.approx(spend["big"] / 1e6 * 1e6)
    assert small.effective_cost_per_million == pytest.approx(spend["small"] / 1e5 * 1e6)
    assert state.accrual.owner_hourly["big"] == pytest.approx(big_expected * 6)


def test_several_engines_without_gpu_claims_leave_the_cost_unclaimed() -> None:
    config = minimal_config_dict(engines=["http://a/metrics", "http://b/metrics"])
    state = NodeState(config_from_mapping(config), {}, API, wall_clock=lambda: 2000.0)
    state.record_engine_readings("vllm", "http://a/metrics", [reading(0, 0, 0, model="x")], 0.0)
    state.advance(0.0)
    state.advance(3600.0)
    assert state.accrual.owner_spend == {"(unclaimed)": pytest.approx(3.20)}
    assert state.model_history == {}


def test_owned_node_meters_energy_into_spend_and_cost_per_million() -> None:
    config = minimal_config_dict(
        cost={
            "owned": {
                "purchase_prices": {"H100": 26_280},
                "amortization_months": 36,
                "energy_price_per_kwh": 0.10,
                "pue": 1.5,
            },
            "overhead_ratio": 0.0,
        },
        windows=["1h"],
    )
    state = NodeState(config_from_mapping(config), {}, API, wall_clock=lambda: 2000.0, gpus=[])

    def snapshot(joules: float) -> GpuSnapshot:
        gpu = GpuReading(0, "GPU-0", "NVIDIA H100 80GB HBM3", energy_joules=joules)
        return GpuSnapshot("550", (gpu,))

    state.record_engine_readings("vllm", TARGET, [reading(0, 0, 0)], 0.0)
    state.record_gpu_snapshot("nvml", "local", snapshot(1e6), 0.001, 0.0)
    state.advance(0.0)
    state.record_engine_readings("vllm", TARGET, [reading(7e5, 0, 3e5)], 0.0)
    state.record_gpu_snapshot(
        "nvml", "local", snapshot(1e6 + 3.6e6), 0.001, 3600.0
    )  # 1 kWh in the hour
    state.advance(3600.0)
    assert state.accrual.spend["gpu"] == pytest.approx(26_280 / (36 * 730))  # $1.00 an hour
    assert state.accrual.spend["energy"] == pytest.approx(1.0 * 0.10 * 1.5)
    figure = state.window(3600)
    assert figure.energy_cost_per_million == pytest.approx(0.15)  # per 1M tokens served
    assert figure.effective_cost_per_million == pytest.approx(1.15)
    # A driver reload zeroes NVML's counter; the exported one keeps climbing.
    state.record_gpu_snapshot("nvml", "local", snapshot(2e5), 0.001, 3700.0)
    state.advance(3700.0)
    assert state.fleet.gpus["GPU-0"].energy_joules_total == pytest.approx(1e6 + 3.6e6 + 2e5)
    assert state.accrual.spend["energy"] == pytest.approx((3.6e6 + 2e5) / 3.6e6 * 0.15)


def test_failure_counters_start_at_zero_so_the_first_failure_is_an_increase() -> None:
    state = make_state()
    state.record_engine_readings("vllm", TARGET, [reading(0, 0, 0)], 0.0)
    assert state.targets[("vllm", TARGET)].errors == dict.fromkeys(REASONS, 0)
    state.record_failure("vllm", TARGET, "timeout", "slow", 3.0, engine=True)
    assert state.targets[("vllm", TARGET)].errors == {**dict.fromkeys(REASONS, 0), "timeout": 1}
