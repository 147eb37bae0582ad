"""The landing page says whether its figures are current, from real node states.

Its headline follows the sources (all up, partially up naming what is down,
all down) and the loop (starting, stale); no break-even verdict is given while
no engine answers or the loop has stalled; each window shows the span it
really covers.
"""

from __future__ import annotations

import pytest
from conftest import fixture_page, minimal_config_dict

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.vllm import parse_vllm_page
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.landing import render_landing
from llm_cost_exporter.daemon.loop import LoopHealth

A = "http://a:8000/metrics"
B = "http://b:8000/metrics"
OK = LoopHealth("ok", 1.0)
IDLE = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-idle.prom"))
BUSY = parse_vllm_page(fixture_page("vllm-0.32.0-cpu-busy.prom"))
VERDICTS = ("self-hosting is cheaper", "the API would be cheaper")


def node(answers: dict[str, bool], cycles: int = 2, step: float = 30.0) -> NodeState:
    """Engines A and B on GPUs 0 and 1; each answers (the busy page after the idle
    one, same model) or fails with a refused connection, every cycle."""
    config = config_from_mapping(
        minimal_config_dict(
            engines=[{"url": A, "gpus": [0]}, {"url": B, "gpus": [1]}],
            cost={"gpus": [{"model": "A100", "count": 2}], "gpu_prices_per_hour": {"A100": 2.0}},
            capacity={"tokens_per_second": 2000},
            windows=["1m", "1h"],
        )
    )
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0), wall_clock=lambda: 1.8e9)
    for cycle in range(cycles):
        for url in (A, B):
            if answers.get(url, False):
                page = IDLE if cycle == 0 else BUSY
                state.record_engine_readings("vllm", url, page, 0.01)
            else:
                state.record_failure("vllm", url, "connection", "refused", 0.01, engine=True)
        state.advance(cycle * step)
    return state


def test_all_sources_up() -> None:
    html = render_landing(node({A: True, B: True}), OK)
    assert "<b class=good>All 2 sources up.</b>" in html
    assert any(verdict in html for verdict in VERDICTS)


def test_partially_up_names_what_is_down() -> None:
    html = render_landing(node({A: True, B: False}), OK)
    assert f"Partially up: 1 of 2 sources down (vllm {B})." in html
    assert "All 2 sources up" not in html
    # The node still has an engine answering: its verdict stands.
    assert any(verdict in html for verdict in VERDICTS)


def test_all_sources_down_gives_no_verdict() -> None:
    # Both engines served, then both went down: the figures are what they were.
    state = node({A: True, B: True}, cycles=2)
    for url in (A, B):
        state.record_failure("vllm", url, "connection", "refused", 0.01, engine=True)
    state.advance(90.0)
    html = render_landing(state, OK)
    assert "<b class=bad>All sources down: no figure below is current.</b>" in html
    assert "sources up" not in html
    assert not any(verdict in html for verdict in VERDICTS)
    assert "unknown (no engine answers)" in html


def test_a_model_whose_engines_are_down_gets_no_verdict() -> None:
    state = node({A: True, B: False}, cycles=2)
    other = parse_vllm_page(fixture_page("vllm-0.10.0-reconstructed.prom"))
    for now in (60.0, 90.0):  # B serves another model, then goes down
        state.record_engine_readings("vllm", A, BUSY, 0.01)
        state.record_engine_readings("vllm", B, other, 0.01)
        state.advance(now)
    state.record_engine_readings("vllm", A, BUSY, 0.01)
    state.record_failure("vllm", B, "connection", "refused", 0.01, engine=True)
    state.advance(120.0)
    html = render_landing(state, OK)
    rows = {
        row.split("</td>", 1)[0]: row
        for row in html.split("<h2>Cost by model</h2>", 1)[1].split("<h2>", 1)[0].split("<tr><td>")
    }
    assert "unknown (no engine answers)" in rows["llama-3.1-8b"]
    assert any(verdict in rows["tiny-llama"] for verdict in VERDICTS)


def test_stale_and_starting_say_so() -> None:
    state = node({A: True, B: True})
    stale = render_landing(state, LoopHealth("stalled", 95.0))
    assert "Stale: no collection has finished for 1m 35s" in stale
    assert "All 2 sources up." in stale  # as of the last collection
    assert not any(verdict in stale for verdict in VERDICTS)
    assert "unknown (stale)" in stale
    starting = render_landing(node({}, cycles=0), LoopHealth("starting", 1.0))
    assert "Starting: the first collection has not finished yet." in starting
    assert "collecting…" in starting


@pytest.mark.parametrize(
    ("cycles", "step", "covers"),
    [(2, 10.0, ("10s", "10s")), (3, 30.0, ("1m", "1m")), (100, 60.0, ("1m", "1h"))],
)
def test_each_window_shows_the_span_it_covers(cycles: int, step: float, covers: tuple) -> None:
    html = render_landing(node({A: True, B: True}, cycles, step), OK)
    for window, span in zip(("1m", "1h"), covers, strict=True):
        assert f"<tr><td>{window}</td><td>{span}</td>" in html
