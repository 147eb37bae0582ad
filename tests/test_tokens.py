"""Token accounting on its own: engine counters in, per-model totals and API cost out."""

from __future__ import annotations

import json
import random

import pytest

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.tokens import EngineCounters, TokenLedger, split_prompt_tokens
from llm_cost_exporter.collectors.readings import EngineReading

API = ApiPrices(input=0.80, cached_input=0.08, output=4.00)
STARTED = 1000.0


def reading(prompt, cached, generation, started_at=500.0, model="m", engine="0"):
    return EngineReading(
        model=model,
        engine=engine,
        prompt_tokens=prompt,
        cached_prompt_tokens=cached,
        generation_tokens=generation,
        running=None,
        waiting=None,
        kv_usage_ratio=None,
        kv_capacity_tokens=None,
        kv_tokens=None,
        started_at=started_at,
    )


# Each reading: (value of counter "p", _created or None, wall time of the read or None).
# Expected per reading: the increase counted, and R (restart), A (anomaly) or "" (neither).
COUNTER_CASES = {
    "first sight is a baseline": ([(100, 1.0, 10)], [(0, "")]),
    "a plain increase": ([(100, 1.0, 10), (130, 1.0, 20)], [(0, ""), (30, "")]),
    "no _created, a fall below half: a restart, the new value is the increase": (
        [(100, None, 10), (30, None, 20)],
        [(0, ""), (30, "R")],
    ),
    "no _created, a small dip is jitter: ignored, the highest value kept": (
        [(1000, None, 10), (990, None, 20), (1000, None, 30), (1005, None, 40)],
        [(0, ""), (0, "A"), (0, ""), (5, "")],
    ),
    "the same _created: any drop is a dip, never a restart": (
        [(1000, 1.0, 10), (10, 1.0, 20), (1000, 1.0, 30), (1010, 1.0, 40)],
        [(0, ""), (0, "A"), (0, ""), (10, "")],
    ),
    "a _created newer than our last read: a restart, counted in full even when higher": (
        [(100, 1.0, 10), (150, 20.0, 30)],
        [(0, ""), (150, "R")],
    ),
    "a _created newer than our last read on a page that dropped: a restart": (
        [(5000, 1.0, 10), (40, 25.0, 30), (90, 25.0, 40)],
        [(0, ""), (40, "R"), (50, "")],
    ),
    "a _created that goes back to an unknown earlier value is not trusted": (
        [(1000, 5.0, 10), (10, 3.0, 20), (1010, 5.0, 30)],
        [(0, ""), (0, "A"), (10, "")],
    ),
    "a page whose _created changes every read but not its counters: no restart": (
        [(1000, 1.0, 10), (1010, 2.0, 20), (1020, 1.0, 30), (1030, 2.0, 40), (1040, 3.0, 50)],
        [(0, ""), (10, ""), (0, "A"), (20, ""), (10, "")],
    ),
    "two replicas with their own _created behind one URL: each counted once": (
        [(1000, 1.0, 10), (400, 5.0, 20), (1000, 1.0, 30), (400, 5.0, 40), (1100, 1.0, 50)]
        + [(450, 5.0, 60)],
        [(0, ""), (400, "R"), (0, "A"), (0, "A"), (100, "A"), (50, "A")],
    ),
    "no _created, alternating values: one restart, then nothing counted twice": (
        [(1000, None, 10), (400, None, 20), (1000, None, 30), (400, None, 40), (1000, None, 50)],
        [(0, ""), (400, "R"), (0, "A"), (0, "A"), (0, "A")],
    ),
    "no _created, two growing replicas: each one's growth counted": (
        [(1000, None, 10), (400, None, 20), (1100, None, 30), (450, None, 40), (1200, None, 50)],
        [(0, ""), (400, "R"), (100, "A"), (50, "A"), (100, "A")],
    ),
    "no _created, a restart then growth past the old high, then another restart": (
        [(100000, None, 10), (30, None, 20), (5000, None, 30), (99000, None, 40)]
        + [(101000, None, 50), (103000, None, 60), (40000, None, 70), (41000, None, 80)],
        [(0, ""), (30, "R"), (4970, ""), (94000, ""), (2000, ""), (2000, "")]
        + [(40000, "R"), (1000, "")],
    ),
    # Without _created, a read that jumps from below half the old life's high to past it
    # is taken as the old life's (the smaller increase): after a short life, its count
    # at most is lost.
    "no _created, a new life that outgrows a short old one within one read": (
        [(1000, None, 10), (30, None, 20), (400, None, 30), (1100, None, 40), (1200, None, 50)],
        [(0, ""), (30, "R"), (370, ""), (100, "A"), (100, "")],
    ),
    "no clock: a newer _created is judged by the values": (
        [(1000, 1.0, None), (1010, 2.0, None), (20, 3.0, None)],
        [(0, ""), (10, ""), (20, "R")],
    ),
}


