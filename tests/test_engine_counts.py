"""Requests, preemptions and KV-transferred prompt tokens in the accounting.

They are counted per model like the tokens (restart-proof, resumed from the state
file) but never decide whether an engine restarted. Prompt tokens transferred in
(the decode side of disaggregated serving) are taken out of the exported prompt
kinds, which stay monotonic however the engine times its counts.
"""

from __future__ import annotations

import json

import pytest
from conftest import minimal_config_dict, render_page
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.accounting import persisted
from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.accounting.tokens import COUNTS, EngineCounters, TokenLedger
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.state_file import StateFile
from llm_cost_exporter.outputs.node_families import COUNT_FAMILIES

API = ApiPrices(input=0.80, cached_input=0.08, output=4.00)
STARTED = 1000.0
NEWER = STARTED + 1
"""A `_created` after the ledger started: the engine's first reading counts in full."""


def reading(
    prompt: float,
    cached: float,
    generation: float = 0.0,
    *,
    transferred: float | None = None,
    requests: float | None = None,
    preemptions: float | None = None,
    started_at: float | None = NEWER,
    model: str = "m",
) -> EngineReading:
    return EngineReading(
        model=model,
        engine="0",
        prompt_tokens=prompt,
        cached_prompt_tokens=cached,
        generation_tokens=generation,
        running=None,
        waiting=None,
        kv_usage_ratio=None,
        kv_capacity_tokens=None,
        kv_tokens=None,
        started_at=started_at,
        requests=requests,
        preemptions=preemptions,
        transferred_prompt_tokens=transferred,
    )


# Each reading: the engine's raw (prompt, cached, transferred, _created, read at).
# Expected after each: the exported (prompt, cached_prompt) and the transferred total.
TRANSFER_CASES = {
    "a decode engine: transfers counted with the prompt leave only what it computed": (
        [(0, 0, 0, NEWER, 10), (1000, 990, 990, NEWER, 20), (3000, 2970, 2970, NEWER, 30)],
        [(0, 0, 0), (10, 0, 990), (30, 0, 2970)],
    ),
    "transfers counted at admission run ahead: the prompt kinds hold, then catch up": (
        [
            (0, 0, 0, NEWER, 10),
            (1000, 200, 0, NEWER, 20),  # local requests: 800 computed, 200 prefix hits
            (1000, 200, 500, NEWER, 30),  # 500 transferred in, admitted, not yet prefilled
            (1500, 700, 500, NEWER, 40),  # prefilled: counted as prompt and cached
            (1600, 750, 500, NEWER, 50),  # 50 more computed, 50 more hits
        ],
        [(0, 0, 0), (800, 200, 0), (800, 200, 500), (800, 200, 500), (850, 250, 500)],
    ),
    "ahead by more than all the cached tokens: nothing steps back": (
        [(100, 50, 0, NEWER, 10), (100, 50, 400, NEWER, 20), (500, 450, 400, NEWER, 30)],
        [(50, 50, 0), (50, 50, 400), (50, 50, 400)],
    ),
    "a restart (newer _created) counts the transfers of the new process in full": (
        [
            (1000, 1000, 1000, 500.0, 10),  # older than us: a baseline
            (1100, 1090, 1090, 500.0, 20),
            (200, 190, 190, 2000.0, 3000),  # created after our last read
        ],
        [(0, 0, 0), (10, 0, 90), (20, 0, 280)],
    ),
    "a restart without _created (tokens fallen below half) likewise": (
        [(1000, 990, 990, None, 10), (1200, 1188, 1188, None, 20), (300, 297, 297, None, 30)],
        [(0, 0, 0), (2, 0, 198), (5, 0, 495)],
    ),
    "a dip of the token counters is ignored; transfers count from their own highest": (
        [(1000, 990, 990, 500.0, 10), (900, 890, 995, 500.0, 20), (1110, 1090, 1090, 500.0, 30)],
        [(0, 0, 0), (0, 0, 5), (10, 0, 100)],
    ),
}


@pytest.mark.parametrize(
    ("readings", "expected"), TRANSFER_CASES.values(), ids=list(TRANSFER_CASES)
)
def test_transferred_tokens_are_taken_out_of_the_prompt_kinds(readings, expected) -> None:
    book = TokenLedger({"m": API}, None, STARTED)
    seen = []
    for prompt, cached, transferred, created, now in readings:
        book.add("t", reading(prompt, cached, transferred=transferred, started_at=created), now=now)
        totals = book.models["m"]
        seen.append(
            (
                totals.tokens["prompt"],
                totals.tokens["cached_prompt"],
                totals.counts["transferred_prompt"],
            )
        )
    assert seen == expected
    for before, after in zip(seen, seen[1:], strict=False):
        assert all(b <= a for b, a in zip(before, after, strict=True)), (before, after)


def test_a_decode_engine_is_priced_on_what_it_computed_and_generated() -> None:
    book = TokenLedger({"m": API}, None, STARTED)
    book.add("t", reading(0, 0, 0, transferred=0))
    book.add("t", reading(10_000, 9_900, 2_000, transferred=9_900))
    assert book.models["m"].api_equivalent == pytest.approx((100 * 0.80 + 2_000 * 4.00) / 1e6)


