"""Token accounting on its own: engine counters in, per-model totals and API cost out."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    ("observations", "increases", "restarted"),
    [
        # first sight is a baseline
        ([({"p": 100.0}, 1.0)], [{"p": 0.0}], [False]),
        # plain increase
        ([({"p": 100.0}, 1.0), ({"p": 130.0}, 1.0)], [{"p": 0.0}, {"p": 30.0}], [False, False]),
        # drop without _created: a restart, the new value is the increase
        ([({"p": 100.0}, None), ({"p": 30.0}, None)], [{"p": 0.0}, {"p": 30.0}], [False, True]),
        # higher value but a new _created: a restart all the same
        ([({"p": 100.0}, 1.0), ({"p": 150.0}, 2.0)], [{"p": 0.0}, {"p": 150.0}], [False, True]),
        # one counter of several drops: the engine restarted, every counter counts in full
        (
            [({"p": 100.0, "g": 50.0}, None), ({"p": 20.0, "g": 60.0}, None)],
            [{"p": 0.0, "g": 0.0}, {"p": 20.0, "g": 60.0}],
            [False, True],
        ),
    ],
)
def test_engine_counters(observations, increases, restarted) -> None:
    counters = EngineCounters()
    seen = [counters.increases(values, created) for values, created in observations]
    assert [s[0] for s in seen] == increases
    assert [s[1] for s in seen] == restarted


def test_engine_counters_count_from_zero_when_the_engine_is_newer_than_us() -> None:
    increases, restarted = EngineCounters().increases({"p": 70.0}, 2.0, count_from_zero=True)
    assert increases == {"p": 70.0} and not restarted


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
    assert not book.add("t", reading(100, 0, 10))
    assert book.add("t", reading(5, 0, 1))
    assert not book.add("t", reading(9, 0, 2))


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
