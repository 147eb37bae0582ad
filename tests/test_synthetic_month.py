"""The synthetic month and its backfill: data with a known truth, in a real Prometheus.

The monthly review will be checked against this month, so the month itself is
checked first: its counters add up to its truth, its events look like real
ones, and Prometheus, once the month is backfilled, reads the same totals.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from realparts.backfill import HistoricalPrometheusServer
from realparts.synthetic_month import (
    ENGINE_TARGET,
    HOUR,
    HOURS_PER_MONTH,
    KINDS,
    Scenario,
    Truth,
)

pytestmark = pytest.mark.realparts

# Five-minute samples keep the backfill within a test's budget; the hourly
# increase windows still hold 12 samples each.
STEP = 300

Series = dict[str, list[tuple[int, float]]]


@pytest.fixture(scope="module")
def month(synthetic_october: tuple[str, Truth]) -> tuple[str, Truth]:
    """The session's October (see ``synthetic_october`` in conftest), at this file's step."""
    assert synthetic_october[1].scenario == Scenario(step_seconds=STEP)
    return synthetic_october


@pytest.fixture(scope="module")
def series(month: tuple[str, Truth]) -> Series:
    """Sample lines grouped by series (name and labels), in file order."""
    out: Series = {}
    for line in month[0].splitlines():
        if line.startswith("#"):
            continue
        key, value, ts = line.rsplit(" ", 2)
        out.setdefault(key, []).append((int(ts), float(value)))
    return out


def _key(truth: Truth, name: str, **labels: str) -> str:
    pairs = {"job": truth.scenario.job, "instance": truth.scenario.instance, **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def _increase(samples: list[tuple[int, float]]) -> float:
    """Counter increase with Prometheus's reset rule: a drop means it restarted from 0."""
    total = 0.0
    for (_, a), (_, b) in zip(samples, samples[1:], strict=False):
        total += b - a if b >= a else b
    return total


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def _window(samples: list[tuple[int, float]], lo: int, hi: int) -> list[tuple[int, float]]:
    """The samples an ``increase(...[hi - lo])`` evaluated at ``hi`` reads (both ends in)."""
    return [(t, v) for t, v in samples if lo <= t <= hi]


def _period(truth: Truth) -> str:
    """The whole period as a PromQL range: from the first sample to the last."""
    return f"{(truth.end - truth.start) // HOUR}h"


# --- the generator ---------------------------------------------------------------


def test_exposition_is_openmetrics(month: tuple[str, Truth]) -> None:
    text, truth = month
    assert text.endswith("# EOF\n")
    types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert "# TYPE llmcost_cost counter" in types
    assert all(not t.split()[2].endswith("_total") for t in types)
    assert len(types) == len(set(types)), "a family must not be split"
    margin = int(truth.scenario.margin.total_seconds())
    assert truth.samples_per_series == (truth.end - truth.start + 2 * margin) // STEP + 1 - (
        4 * HOUR // STEP - 1
    )


