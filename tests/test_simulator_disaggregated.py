"""The simulator's disaggregated pair and preemptions, read back by the vLLM collector.

A prefill and a decode engine under the same traffic stand for one pair: their
pages count the pair's prompt tokens twice (computed on one, transferred in on
the other), their ground truths once; the accounting, fed both pages on two
nodes, must count them once too.
"""

from __future__ import annotations

import argparse

import pytest
from simulated_pages import SimClock

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.tokens import TokenLedger
from llm_cost_exporter.collectors.vllm import parse_vllm_page
from llm_cost_exporter.tools.simulator.arguments import (
    add_simulate_arguments,
    build_engines_from_args,
)
from llm_cost_exporter.tools.simulator.engine import PREEMPTION_BACKLOG_TOKENS, SimulatedEngine
from llm_cost_exporter.tools.simulator.profiles import make_profile

MONDAY = 1_767_600_000.0  # 2026-01-05 08:00 UTC
CAPACITY = 2000.0
API = ApiPrices(input=0.80, cached_input=0.08, output=4.00)


def engine(role: str, clock: SimClock, level: float = 0.6, **extra: object) -> SimulatedEngine:
    profile = make_profile("steady", level=level)
    return SimulatedEngine("m", CAPACITY, profile, role=role, clock=clock, **extra)  # type: ignore[arg-type]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("seconds", [0, 7, 95, 3600])
def test_role_pages_read_back_as_the_engine_counts_them(seconds: int) -> None:
    clock = SimClock(MONDAY)
    prefill, decode = engine("prefill", clock), engine("decode", clock)
    clock.t += seconds
    for simulated in (prefill, decode):
        state = simulated.page_state()
        (reading,) = parse_vllm_page(simulated.render())
        assert reading.prompt_tokens == state.prompt_tokens
        assert reading.cached_prompt_tokens == state.cached_prompt_tokens
        assert reading.generation_tokens == state.generation_tokens
        assert reading.transferred_prompt_tokens == state.transferred_prompt_tokens
        assert reading.requests == state.requests
    prefill_state, decode_state = prefill.page_state(), decode.page_state()
    # Every prompt token: computed on the prefill engine, transferred in on the decode one.
    assert prefill_state.prompt_tokens == decode_state.prompt_tokens
    assert prefill_state.cached_prompt_tokens == prefill_state.transferred_prompt_tokens == 0
    assert decode_state.prompt_tokens == decode_state.cached_prompt_tokens
    assert decode_state.cached_prompt_tokens == decode_state.transferred_prompt_tokens
    # The prefill engine generates one token per request, the decode engine all of them.
    assert prefill_state.generation_tokens == prefill_state.requests == decode_state.requests


def test_the_pair_serves_once_what_one_combined_engine_serves() -> None:
    clock = SimClock(MONDAY)
    combined, prefill, decode = (engine(r, clock) for r in ("combined", "prefill", "decode"))
    clock.t += 3600
    whole = combined.ground_truth()
    halves = [prefill.ground_truth(), decode.ground_truth()]
    assert whole["tokens"]["total"] > 0
    assert sum(h["tokens"]["total"] for h in halves) == whole["tokens"]["total"]
    assert sum(h["tokens"]["generation"] for h in halves) == whole["tokens"]["generation"]
    prompt = whole["tokens"]["prompt"] + whole["tokens"]["cached_prompt"]
    assert halves[0]["tokens"]["prompt"] == prompt  # the prefill engine computed every one
    assert halves[1]["transferred_prompt_tokens"] == prompt
    assert halves[0]["repeated_generation_tokens"] == whole["requests"]
    assert [h["role"] for h in halves] == ["prefill", "decode"]


def test_two_nodes_accounting_the_pair_count_its_prompt_tokens_once() -> None:
    clock = SimClock(MONDAY)
    prefill, decode = engine("prefill", clock), engine("decode", clock)
    nodes = {role: TokenLedger({}, API, MONDAY - 1) for role in ("prefill", "decode")}
    for step in range(40):  # the engines started after the ledgers: counted from zero
        for role, simulated in (("prefill", prefill), ("decode", decode)):
            for reading in parse_vllm_page(simulated.render()):
                nodes[role].add("http://engine/metrics", reading, now=clock.t)
        if step < 39:
            clock.t += 45 + step
    served = [prefill.ground_truth(), decode.ground_truth()]
    totals = [nodes[role].models["m"] for role in ("prefill", "decode")]
    counted_prompt = sum(t.tokens["prompt"] + t.tokens["cached_prompt"] for t in totals)
    assert counted_prompt == sum(
        s["tokens"]["prompt"] + s["tokens"]["cached_prompt"] for s in served
    )
    assert counted_prompt == served[0]["tokens"]["prompt"] > 0
    assert totals[1].counts["transferred_prompt"] == served[1]["transferred_prompt_tokens"]
    assert totals[1].tokens["generation"] == served[1]["tokens"]["generation"]
    # The prefill engine's first tokens stay counted: nothing on its page says prefill-only.
    assert totals[0].tokens["generation"] == served[0]["repeated_generation_tokens"]


def test_preemptions_follow_the_demand_beyond_capacity() -> None:
    clock = SimClock(MONDAY)
    overloaded = engine("combined", clock, level=1.5)
    within = engine("combined", clock, level=0.9)
    clock.t += 100
    # 0.5 x 2000 tokens/s turned away for 100 s, one preemption per request's worth.
    expected = int(0.5 * CAPACITY * 100 / PREEMPTION_BACKLOG_TOKENS)
    assert overloaded.page_state().preemptions == expected
    assert within.page_state().preemptions == 0
    (reading,) = parse_vllm_page(overloaded.render())
    assert reading.preemptions == expected
    assert overloaded.ground_truth()["page"]["num_preemptions_total"] == expected


def test_preemptions_restart_with_the_engine_and_the_truth_keeps_them() -> None:
    clock = SimClock(MONDAY)
    overloaded = engine("combined", clock, level=1.5, restart_every=60.0)
    clock.t += 100
    truth = overloaded.ground_truth()
    assert truth["restarts"] == 1
    assert truth["page"]["num_preemptions_total"] == 40 * 1000 // PREEMPTION_BACKLOG_TOKENS
    assert truth["preemptions"] == 100 * 1000 // PREEMPTION_BACKLOG_TOKENS


def test_roles_are_given_like_page_formats() -> None:
    args = _args("--engines", "5", "--role", "prefill,decode", "--profile", "steady")
    roles = [e.role for e in build_engines_from_args(args)]
    assert roles == ["prefill", "decode", "prefill", "decode", "prefill"]
    assert {e.role for e in build_engines_from_args(_args("--engines", "2"))} == {"combined"}
    with pytest.raises(ValueError, match="unknown --role 'encode'"):
        build_engines_from_args(_args("--role", "encode"))
    with pytest.raises(ValueError, match="page format 'v0' has no disaggregated serving"):
        build_engines_from_args(_args("--role", "decode", "--page-format", "v0"))


def test_a_decode_page_has_the_template_families_and_labels() -> None:
    clock = SimClock(MONDAY)
    decode, combined = engine("decode", clock), engine("combined", clock)
    clock.t += 60

    def shape(page: bytes) -> list[str]:
        return [
            line.split(" ")[0] if line.startswith("#") else line.split(" ")[0].split("{")[0]
            for line in page.decode().splitlines()
        ]

    assert shape(decode.render()) == shape(combined.render())