def _observe_all(counters: EngineCounters, readings) -> list[tuple[float, str]]:
    seen = []
    for value, created, now in readings:
        observed = counters.observe({"p": value}, created, now)
        flag = "R" if observed.restarted else "A" if observed.anomaly else ""
        seen.append((observed.increases["p"], flag))
    return seen


@pytest.mark.parametrize(("readings", "expected"), COUNTER_CASES.values(), ids=list(COUNTER_CASES))
def test_engine_counters(readings, expected) -> None:
    assert _observe_all(EngineCounters(), readings) == expected


@pytest.mark.parametrize(("readings", "expected"), COUNTER_CASES.values(), ids=list(COUNTER_CASES))
def test_engine_counters_resume_from_their_state_at_any_point(readings, expected) -> None:
    """Saved and restored between any two readings, the counters count the same."""
    for cut in range(1, len(readings)):
        counters = EngineCounters()
        before = _observe_all(counters, readings[:cut])
        restored = EngineCounters.from_state(json.loads(json.dumps(counters.to_state())))
        assert before + _observe_all(restored, readings[cut:]) == expected


@pytest.mark.parametrize("created", [7.0, None])
def test_random_dips_of_one_process_count_exactly_its_growth(created) -> None:
    """Jitter of up to 40% below the true value, on a third of the reads: the counted
    total is the highest value seen less the first, with no restart."""
    rng = random.Random(12)
    true, counted, restarts, pages = 5000.0, 0.0, 0, []
    counters = EngineCounters()
    for second in range(2000):
        true += rng.randrange(0, 300)
        page = true * (1 - rng.random() * 0.4) if rng.random() < 0.33 else true
        pages.append(page)
        observed = counters.observe({"p": page}, created, 100.0 + second)
        counted += observed.increases["p"]
        restarts += observed.restarted
    assert restarts == 0
    assert counted == pytest.approx(max(pages) - pages[0], rel=1e-12)


@pytest.mark.parametrize("with_created", [True, False])
def test_two_replicas_alternating_at_random_are_each_counted_once(with_created) -> None:
    """Two engines behind one URL answer in turn at random: one restart (the second
    replica's first sight counts in full), then each one's growth, never twice."""
    rng = random.Random(3)
    replicas = {"a": [100_000.0, 1.0], "b": [1_000.0, 2.0]}  # value, _created
    seen: dict[str, list[float]] = {"a": [], "b": []}
    counters = EngineCounters()
    counted, restarts = 0.0, 0
    order = ["a", "b"] + [rng.choice("ab") for _ in range(3000)]
    for second, name in enumerate(order):
        for replica in replicas.values():
            replica[0] += rng.randrange(0, 20)
        value, created = replicas[name]
        seen[name].append(value)
        observed = counters.observe(
            {"p": value}, created if with_created else None, 1000.0 + second
        )
        counted += observed.increases["p"]
        restarts += observed.restarted
    assert restarts == 1
    assert counted == seen["a"][-1] - seen["a"][0] + seen["b"][-1]


def test_a_drop_of_one_counter_while_the_others_grow_is_not_a_restart() -> None:
    counters = EngineCounters()
    counters.observe({"p": 100.0, "g": 50.0}, None)
    observed = counters.observe({"p": 20.0, "g": 60.0}, None)
    assert observed.increases == {"p": 0.0, "g": 10.0}
    assert observed.anomaly and not observed.restarted
    # every counter back to near zero: a restart, each counts its new value in full
    observed = counters.observe({"p": 5.0, "g": 3.0}, None)
    assert observed.increases == {"p": 5.0, "g": 3.0} and observed.restarted


def test_engine_counters_count_from_zero_when_the_engine_is_newer_than_us() -> None:
    counters = EngineCounters()
    observed = counters.observe({"p": 70.0}, 2.0, count_from_zero=True)
    assert observed.increases == {"p": 70.0} and not observed.restarted
    # and from then on only what is added: the first reading is never counted twice
    assert counters.observe({"p": 75.0}, 2.0).increases == {"p": 5.0}


@pytest.mark.parametrize(
    ("prompt", "cached", "previous", "expected"),
    [
        ((100, 20), None, (0, 0), (80, 20)),
        # cache hits counted ahead of their prompt tokens: cached is capped at prompt
        ((100, 150), None, (40, 60), (40, 100)),
        # neither kind ever goes down
        ((300, 160), None, (40, 100), (140, 160)),
        ((300, 90), None, (140, 160), (140, 160)),
    ],
)
def test_split_prompt_tokens(prompt, cached, previous, expected) -> None:
    assert split_prompt_tokens(*prompt, *previous) == expected


