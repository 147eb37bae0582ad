"""The synthetic month and its backfill: data with a known truth, in a real Prometheus.

The monthly review will be checked against this month, so the month itself is
checked first: its counters add up to its truth, its events look like real
ones, and Prometheus, once the month is backfilled, reads the same totals.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator

import pytest
from realparts.backfill import HistoricalPrometheusServer, backfill
from realparts.synthetic_month import HOUR, KINDS, Scenario, Truth, generate

from exporter.alert_rules import params_with, recording_rules

pytestmark = pytest.mark.realparts

# Five-minute samples keep the backfill within a test's budget; the hourly
# increase windows still hold 12 samples each.
STEP = 300

Series = dict[str, list[tuple[int, float]]]


@pytest.fixture(scope="module")
def month() -> tuple[str, Truth]:
    return generate(Scenario(step_seconds=STEP))


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


# --- the generator ---------------------------------------------------------------


def test_exposition_is_openmetrics(month: tuple[str, Truth]) -> None:
    text, truth = month
    assert text.endswith("# EOF\n")
    types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert "# TYPE llmcost_cost counter" in types
    assert all(not t.split()[2].endswith("_total") for t in types)
    assert len(types) == len(set(types)), "a family must not be split"
    assert truth.samples_per_series == (truth.end - truth.start) // STEP + 1 - (
        4 * HOUR // STEP - 1
    )


def test_counters_add_up_to_the_observable_truth(month: tuple[str, Truth], series: Series) -> None:
    _, truth = month
    obs = truth.observable
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
    month: tuple[str, Truth], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HistoricalPrometheusServer]:
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.skip("promtool and prometheus are needed")
    text, truth = month
    workdir = tmp_path_factory.mktemp("backfill")
    # Only the hourly group, and two of its rules: promtool 2.42 spends ~9 s per
    # rule on a month, and it writes a single sample for groups with an interval
    # longer than its 2h blocks, so the daily group cannot be backfilled this way.
    wanted = {"instance:llmcost_cost:increase1h", "instance_model:llmcost_tokens:increase1h"}
    groups = recording_rules(params_with({}))["groups"]
    hourly = next(g for g in groups if g["name"] == "llmcost-hourly")
    hourly = {**hourly, "rules": [r for r in hourly["rules"] if r["record"] in wanted]}
    rule_file = workdir / "hourly-rules.yml"
    rule_file.write_text(json.dumps({"groups": [hourly]}))  # JSON is valid YAML
    backfill(text, [rule_file], truth.start, truth.end, workdir / "prometheus")
    with HistoricalPrometheusServer(workdir / "prometheus") as server:
        yield server


def test_backfilled_increase_matches_the_truth(
    month: tuple[str, Truth], prometheus: HistoricalPrometheusServer
) -> None:
    _, truth = month
    # The window [end-30d, end] starts and ends on a sample, so increase() does not
    # extrapolate. The restart and the outage's end are counter resets, which
    # increase() bridges by counting the value after the drop from 0; that is exact
    # because the new process counts from the last sample of the old one. What the
    # outage's hours cost never reaches any counter, so this is the observable spend.
    got = prometheus.query_scalar("sum(increase(llmcost_cost_total[30d]))", time=truth.end)
    assert got is not None
    assert got == pytest.approx(truth.observable_spend, rel=1e-9)
    assert got < truth.true_spend
    tokens = prometheus.query_scalar("sum(increase(llmcost_tokens_total[30d]))", time=truth.end)
    assert tokens == pytest.approx(truth.observable.tokens_total, rel=1e-9)
    api = prometheus.query_scalar(
        "sum(increase(llmcost_api_equivalent_cost_total[30d]))", time=truth.end
    )
    assert api == pytest.approx(truth.observable.api_equivalent_total, rel=1e-9)


def test_backfilled_hourly_rule_matches_the_truth(
    month: tuple[str, Truth], prometheus: HistoricalPrometheusServer
) -> None:
    _, truth = month
    # The rule exists over the whole month: the rules backfill worked.
    counts = prometheus.query(
        "count_over_time(instance:llmcost_cost:increase1h[30d])", time=truth.end
    )
    assert counts, "no instance:llmcost_cost:increase1h: the rule backfill did not load"
    hours = int(float(counts[0]["value"][1]))
    # Prometheus evaluates a group at a fixed offset into its interval (a hash of the
    # group's name and file), so the windows are not on the hour: each increase()
    # extrapolates over a few minutes of an hour whose rate it did not see, and the
    # month's last minutes fall after its last evaluation. The windows ending inside
    # the 4-hour outage hold fewer than two samples and yield nothing; the restart is
    # bridged as a reset, exactly. Hence about 716 samples, and agreement to a
    # fraction of an hour's spend (an hour is ~0.14% of the month).
    assert 714 <= hours <= 720
    spend = prometheus.query_scalar(
        "sum(sum_over_time(instance:llmcost_cost:increase1h[30d]))", time=truth.end
    )
    assert spend == pytest.approx(truth.observable_spend, rel=0.005)
    tokens = prometheus.query_scalar(
        "sum(sum_over_time(instance_model:llmcost_tokens:increase1h[30d]))", time=truth.end
    )
    assert tokens == pytest.approx(truth.observable.tokens_total, rel=0.005)
    print(
        f"spend: truth {truth.observable_spend:.4f} (true {truth.true_spend:.4f}), "
        f"hourly rule {spend:.4f}; tokens: truth {truth.observable.tokens_total}, "
        f"hourly rule {tokens:.0f}; {hours} hourly samples"
    )