def test_counters_add_up_to_the_observable_truth(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    obs = truth.observable
    # Samples run on beyond the month (``Scenario.margin``); the month is start..end.
    series = {
        key: [(t, v) for t, v in samples if truth.start <= t <= truth.end]
        for key, samples in series.items()
    }
    for comp, want in obs.spend_by_component.items():
        got = _increase(series[_key(truth, "llmcost_cost_total", component=comp)])
        assert _close(got, want), comp
    for (model, kind), want in obs.tokens.items():
        got = _increase(series[_key(truth, "llmcost_tokens_total", model=model, kind=kind)])
        assert _close(got, want), (model, kind)
    for model, want in obs.api_equivalent.items():
        got = _increase(series[_key(truth, "llmcost_api_equivalent_cost_total", model=model)])
        assert _close(got, want), model
    for model, want in obs.spend_by_model.items():
        got = _increase(series[_key(truth, "llmcost_model_cost_total", model=model)])
        assert _close(got, want), model


def test_the_period_is_october_2026(month: tuple[str, Truth]) -> None:
    _, truth = month
    assert truth.scenario.start.isoformat() == "2026-10-01T00:00:00+00:00"
    assert truth.scenario.end.isoformat() == "2026-11-01T00:00:00+00:00"
    assert truth.period_hours == 31 * 24 == len(truth.hourly)
    assert truth.observable_hours == truth.period_hours - truth.outage_hours == 740
    assert list(truth.observable_by_day()) == [f"2026-10-{d:02d}" for d in range(1, 32)]
    assert sum(day.hours for day in truth.observable_by_day().values()) == 740


def test_truth_is_consistent(month: tuple[str, Truth]) -> None:
    _, truth = month
    sc = truth.scenario
    before = (truth.price_change_at - truth.start) // HOUR
    after = (truth.end - truth.price_change_at) // HOUR
    rate = sc.gpus * (1 + sc.overhead_ratio)
    assert _close(truth.true_spend, rate * (before * 2.00 + after * 1.60))
    outage_hours = (truth.outage[1] - truth.outage[0]) // HOUR
    assert truth.true.hours - truth.observable.hours == outage_hours == 4
    # The outage's spend is real but invisible: exactly the hours the data lacks.
    assert _close(truth.true_spend - truth.observable_spend, outage_hours * rate * 1.60)
    # A review can only estimate it, from the hourly cost reported before the outage;
    # the price does not change during it, so the estimate is the missing spend.
    assert _close(truth.unobserved_spend_estimate, outage_hours * rate * 1.60)
    assert _close(truth.unobserved_spend_estimate, truth.true_spend - truth.observable_spend)
    assert _close(sum(truth.true.spend_by_model.values()), truth.true_spend)
    prices = sc.price_of
    api = math.fsum(n * prices[kind] for (_, kind), n in truth.true.tokens.items()) / 1e6
    assert _close(api, truth.true.api_equivalent_total)
    assert _close(
        truth.true.cost_per_million_tokens, truth.true_spend / truth.true.tokens_total * 1e6
    )
    assert set(truth.true.tokens_by_kind()) == set(KINDS)
    # Nights and weekends lose to the API, weekday peaks beat it.
    assert 0 < truth.true.hours_below_breakeven < truth.true.hours
    assert truth.true.hours_below_breakeven == sum(h.below_breakeven for h in truth.hourly)
    # Capacity is constant: utilization is tokens over capacity x hours, per model too.
    assert truth.capacity_tokens_per_hour == sc.capacity_tokens_per_second * HOUR
    assert _close(truth.observable.capacity_tokens, 740 * truth.capacity_tokens_per_hour)
    assert _close(
        truth.observable.utilization,
        truth.observable.tokens_total / (740 * sc.capacity_tokens_per_second * HOUR),
    )
    by_model = truth.true.capacity_tokens_by_model
    assert _close(math.fsum(by_model.values()), truth.true.capacity_tokens)
    assert _close(by_model["llama-3.1-70b-instruct"], 3 * by_model["qwen2.5-7b-instruct"])
    assert _close(math.fsum(truth.true.token_share().values()), 1.0)


def test_plan_uses_the_design_month_of_730_hours(month: tuple[str, Truth]) -> None:
    _, truth = month
    sc, plan = truth.scenario, truth.plan
    assert plan.tokens_per_month == 0.5 * 20000 * 730 * 3600
    assert _close(plan.spend_per_month, 8 * 2.00 * 1.3 * 730)
    assert _close(plan.cost_per_million_tokens, plan.spend_per_month / plan.tokens_per_month * 1e6)
    assert _close(plan.hourly_cost, 8 * 2.00 * 1.3)  # the price known at decision time
    assert _close(plan.tokens_for(truth.observable_hours), plan.tokens_per_month / 730 * 740)
    assert _close(plan.spend_for(truth.observable_hours), 20.8 * 740)
    assert plan.token_mix == {"prompt": 0.55, "cached_prompt": 0.15, "generation": 0.30}
    assert _close(plan.api_equivalent_per_million_tokens, 0.55 * 0.80 + 0.15 * 0.08 + 0.30 * 4.0)
    assert HOURS_PER_MONTH == 730 and sc.projected_utilization == plan.utilization
    # The traffic is prompt-heavier than planned: a token-mix variance to explain.
    assert truth.true.token_share()["prompt"] > plan.token_mix["prompt"]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("2026-10-06T03:30:00", "engine_restart_at must be on an hour"),
        ("2026-09-30T23:00:00", "engine_restart_at must be inside"),
        ("2026-11-01T00:00:00", "engine_restart_at must be inside"),
        ("2026-10-21T10:00:00", "not be inside the outage"),
        ("2026-10-21T13:00:00", "not be inside the outage"),
    ],
)
def test_scenario_refuses_an_engine_restart_it_cannot_show(when: str, message: str) -> None:
    at = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=message):
        Scenario(engine_restart_at=at)


