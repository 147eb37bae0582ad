"""Bounded model cardinality: folding into (overflow), the limits, idle models leaving.

The pure admission rule first, then through the node state and its `/metrics`
page: folded tokens are counted and priced like a model without a price of
its own, the limits hold per engine and per node, idle models leave the live
gauges while their counters keep their totals.
"""

from __future__ import annotations

import logging

import pytest
from conftest import minimal_config_dict, render_page
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.model_limits import OVERFLOW, ModelLimits
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.config import ConfigError, config_from_mapping

API = ApiPrices(0.80, 0.08, 4.00)
A = "http://a/metrics"
B = "http://b/metrics"


def names(count: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


# --- the admission rule ------------------------------------------------------------


def test_names_beyond_the_engine_limit_fold_and_each_is_counted_once() -> None:
    limits = ModelLimits(per_engine=3, per_node=100)
    exported = limits.names(A, names(10), node_models=())
    assert [exported[n] for n in names(10)] == ["m0", "m1", "m2"] + [OVERFLOW] * 7
    assert limits.exceeded == {A: 7}
    # The same page again: the admitted keep their series, nothing new is counted.
    assert limits.names(A, names(10), node_models=names(3)) == exported
    assert limits.exceeded == {A: 7}
    # Two new names on the next page are counted when they appear.
    limits.names(A, [*names(10), "x", "y"], node_models=names(3))
    assert limits.exceeded == {A: 9}


def test_the_node_limit_holds_across_engines_and_known_names_need_no_new_room() -> None:
    limits = ModelLimits(per_engine=3, per_node=4)
    on_a = limits.names(A, ["a0", "a1", "a2"], node_models=())
    assert set(on_a.values()) == {"a0", "a1", "a2"}
    node = ["a0", "a1", "a2"]
    on_b = limits.names(B, ["b0", "b1", "b2"], node_models=node)
    assert on_b == {"b0": "b0", "b1": OVERFLOW, "b2": OVERFLOW}
    assert limits.exceeded == {A: 0, B: 2}
    # The node is full, but a model B serves that already has counters keeps its name.
    node.append("b0")
    on_b = limits.names(B, ["b1", "a1", "b0"], node_models=node)
    assert on_b == {"b1": OVERFLOW, "a1": "a1", "b0": "b0"}


def test_names_with_counters_keep_their_room_before_new_ones() -> None:
    limits = ModelLimits(per_engine=1, per_node=10)
    assert limits.names(A, ["new", "old"], node_models=["old"]) == {"new": OVERFLOW, "old": "old"}


def test_priced_models_are_always_admitted_and_reserved_names_never() -> None:
    limits = ModelLimits(per_engine=1, per_node=1, always=["priced", OVERFLOW])
    exported = limits.names(A, ["x", "priced", "y", OVERFLOW, "(unclaimed)"], node_models=())
    assert exported == {
        "x": "x",
        "priced": "priced",
        "y": OVERFLOW,
        OVERFLOW: OVERFLOW,
        "(unclaimed)": OVERFLOW,
    }
    # A priced name neither takes nor needs room.
    assert limits.names(B, ["priced", "z"], node_models=["x", "priced"])["priced"] == "priced"


def test_one_log_line_per_engine_not_one_per_cycle(caplog: pytest.LogCaptureFixture) -> None:
    limits = ModelLimits(per_engine=1, per_node=10)
    with caplog.at_level(logging.ERROR):
        for cycle in range(5):
            limits.names(A, names(50, f"c{cycle}-"), node_models=["c0-0"])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert A in lines[0] and "limits.models_per_engine (1)" in lines[0] and OVERFLOW in lines[0]
    assert limits.exceeded[A] == 5 * 49  # one new name admitted per page: room is left


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"models_per_engine": 0}, "limits.models_per_engine: must be between 1 and 256, got 0"),
        ({"models_per_node": 1025}, "limits.models_per_node: must be between 1 and 1024, got 1025"),
        ({"models_per_node": 2.5}, "limits.models_per_node: must be a whole number, got 2.5"),
        ({"model_idle_timeout": "0s"}, "limits.model_idle_timeout: duration must be positive"),
    ],
)
def test_limits_out_of_bounds_are_configuration_errors(limits: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(minimal_config_dict(limits=limits))
    assert str(error.value).startswith(message)


# --- through the node state -----------------------------------------------------------


def reading(model: str, generation: float, rank: str = "0", started_at: float = 100.0):
    """A reading whose prompt is 3x and cached 1x its generation: 4x its generation in
    tokens (uncached prompt, cached prompt and generation)."""
    return EngineReading(
        model=model,
        engine=rank,
        prompt_tokens=3 * generation,
        cached_prompt_tokens=generation,
        generation_tokens=generation,
        running=1,
        waiting=2,
        kv_usage_ratio=0.5,
        kv_capacity_tokens=1000,
        kv_tokens=500,
        started_at=started_at,
    )


def make_state(default: ApiPrices | None = API, prices=None, engines=(A,), **limits) -> NodeState:
    config = config_from_mapping(
        minimal_config_dict(
            limits=limits, windows=["1m"], engines=list(engines), metrics={"model_gauges": True}
        )
    )
    return NodeState(config, prices or {}, default, wall_clock=lambda: 1000.0)


def samples(state: NodeState) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render_page(state))
        for s in family.samples
        if not s.name.startswith("process_")
    }


