"""The cost model against published figures and hand calculations."""

from __future__ import annotations

import math

import pytest

from llm_cost_exporter.accounting import costmodel as cm

A100_PER_HOUR = 3.20
A100_CAPACITY = 1975.0
API = cm.ApiPrices(input=0.80, cached_input=0.08, output=4.00)


@pytest.mark.parametrize(
    ("load", "expected"),
    [(1.0, 0.45), (0.6, 0.75), (0.2, 2.25)],
)
def test_a100_cost_per_million_matches_published_figures(load: float, expected: float) -> None:
    per_million = cm.cost_per_million_at_utilization(A100_PER_HOUR, A100_CAPACITY, load)
    assert per_million == pytest.approx(expected, abs=0.005)


def test_a100_cost_per_million_from_counter_deltas_over_one_hour() -> None:
    spend = cm.accrued_cost(A100_PER_HOUR, 3600)
    tokens = A100_CAPACITY * 0.6 * 3600
    assert spend == pytest.approx(3.20)
    assert cm.cost_per_million(spend, tokens) == pytest.approx(0.7502, abs=1e-4)


def node_hourly(
    gpu: float, node_extra: float = 0.0, overhead: float = 0.0, fixed: float = 0.0
) -> dict[str, float]:
    """The hourly cost of a node whose GPUs one owner holds, by component."""
    return cm.allocate_cost(3600, {"m": gpu}, {}, node_extra, overhead, fixed)["m"]


def test_l40s_8b_model_with_and_without_overhead() -> None:
    bare = node_hourly(1.50)
    loaded = node_hourly(1.50, overhead=0.30)
    assert cm.cost_per_million_at_utilization(sum(bare.values()), 1500, 1.0) == pytest.approx(
        0.28, abs=0.005
    )
    assert cm.cost_per_million_at_utilization(sum(loaded.values()), 1500, 1.0) == pytest.approx(
        0.36, abs=0.005
    )
    assert loaded == pytest.approx(
        {"gpu": 1.5, "energy": 0.0, "node_extra": 0.0, "overhead": 0.45, "fixed": 0.0}
    )


def test_hourly_cost_components_follow_the_loaded_cost_formula() -> None:
    parts = node_hourly(8 * 3.20, 1.10, 0.3, 7300.0)
    assert parts["gpu"] == pytest.approx(25.60)
    assert parts["node_extra"] == pytest.approx(1.10)
    assert parts["overhead"] == pytest.approx((25.60 + 1.10) * 0.3)
    assert parts["fixed"] == pytest.approx(10.0)
    assert sum(parts.values()) == pytest.approx(26.70 * 1.3 + 10.0)


def test_allocation_splits_shared_costs_by_gpu_cost_and_sums_to_the_node() -> None:
    # Two models on 4 GPUs each at different prices, two idle GPUs, 30 minutes.
    gpu_hourly = {"big": 4 * 2.50, "small": 4 * 1.00, "(unclaimed)": 2 * 1.00}
    energy = {"big": 0.40, "small": 0.10}
    parts = cm.allocate_cost(1800, gpu_hourly, energy, 1.60, 0.25, 730.0)
    assert parts["big"]["gpu"] == pytest.approx(5.00)
    assert parts["big"]["node_extra"] == pytest.approx(0.80 * 10 / 16)
    assert parts["small"]["fixed"] == pytest.approx(0.50 * 4 / 16)
    assert parts["(unclaimed)"]["energy"] == 0.0
    assert parts["big"]["overhead"] == pytest.approx((5.00 + 0.40 + 0.50) * 0.25)
    node_total = (16 * 0.5 + 0.50 + 0.80) * 1.25 + 0.50
    assert sum(sum(p.values()) for p in parts.values()) == pytest.approx(node_total, abs=1e-12)