def test_engines_that_cannot_count_transfers_are_accounted_as_before() -> None:
    with_zero, unknown = (TokenLedger({"m": API}, None, STARTED) for _ in range(2))
    for prompt, cached in ((0, 0), (1000, 300), (2500, 900)):
        with_zero.add("t", reading(prompt, cached, 10, transferred=0))
        unknown.add("t", reading(prompt, cached, 10))
    assert with_zero.models["m"].tokens == unknown.models["m"].tokens
    assert unknown.models["m"].tokens == {"prompt": 1600, "cached_prompt": 900, "generation": 10}
    assert with_zero.models["m"].counts == {"transferred_prompt": 0}
    assert unknown.models["m"].counts == {}


def test_transfers_of_several_engines_of_one_model_add_up() -> None:
    book = TokenLedger({"m": API}, None, STARTED)
    for target in ("http://prefill/metrics", "http://decode/metrics"):
        book.add(target, reading(0, 0, 0, transferred=0))
    book.add("http://prefill/metrics", reading(5000, 1000, 100, transferred=0))
    book.add("http://decode/metrics", reading(5000, 5000, 4000, transferred=5000))
    assert book.models["m"].tokens == {"prompt": 4000, "cached_prompt": 1000, "generation": 4100}
    assert book.models["m"].counts["transferred_prompt"] == 5000


# Each reading: (prompt tokens, requests or None, _created or None, read at).
# Expected after each: restart (R), anomaly (A) or neither, and the requests counted.
REQUEST_CASES = {
    "counted like the tokens": (
        [(100, 5, None, 10), (200, 9, None, 20)],
        [("", 4)],
    ),
    "a request counter that falls is no restart, and adds nothing": (
        [(100, 50, None, 10), (200, 0, None, 20), (300, 55, None, 30)],
        [("", 0), ("", 5)],
    ),
    "a request counter that grows never hides a restart": (
        [(1000, 50, None, 10), (100, 60, None, 20), (150, 70, None, 30)],
        [("R", 60), ("", 10)],
    ),
    "unknown in one reading: left out, then counted from the value before": (
        [(100, 5, None, 10), (200, None, None, 20), (300, 12, None, 30)],
        [("", 0), ("", 7)],
    ),
    "a newer _created: a restart, the new process's requests counted in full": (
        [(100, 5, 500.0, 10), (120, 8, 500.0, 20), (10, 2, 3000.0, 3000)],
        [("", 3), ("R", 2)],
    ),
    "a _created gone back to an unknown earlier value: ignored, requests too": (
        [(100, 5, 500.0, 10), (120, 90, 400.0, 20), (130, 9, 500.0, 30)],
        [("A", 0), ("", 4)],
    ),
}


@pytest.mark.parametrize(("readings", "expected"), REQUEST_CASES.values(), ids=list(REQUEST_CASES))
def test_requests_follow_the_token_counters_verdict(readings, expected) -> None:
    book = TokenLedger({"m": API}, None, STARTED)
    plain = EngineCounters()
    before = 0.0
    seen = []
    for index, (prompt, requests, created, now) in enumerate(readings):
        r = reading(prompt, 0, prompt / 2, requests=requests, started_at=created)
        observation = book.add("t", r, now=now)
        # The verdict is what the token counters alone would say.
        alone = plain.observe(
            {"prompt": prompt, "cached": 0, "generation": prompt / 2}, created, now
        )
        assert (observation.restarted, observation.anomaly) == (alone.restarted, alone.anomaly)
        counted = book.models["m"].counts.get("requests", 0.0)
        if index:
            flag = "R" if observation.restarted else "A" if observation.anomaly else ""
            seen.append((flag, counted - before))
        before = counted
    assert seen == expected


def test_counts_an_engine_never_gives_are_never_exported() -> None:
    config = config_from_mapping(minimal_config_dict())
    state = NodeState(config, {}, API)
    for prompt in (0.0, 100.0):
        readings = [
            reading(prompt, 0, 10, model="counts-nothing", started_at=None),
            reading(
                prompt,
                0,
                10,
                requests=prompt / 10,
                preemptions=prompt / 50,
                model="counts-all",
                transferred=prompt / 4,
                started_at=None,
            ),
            reading(prompt, 0, 10, requests=prompt / 5, model="counts-requests", started_at=None),
        ]
        for index, r in enumerate(readings):
            state.record_engine_readings("vllm", f"http://{index}/metrics", [r], 0.01)
        state.advance(prompt)
    samples = {
        (sample.name, sample.labels.get("model"), sample.labels.get("kind")): sample.value
        for family in text_string_to_metric_families(render_page(state))
        for sample in family.samples
    }
    assert {key: v for key, v in samples.items() if key[0] in _count_samples()} == {
        ("llmcost_requests_total", "counts-all", None): 10.0,
        ("llmcost_requests_total", "counts-requests", None): 20.0,
        ("llmcost_preemptions_total", "counts-all", None): 2.0,
        ("llmcost_kv_transferred_prompt_tokens_total", "counts-all", None): 25.0,
    }
    assert samples[("llmcost_tokens_total", "counts-all", "prompt")] == 75.0
    assert samples[("llmcost_tokens_total", "counts-nothing", "prompt")] == 100.0


