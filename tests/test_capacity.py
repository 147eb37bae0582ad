"""Capacity learned from sustained peak throughput, and kept across restarts."""

from __future__ import annotations

import json

import pytest
from conftest import minimal_config_dict

from llm_cost_exporter.accounting.capacity import LearnedCapacity, sustained_throughput
from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.history import History, Totals
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.state_file import StateFile


def point(t: float, tokens: float) -> Totals:
    return Totals(time=t, spend=0, tokens=tokens, api_equivalent=0, unpriced_tokens=0)


def test_a_short_burst_does_not_count_as_capacity() -> None:
    history = History(600)
    tokens = 0.0
    for second in range(0, 601, 5):
        rate = 5000 if 100 <= second < 130 else 1000  # a 30 s burst
        history.append(point(second, tokens))
        tokens += rate * 5
    learned = LearnedCapacity(300)
    learned.observe(history)
    assert learned.peak is not None and learned.peak < 1500


def test_nothing_is_learned_before_a_full_window() -> None:
    history = History(300)
    history.append(point(0, 0))
    history.append(point(100, 200_000))
    assert sustained_throughput(history, 300) is None


def reading(tokens: float, model: str = "m") -> EngineReading:
    return EngineReading(model, "0", tokens * 0.7, 0, tokens * 0.3, 1, 0, None, None, None, 1.0)


def test_learned_peak_is_persisted_and_reloaded(tmp_path) -> None:
    state_file = tmp_path / "state" / "llmcost.json"
    config = config_from_mapping(
        minimal_config_dict(state_file=str(state_file), capacity={"learn_window": "1m"})
    )
    state = NodeState(config, {}, ApiPrices(1, 1, 1), wall_clock=lambda: 10.0)
    assert state.capacity is None
    for step in range(30):
        state.record_engine_readings("vllm", "t", [reading(step * 5 * 1200.0)], 0.0)
        state.advance(step * 5.0)
    assert state.capacity == (1200.0, "learned")
    StateFile(state_file).save_now(state)
    assert json.loads(state_file.read_text())["node"]["capacity"] == {
        "learned_capacity_tokens_per_second": 1200.0,
        "models": {"m": 1200.0},
    }
    restarted = NodeState(config, {}, ApiPrices(1, 1, 1), wall_clock=lambda: 10.0)
    assert StateFile(state_file).resume(restarted) == "resumed"
    assert restarted.capacity == (1200.0, "learned")


def test_configured_capacity_wins_over_learned(tmp_path) -> None:
    """Also: the capacity-only state file of earlier versions is still read."""
    state_file = tmp_path / "s.json"
    state_file.write_text(json.dumps({"learned_capacity_tokens_per_second": 999.0}))
    config = config_from_mapping(
        minimal_config_dict(state_file=str(state_file), capacity={"tokens_per_second": 4000})
    )
    state = NodeState(config, {}, ApiPrices(1, 1, 1))
    assert StateFile(state_file).resume(state) == "capacity"
    assert state.capacity == (4000, "configured")
    assert state.learned.peak == 999.0


def test_a_corrupt_state_file_is_not_fatal(tmp_path, caplog) -> None:
    state_file = tmp_path / "s.json"
    state_file.write_text("{not json")
    config = config_from_mapping(minimal_config_dict(state_file=str(state_file)))
    state = NodeState(config, {}, ApiPrices(1, 1, 1))
    assert StateFile(state_file).resume(state) == "unreadable"
    assert state.capacity is None
    assert "unreadable" in caplog.text


def test_each_model_of_a_shared_node_learns_its_own_capacity(tmp_path) -> None:
    state_file = tmp_path / "llmcost.json"
    config = config_from_mapping(
        minimal_config_dict(
            engines=[
                {"url": "http://a/metrics", "gpus": [0]},
                {"url": "http://b/metrics", "gpus": [1], "capacity_tokens_per_second": 900},
                {"url": "http://c/metrics", "gpus": [2]},
            ],
            cost={
                "gpus": [{"model": "H100", "count": 3}],
                "gpu_prices_per_hour": {"H100": 3.6},
                "overhead_ratio": 0.0,
            },
            state_file=str(state_file),
            capacity={"learn_window": "1m"},
            windows=["1m"],
        )
    )
    state = NodeState(config, {}, ApiPrices(1, 1, 1), wall_clock=lambda: 10.0)
    for step in range(30):
        state.record_engine_readings(
            "vllm", "http://a/metrics", [reading(step * 5 * 1000.0, "a")], 0.0
        )
        state.record_engine_readings(
            "vllm", "http://b/metrics", [reading(step * 5 * 300.0, "b")], 0.0
        )
        state.record_engine_readings(
            "vllm", "http://c/metrics", [reading(step * 5 * 300.0, "c")], 0.0
        )
        state.advance(step * 5.0)
    assert state.model_capacity("a") == (1000.0, "learned")
    assert state.model_capacity("b") == (900, "configured")
    assert state.model_capacity("c") == (300.0, "learned")
    # a: $3.60/h on 1,000 tok/s at full load against $1 per 1M: break-even at 100%.
    assert state.model_window("a", 60).breakeven_utilization == pytest.approx(1.0)
    assert state.model_window("b", 60).utilization == pytest.approx(300 / 900)
    StateFile(state_file).save_now(state)
    restarted = NodeState(config, {}, ApiPrices(1, 1, 1), wall_clock=lambda: 10.0)
    StateFile(state_file).resume(restarted)
    assert restarted.learned.model_peaks == {"a": 1000.0, "b": 300.0, "c": 300.0}