def ledger(**models: ApiPrices) -> TokenLedger:
    return TokenLedger(models, None, STARTED)


@pytest.mark.parametrize(
    ("readings", "tokens", "api_equivalent"),
    [
        # baseline, then 1,000 prompt (200 cached) and 500 generated
        (
            [reading(10, 0, 5), reading(1010, 200, 505)],
            {"prompt": 800, "cached_prompt": 200, "generation": 500},
            (800 * 0.80 + 200 * 0.08 + 500 * 4.00) / 1e6,
        ),
        # an engine created after we started counts from zero at first sight
        (
            [reading(100, 0, 50, started_at=STARTED + 1)],
            {"prompt": 100, "cached_prompt": 0, "generation": 50},
            (100 * 0.80 + 50 * 4.00) / 1e6,
        ),
        # a restart keeps every kind monotonic and counts what came after it
        (
            [reading(1000, 100, 500), reading(150, 0, 40, started_at=600.0)],
            {"prompt": 150, "cached_prompt": 0, "generation": 40},
            (150 * 0.80 + 40 * 4.00) / 1e6,
        ),
    ],
)
def test_ledger_totals_and_api_equivalent(readings, tokens, api_equivalent) -> None:
    book = ledger(m=API)
    for r in readings:
        book.add("http://engine/metrics", r)
    assert book.models["m"].tokens == pytest.approx(tokens)
    assert book.models["m"].api_equivalent == pytest.approx(api_equivalent, rel=1e-12)
    assert book.tokens_total == pytest.approx(sum(tokens.values()))
    assert book.unpriced == set()


def test_ledger_sums_ranks_and_engines_of_one_model() -> None:
    book = ledger(m=API)
    for target, rank in (("http://a/metrics", "0"), ("http://a/metrics", "1"), ("http://b/m", "0")):
        book.add(target, reading(0, 0, 0, engine=rank))
        book.add(target, reading(100, 10, 50, engine=rank))
    assert book.models["m"].tokens == {"prompt": 270, "cached_prompt": 30, "generation": 150}


def test_a_restart_is_reported_once_per_engine() -> None:
    book = ledger(m=API)
    assert not book.add("t", reading(100, 0, 10), now=STARTED).restarted
    assert book.add("t", reading(5, 0, 1, started_at=STARTED + 5), now=STARTED + 10).restarted
    assert not book.add("t", reading(9, 0, 2, started_at=STARTED + 5), now=STARTED + 20).restarted
    assert book.models["m"].tokens_total == 5 + 1 + 4 + 1


def test_a_dip_on_the_same_created_is_ignored_not_counted_again() -> None:
    book = ledger(m=API)
    book.add("t", reading(1000, 0, 500))
    dip = book.add("t", reading(990, 0, 495))
    assert dip.anomaly and not dip.restarted
    book.add("t", reading(1000, 0, 500))
    assert book.models["m"].tokens_total == 0


def test_the_ledger_resumes_from_its_state() -> None:
    book = ledger(m=API)
    book.add("t", reading(100, 10, 50))
    book.add("t", reading(300, 20, 90))
    book.add("t", reading(300, 0, 30, model="other"))
    resumed = TokenLedger({"m": API}, None, STARTED + 500)
    resumed.restore(json.loads(json.dumps(book.to_state())))
    assert resumed.started_wall == STARTED
    assert {m: t.to_state() for m, t in resumed.models.items()} == {
        m: t.to_state() for m, t in book.models.items()
    }
    assert resumed.unpriced == {"other"}
    for copy in (book, resumed):
        copy.add("t", reading(400, 30, 100))
    assert resumed.models["m"].to_state() == book.models["m"].to_state()


def test_a_model_without_a_price_is_flagged_once_and_never_priced_at_zero(caplog) -> None:
    book = ledger(m=API)
    for value in (0, 100, 200):
        book.add("t", reading(value, 0, value, model="other"))
    assert book.unpriced == {"other"}
    assert book.price_for("other") is None
    assert book.models["other"].api_equivalent == 0
    assert book.unpriced_tokens == 400
    assert book.api_equivalent_total == 0
    assert sum("no API price for served model 'other'" in r.message for r in caplog.records) == 1


def test_the_default_price_covers_models_without_their_own() -> None:
    own = ApiPrices(1.0, 0.1, 2.0)
    book = TokenLedger({"m": own}, API, STARTED)
    assert book.price_for("m") is own and book.price_for("anything") is API