def _count_samples() -> set[str]:
    return {f"llmcost_{family}_total" for family, _, _ in COUNT_FAMILIES.values()}


def test_every_count_has_its_family() -> None:
    assert tuple(COUNT_FAMILIES) == COUNTS


def decode_ledger() -> TokenLedger:
    book = TokenLedger({"m": API}, None, STARTED)
    book.add("t", reading(0, 0, 0, transferred=0, requests=0, preemptions=0), now=10)
    book.add("t", reading(1000, 990, 300, transferred=995, requests=10, preemptions=2), now=20)
    return book


def test_counts_resume_from_the_state_and_go_on_counting() -> None:
    book = decode_ledger()
    resumed = TokenLedger({"m": API}, None, STARTED)
    resumed.restore(json.loads(json.dumps(book.to_state())))
    assert resumed.models["m"].to_state() == book.models["m"].to_state()
    assert resumed.models["m"].counts == {
        "requests": 10,
        "preemptions": 2,
        "transferred_prompt": 995,
    }
    for copy in (book, resumed):
        copy.add(
            "t", reading(2000, 1980, 600, transferred=1980, requests=21, preemptions=2), now=30
        )
    assert resumed.models["m"].to_state() == book.models["m"].to_state()
    assert book.models["m"].counts["requests"] == 21
    assert book.models["m"].tokens["prompt"] == 20


def test_a_state_written_before_the_counts_were_kept_loads() -> None:
    """No `counts` per model and no `follow` per engine life, as an exporter that did not
    read them wrote it: the tokens resume; the counts start at the next reading, their
    first value a baseline, so that one cycle's transfers are counted as they were."""
    old = TokenLedger({"m": API}, None, STARTED)
    old.add("t", reading(0, 0, 0), now=10)
    old.add("t", reading(1000, 990, 300), now=20)
    state = json.loads(json.dumps(old.to_state()))
    for totals in state["models"].values():
        del totals["counts"]
    for engine in state["engines"]:
        for life in engine["lives"]:
            del life["follow"]
    resumed = TokenLedger({"m": API}, None, STARTED)
    resumed.restore(state)
    totals = resumed.models["m"]
    assert (totals.tokens, totals.counts) == (old.models["m"].tokens, {})
    assert totals.tokens == {"prompt": 10, "cached_prompt": 990, "generation": 300}
    resumed.add("t", reading(2000, 1980, 600, transferred=1980, requests=21, preemptions=2), now=30)
    assert totals.counts == {"requests": 0, "preemptions": 0, "transferred_prompt": 0}
    assert totals.tokens == {"prompt": 20, "cached_prompt": 1980, "generation": 600}
    resumed.add("t", reading(3000, 2970, 900, transferred=2970, requests=30, preemptions=3), now=40)
    assert totals.counts == {"requests": 9, "preemptions": 1, "transferred_prompt": 990}
    assert totals.tokens == {"prompt": 30, "cached_prompt": 1980, "generation": 900}


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s["models"]["m"]["counts"].update(requests=-1),
        lambda s: s["models"]["m"]["counts"].update(bogus=1),
        lambda s: s["engines"][0]["lives"][0]["follow"].update(requests=float("nan")),
        lambda s: s["engines"][0]["lives"][0].update(follow=[1]),
    ],
)
def test_a_spoiled_count_in_the_state_is_refused_whole(spoil) -> None:
    state = decode_ledger().to_state()
    spoil(state)
    resumed = TokenLedger({"m": API}, None, STARTED)
    with pytest.raises(persisted.StateError):
        resumed.restore(state)
    assert resumed.models == {}


def test_a_state_file_without_the_counts_resumes(tmp_path) -> None:
    path = tmp_path / "state.json"
    config = config_from_mapping(minimal_config_dict(state_file=str(path)))
    before = NodeState(config, {}, API, wall_clock=lambda: STARTED)
    for prompt in (0.0, 1000.0):
        r = reading(prompt, prompt, 10, transferred=prompt, requests=prompt / 100)
        before.record_engine_readings("vllm", "http://decode/metrics", [r], 0.01)
        before.advance(prompt)
    StateFile(path).save_now(before)
    document = json.loads(path.read_text())
    tokens = document["node"]["tokens"]
    assert tokens["models"]["m"]["counts"] == {"requests": 10, "transferred_prompt": 1000}
    del tokens["models"]["m"]["counts"]
    for engine in tokens["engines"]:
        for life in engine["lives"]:
            del life["follow"]
    path.write_text(json.dumps(document))

    after = NodeState(config, {}, API, wall_clock=lambda: STARTED + 10)
    assert StateFile(path).resume(after) == "resumed"
    assert after.tokens.models["m"].tokens == before.tokens.models["m"].tokens
    assert after.tokens.models["m"].counts == {}