def models_on_page(found: dict, metric: str) -> set[str]:
    return {dict(labels)["model"] for name, labels in found if name == metric}


def tokens(found: dict, model: str) -> float:
    return sum(
        v
        for (name, labels), v in found.items()
        if name == "llmcost_tokens_total" and dict(labels)["model"] == model
    )


def cycle(state: NodeState, now: float, pages: dict[str, list[EngineReading]]) -> None:
    for target, readings in pages.items():
        state.record_engine_readings("vllm", target, readings, 0.01)
    state.advance(now)


def test_folded_models_are_counted_and_priced_at_the_default() -> None:
    state = make_state(models_per_engine=2)
    models = names(6)
    cycle(state, 0.0, {A: [reading(m, 100) for m in models]})
    cycle(state, 10.0, {A: [reading(m, 100 + 10 * i) for i, m in enumerate(models)]})
    found = samples(state)
    assert models_on_page(found, "llmcost_tokens_total") == {"m0", "m1", OVERFLOW}
    # m2..m5 grew by 20, 30, 40, 50 generation tokens, 3x that of prompt tokens.
    generation = 20 + 30 + 40 + 50
    folded = {"prompt": 2 * generation, "cached_prompt": generation, "generation": generation}
    for kind, count in folded.items():
        assert found[("llmcost_tokens_total", (("kind", kind), ("model", OVERFLOW)))] == count
    api = found[("llmcost_api_equivalent_cost_total", (("model", OVERFLOW),))]
    assert api == pytest.approx(costmodel.api_equivalent_cost(folded, API))
    assert ("llmcost_api_price_missing", (("model", OVERFLOW),)) not in found
    exceeded = ("llmcost_model_limit_exceeded_total", (("collector", "vllm"), ("target", A)))
    assert found[exceeded] == 4
    # Live gauges of the folded models are summed under the overflow series too.
    assert found[("llmcost_requests_waiting", (("model", OVERFLOW),))] == 4 * 2
    # Nothing is lost: the node counts every token of every name.
    assert state.tokens.tokens_total == 4 * (0 + 10 + 20 + 30 + 40 + 50)


def test_folded_models_without_a_default_price_are_unpriced_never_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = make_state(default=None, prices={"m0": API}, models_per_engine=1)
    with caplog.at_level(logging.ERROR):
        cycle(state, 0.0, {A: [reading(m, 100) for m in names(4)]})
        cycle(state, 10.0, {A: [reading(m, 200) for m in names(4)]})
    found = samples(state)
    assert found[("llmcost_api_price_missing", (("model", OVERFLOW),))] == 1
    assert ("llmcost_api_equivalent_cost_total", (("model", OVERFLOW),)) not in found
    assert tokens(found, OVERFLOW) == 2 * 4 * 100  # m2, m3 (m0 is priced, m1 admitted)
    assert tokens(found, "m1") == 4 * 100
    # The unpriced tokens withhold the node's comparisons, as any unpriced model's do.
    assert ("llmcost_cost_ratio", (("window", "1m"),)) not in found
    assert sum(OVERFLOW in r.getMessage() and "no API price" in r.getMessage()
               for r in caplog.records) == 1  # fmt: skip