def test_allocation_without_gpus_splits_shared_costs_evenly() -> None:
    parts = cm.allocate_cost(3600, {"a": 0.0, "b": 0.0}, {}, 2.0, 0.0, 0.0)
    assert parts["a"]["node_extra"] == parts["b"]["node_extra"] == pytest.approx(1.0)


def test_owned_gpu_amortization_and_energy_by_hand() -> None:
    # $30,000 over 36 months of 730 h; 700 W for an hour at $0.12/kWh with PUE 1.4.
    assert cm.amortized_hourly_cost(30_000, 36) == pytest.approx(30_000 / 26_280)
    assert cm.energy_cost(700 * 3600, 0.12, 1.4) == pytest.approx(0.7 * 0.12 * 1.4)


def test_api_equivalent_prices_each_kind() -> None:
    tokens = {"prompt": 600_000, "cached_prompt": 100_000, "generation": 300_000}
    assert cm.api_equivalent_cost(tokens, API) == pytest.approx(0.48 + 0.008 + 1.20)


def test_breakeven_utilization_for_the_observed_token_mix() -> None:
    # 70% uncached prompt, 30% generation: blended API price 0.56 + 1.20 = 1.76 per 1M.
    tokens = {"prompt": 0.7e6, "cached_prompt": 0.0, "generation": 0.3e6}
    blended = cm.api_equivalent_cost(tokens, API) / sum(tokens.values()) * cm.MILLION
    assert blended == pytest.approx(1.76)
    breakeven = cm.breakeven_utilization(A100_PER_HOUR, A100_CAPACITY, blended)
    assert breakeven == pytest.approx(0.45006 / 1.76, rel=1e-3)
    # At exactly that utilization, the node's cost per 1M equals the API's.
    at_breakeven = cm.cost_per_million_at_utilization(A100_PER_HOUR, A100_CAPACITY, breakeven)
    assert at_breakeven == pytest.approx(blended)


@pytest.mark.parametrize("utilization", [0.05, 0.2, 0.6, 1.0])
def test_breakeven_equals_utilization_times_cost_ratio(utilization: float) -> None:
    seconds = 900.0
    tokens_total = A100_CAPACITY * utilization * seconds
    mix = {"prompt": 0.5 * tokens_total, "cached_prompt": 0.2 * tokens_total}
    mix["generation"] = tokens_total - mix["prompt"] - mix["cached_prompt"]
    spend = cm.accrued_cost(A100_PER_HOUR, seconds)
    api = cm.api_equivalent_cost(mix, API)
    u = cm.throughput_utilization(tokens_total, seconds, A100_CAPACITY)
    assert u == pytest.approx(utilization)
    blended = api / tokens_total * cm.MILLION
    assert cm.breakeven_utilization(A100_PER_HOUR, A100_CAPACITY, blended) == pytest.approx(
        u * cm.cost_ratio(spend, api)
    )


def test_no_tokens_in_a_window_is_infinite_cost_and_below_breakeven() -> None:
    spend = cm.accrued_cost(A100_PER_HOUR, 300)
    assert cm.cost_per_million(spend, 0) == math.inf
    ratio = cm.cost_ratio(spend, cm.api_equivalent_cost({}, API))
    assert ratio == math.inf and ratio > 1
    utilization = cm.throughput_utilization(0, 300, A100_CAPACITY)
    assert utilization == 0.0
    assert utilization < cm.breakeven_utilization(A100_PER_HOUR, A100_CAPACITY, 1.76)


def test_degenerate_inputs_never_raise() -> None:
    assert math.isnan(cm.cost_per_million(0.0, 0.0))
    assert math.isnan(cm.cost_ratio(0.0, 0.0))
    assert math.isnan(cm.throughput_utilization(100, 0, A100_CAPACITY))
    assert cm.breakeven_utilization(3.2, A100_CAPACITY, 0.0) == math.inf


def test_a_node_that_can_never_beat_the_api_has_breakeven_above_one() -> None:
    # An expensive node against a very cheap API.
    assert cm.breakeven_utilization(40.0, 1000.0, 0.10) > 1