def test_scenario_refuses_a_token_mix_that_is_not_a_whole() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        Scenario(projected_token_mix=(("prompt", 0.5), ("generation", 0.4)))
    with pytest.raises(ValueError, match="projected_token_mix"):
        Scenario(projected_token_mix=(("input", 1.0),))


def test_restart_resets_counters(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    samples = dict(series[_key(truth, "llmcost_cost_total", component="gpu")])
    r = truth.restart_at
    assert samples[r] > 1000  # days of spend since the process began
    # The new process counts from the restart: one step of spend at the old price.
    assert _close(samples[r + STEP], truth.scenario.gpus * 2.00 * STEP / HOUR)
    tokens = dict(
        series[_key(truth, "llmcost_tokens_total", model="qwen2.5-7b-instruct", kind="generation")]
    )
    assert tokens[r + STEP] < tokens[r]


def test_outage_has_no_samples(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    lo, hi = truth.outage
    for key, samples in series.items():
        times = [t for t, _ in samples]
        assert not [t for t in times if lo < t < hi], key
        assert lo in times and hi in times, key
    # The process that comes back starts from 0.
    cost = dict(series[_key(truth, "llmcost_cost_total", component="overhead")])
    assert cost[hi] == 0.0 and cost[lo] > 0


def test_price_change_shows_in_the_spend_slope(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    gpu = dict(series[_key(truth, "llmcost_cost_total", component="gpu")])
    c = truth.price_change_at
    assert _close(gpu[c] - gpu[c - HOUR], 16.0)  # 8 GPUs at $2.00/h
    assert _close(gpu[c + HOUR] - gpu[c], 12.8)  # 8 GPUs at $1.60/h


def test_current_cost_gauges_follow_the_price_change(
    month: tuple[str, Truth], series: Series
) -> None:
    _, truth = month
    sc = truth.scenario
    c = truth.price_change_at
    gpu = dict(series[_key(truth, "llmcost_hourly_cost", component="gpu")])
    overhead = dict(series[_key(truth, "llmcost_hourly_cost", component="overhead")])
    models = {
        m.name: dict(series[_key(truth, "llmcost_model_hourly_cost", model=m.name)])
        for m in sc.models
    }
    # The new price is in force from the change instant on.
    assert gpu[truth.start] == gpu[c - STEP] == 16.0 and gpu[c] == gpu[truth.end] == 12.8
    assert _close(overhead[c - STEP], 4.8) and _close(overhead[c], 3.84)
    for t in (truth.start, c - STEP, c, truth.end):
        node = gpu[t] + overhead[t]
        assert _close(math.fsum(m[t] for m in models.values()), node), t
        assert _close(models["llama-3.1-70b-instruct"][t], node * 6 / 8), t
    # Each hour's spend is the hourly cost the gauges reported during it.
    for hour in truth.hourly:
        if hour.observed:
            assert _close(hour.spend, gpu[hour.start] + overhead[hour.start]), hour.start
            for name, spend in hour.spend_by_model.items():
                assert _close(spend, models[name][hour.start]), (hour.start, name)
    # The estimate of the outage reads the last hourly cost before it.
    lo, hi = truth.outage
    assert _close(truth.unobserved_spend_estimate, (hi - lo) // HOUR * (gpu[lo] + overhead[lo]))


def test_gauges_the_review_reads(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    sc = truth.scenario
    every = truth.samples_per_series

    def constant(name: str, **labels: str) -> float:
        samples = series[_key(truth, name, **labels)]
        assert len(samples) == every, (name, labels)
        assert len({v for _, v in samples}) == 1, (name, labels)
        return samples[0][1]

    shares = {k: constant("llmcost_projected_token_share", kind=k) for k in KINDS}
    assert shares == truth.plan.token_mix and _close(math.fsum(shares.values()), 1.0)
    assert constant("llmcost_projected_tokens_per_month") == truth.plan.tokens_per_month
    assert (
        constant("llmcost_projected_cost_per_million_tokens") == truth.plan.cost_per_million_tokens
    )
    assert constant("llmcost_projected_utilization_ratio") == 0.5
    capacity = {}
    for m in sc.models:
        for kind in KINDS:
            price = constant("llmcost_api_price_per_million_tokens", model=m.name, kind=kind)
            assert price == sc.price_of[kind]
        assert constant("llmcost_api_price_missing", model=m.name) == 0.0
        capacity[m.name] = constant(
            "llmcost_model_capacity_tokens_per_second", model=m.name, source="configured"
        )
    assert capacity == {"llama-3.1-70b-instruct": 15000.0, "qwen2.5-7b-instruct": 5000.0}
    node = constant("llmcost_capacity_tokens_per_second", source="configured")
    assert math.fsum(capacity.values()) == node == truth.capacity_tokens_per_hour / HOUR


def test_engine_restart_counts_once_in_its_hour(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    samples = series[
        _key(truth, "llmcost_engine_restarts_total", collector="vllm", target=ENGINE_TARGET)
    ]
    assert len(samples) == truth.samples_per_series
    values = dict(samples)
    e = truth.engine_restart_at
    # Every exporter process starts at 0; the one running sees the restart after it.
    assert values[truth.start] == values[e] == 0.0 and values[e + STEP] == 1.0
    assert values[truth.restart_at] == 1.0 and values[truth.restart_at + STEP] == 0.0
    assert values[truth.end] == 0.0
    # In increase() terms: exactly one hour, the one starting at the restart, shows it,
    # and the exporter restart's fall back to 0 adds nothing.
    per_hour = {
        h.start: _increase(_window(samples, h.start, h.start + HOUR))
        for h in truth.hourly
        if h.observed
    }
    assert {h: n for h, n in per_hour.items() if n} == {e: 1.0}
    assert _increase(samples) == 1.0
    # The money and token counters do not notice it: their slope is the truth's.
    cost = dict(series[_key(truth, "llmcost_cost_total", component="gpu")])
    hour = next(h for h in truth.hourly if h.start == e)
    assert _close(cost[e + HOUR] - cost[e], hour.spend_by_component["gpu"])
    for (model, kind), n in hour.tokens.items():
        tokens = dict(series[_key(truth, "llmcost_tokens_total", model=model, kind=kind)])
        assert tokens[e + HOUR] - tokens[e] == n, (model, kind)


def test_diurnal_profile(month: tuple[str, Truth]) -> None:
    _, truth = month
    per_hour = [h.tokens_total for h in truth.hourly]
    assert 8 <= max(per_hour) / min(per_hour) <= 12
    busiest = max(truth.hourly, key=lambda h: h.tokens_total)
    assert 9 <= (busiest.start % 86400) // HOUR <= 17
    # 2026-10-03 is a Saturday, 2026-10-05 a Monday: same hour, far less traffic.
    saturday_noon = truth.start + (2 * 24 + 12) * HOUR
    monday_noon = truth.start + (4 * 24 + 12) * HOUR
    by_start = {h.start: h.tokens_total for h in truth.hourly}
    assert by_start[monday_noon] > 4 * by_start[saturday_noon]


# --- backfilled into Prometheus -----------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(
    backfilled_month: tuple[HistoricalPrometheusServer, Truth],
) -> HistoricalPrometheusServer:
    """The same month backfilled once per session with the review's hourly rules
    (see ``backfilled_month`` in conftest): only the hourly group, the one the review
    reads."""
    return backfilled_month[0]


def test_backfilled_increase_matches_the_truth(
    month: tuple[str, Truth], prometheus: HistoricalPrometheusServer
) -> None:
    _, truth = month
    # The window [start, end] starts and ends on a sample, so increase() does not
    # extrapolate. The restart and the outage's end are counter resets, which
    # increase() bridges by counting the value after the drop from 0; that is exact
    # because the new process counts from the last sample of the old one. What the
    # outage's hours cost never reaches any counter, so this is the observable spend.
    period = _period(truth)
    got = prometheus.query_scalar(f"sum(increase(llmcost_cost_total[{period}]))", time=truth.end)
    assert got is not None
    assert got == pytest.approx(truth.observable_spend, rel=1e-9)
    assert got < truth.true_spend
    tokens = prometheus.query_scalar(
        f"sum(increase(llmcost_tokens_total[{period}]))", time=truth.end
    )
    assert tokens == pytest.approx(truth.observable.tokens_total, rel=1e-9)
    api = prometheus.query_scalar(
        f"sum(increase(llmcost_api_equivalent_cost_total[{period}]))", time=truth.end
    )
    assert api == pytest.approx(truth.observable.api_equivalent_total, rel=1e-9)
    # The engine restart: once over the month, in the hour that starts at it.
    restarts = "sum(increase(llmcost_engine_restarts_total[{}]))"
    assert prometheus.query_scalar(restarts.format(period), time=truth.end) == 1.0
    e = truth.engine_restart_at
    for at, want in ((e, 0.0), (e + HOUR, 1.0), (e + 2 * HOUR, 0.0)):
        assert prometheus.query_scalar(restarts.format("1h"), time=at) == want, at


def test_backfilled_gauges_follow_the_price_change(
    month: tuple[str, Truth], prometheus: HistoricalPrometheusServer
) -> None:
    _, truth = month
    c = truth.price_change_at
    node = "sum(llmcost_hourly_cost)"
    models = "sum(llmcost_model_hourly_cost)"
    assert prometheus.query_scalar(node, time=c - STEP) == pytest.approx(20.8, rel=1e-12)
    assert prometheus.query_scalar(node, time=c) == pytest.approx(16.64, rel=1e-12)
    assert prometheus.query_scalar(models, time=c - STEP) == pytest.approx(20.8, rel=1e-12)
    assert prometheus.query_scalar(models, time=c) == pytest.approx(16.64, rel=1e-12)
    # The plan, as a review reads it over the month.
    shares = prometheus.query(
        f"avg_over_time(llmcost_projected_token_share[{_period(truth)}])", time=truth.end
    )
    got = {s["metric"]["kind"]: float(s["value"][1]) for s in shares}
    assert got == pytest.approx(truth.plan.token_mix, rel=1e-12)
    assert math.fsum(got.values()) == pytest.approx(1.0, rel=1e-12)


def test_backfilled_hourly_rule_matches_the_truth(
    month: tuple[str, Truth], prometheus: HistoricalPrometheusServer
) -> None:
    _, truth = month
    # The rule exists over the whole month: the rules backfill worked.
    period = _period(truth)
    counts = prometheus.query(
        f'count_over_time(instance_component:llmcost_cost:increase1h{{component="gpu"}}[{period}])',
        time=truth.end,
    )
    assert counts, "no instance_component:llmcost_cost:increase1h: the rule backfill did not load"
    hours = int(float(counts[0]["value"][1]))
    # Prometheus evaluates a group at a fixed offset into its interval (a hash of the
    # group's name and file), so the windows are not on the hour: each increase()
    # extrapolates over a few minutes of an hour whose rate it did not see, and the
    # month's last minutes fall after its last evaluation. The windows ending inside
    # the 4-hour outage hold fewer than two samples and yield nothing; the restart is
    # bridged as a reset, exactly. Hence about 740 samples, and agreement to a
    # fraction of an hour's spend (an hour is ~0.13% of the month).
    assert truth.period_hours - 6 <= hours <= truth.period_hours
    spend = prometheus.query_scalar(
        f"sum(sum_over_time(instance_component:llmcost_cost:increase1h[{period}]))", time=truth.end
    )
    assert spend == pytest.approx(truth.observable_spend, rel=0.005)
    tokens = prometheus.query_scalar(
        f"sum(sum_over_time(instance_model_kind:llmcost_tokens:increase1h[{period}]))",
        time=truth.end,
    )
    assert tokens == pytest.approx(truth.observable.tokens_total, rel=0.005)
    # By model and kind, the series a review prices each model's own mix with.
    # Tokens flow day and night, so the few minutes each window extrapolates are
    # close to what it missed: 0.1% per series.
    by_model_kind = prometheus.query(
        f"sum_over_time(instance_model_kind:llmcost_tokens:increase1h[{period}])", time=truth.end
    )
    got = {(s["metric"]["model"], s["metric"]["kind"]): float(s["value"][1]) for s in by_model_kind}
    assert set(got) == set(truth.observable.tokens)
    worst = max(abs(got[k] / n - 1) for k, n in truth.observable.tokens.items())
    for key, n in truth.observable.tokens.items():
        assert got[key] == pytest.approx(n, rel=0.001), key
    print(
        f"spend: truth {truth.observable_spend:.4f} (true {truth.true_spend:.4f}), "
        f"hourly rule {spend:.4f}; tokens: truth {truth.observable.tokens_total}, "
        f"hourly rule {tokens:.0f}; {hours} hourly samples; "
        f"worst model/kind token error {worst:.2e}"
    )