def test_the_node_limit_holds_across_engines() -> None:
    state = make_state(models_per_engine=3, models_per_node=4, engines=(A, B))
    pages = {
        A: [reading(m, 10) for m in names(5, "a")],
        B: [reading(m, 10) for m in names(5, "b")],
    }
    cycle(state, 0.0, pages)
    found = samples(state)
    assert models_on_page(found, "llmcost_tokens_total") == {"a0", "a1", "a2", "b0", OVERFLOW}
    exceeded = {
        dict(labels)["target"]: v
        for (name, labels), v in found.items()
        if name == "llmcost_model_limit_exceeded_total"
    }
    assert exceeded == {A: 2, B: 4}


def test_a_restart_of_an_engine_serving_many_folded_models_is_one_restart() -> None:
    state = make_state(models_per_engine=1)
    cycle(state, 0.0, {A: [reading(m, 100) for m in names(500)]})
    cycle(state, 10.0, {A: [reading(m, 5, started_at=200.0) for m in names(500)]})
    assert state.targets[("vllm", A)].restarts == 1
    assert state.tokens.tokens_total == 500 * 4 * 5


def test_a_page_naming_new_models_every_cycle_keeps_memory_and_series_bounded() -> None:
    state = make_state(models_per_engine=2, models_per_node=5)
    for n in range(20):
        cycle(
            state, 10.0 * n, {A: [reading(m, 10, started_at=2000.0) for m in names(300, f"c{n}-")]}
        )
    found = samples(state)
    # Two names a cycle until the node is full (5), then everything folds.
    assert len(models_on_page(found, "llmcost_tokens_total")) == 5 + 1
    assert state.model_limits.exceeded[A] == 20 * 300 - 5
    # Raw counters are kept for the names on the last page and the admitted ones only.
    assert len(state.tokens._engines) <= 300 + 5
    # Every name counted from zero (it started after the exporter): nothing lost.
    assert state.tokens.tokens_total == 20 * 300 * 4 * 10


def test_idle_models_leave_the_live_gauges_and_keep_their_counters() -> None:
    state = make_state(model_idle_timeout="5m")
    cycle(state, 0.0, {A: [reading("old", 100)]})
    cycle(state, 10.0, {A: [reading("old", 200)]})
    before = samples(state)
    assert "old" in models_on_page(before, "llmcost_model_effective_cost_per_million_tokens")
    assert "old" in models_on_page(before, "llmcost_api_price_per_million_tokens")
    # The engine now serves a new name; the old one is no longer seen.
    cycle(state, 20.0, {A: [reading("new", 50)]})
    cycle(state, 309.0, {A: [reading("new", 80)]})
    live = samples(state)
    assert "old" in models_on_page(live, "llmcost_model_window_span_seconds")
    cycle(state, 311.0, {A: [reading("new", 90)]})
    after = samples(state)
    for metric in (
        "llmcost_model_effective_cost_per_million_tokens",
        "llmcost_model_window_span_seconds",
        "llmcost_model_capacity_tokens_per_second",
        "llmcost_api_price_per_million_tokens",
    ):
        assert models_on_page(after, metric) == {"new"}, metric
    assert "old" not in state.model_history
    # Its counters keep their totals.
    assert tokens(after, "old") == tokens(before, "old") == 4 * 100
    for metric in ("llmcost_api_equivalent_cost_total", "llmcost_model_cost_total"):
        key = (metric, (("model", "old"),))
        assert after[key] == before[key] > 0, metric
    assert "old" in state.tokens.models


def test_a_down_engine_keeps_its_model_live() -> None:
    state = make_state(model_idle_timeout="1m")
    cycle(state, 0.0, {A: [reading("m", 100)]})
    cycle(state, 10.0, {A: [reading("m", 200)]})
    for now in (100.0, 200.0):
        state.record_failure("vllm", A, "connection", "refused", 0.01, engine=True)
        state.advance(now)
    # Its GPUs still cost money and go to its model: the model's figures stay.
    assert "m" in state.model_history
    assert ("llmcost_model_hourly_cost", (("model", "m"),)) in samples(state)
