"""The monthly review against a month whose truth is known, read from a real Prometheus
and from a real VictoriaMetrics.

A synthetic October (diurnal B2B traffic, an exporter restart, an engine
restart, a four-hour exporter outage, a GPU price cut mid-month) is backfilled
with promtool together with the review's hourly recording rules, and imported
into VictoriaMetrics with the same rules replayed by vmalert. On both, the
review must find the truth in it: totals within 0.5% (to the cent from raw
counters, and from rules evaluated on the hour), the outage as missing
coverage, the events, the plan and what explains the gap.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from realparts.auth_proxy import AuthProxy
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.synthetic_month import HOUR, KINDS, Truth, hour_truth
from realparts.timeouts import scaled
from realparts.victoria_metrics import VictoriaMetricsServer, find_victoria_metrics
from test_report_html import RAW_KEY, row_headers, section, shown_text, ticks

from llm_cost_exporter.cli import main
from llm_cost_exporter.tools.report.findings import off_peak
from llm_cost_exporter.tools.report.labels import label
from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.units import DECIMALS, display, is_money

pytestmark = pytest.mark.realparts

REL = 0.005  # the bar: within 0.5% of the truth
NODE = "gpu-node-1:9478"


@pytest.fixture(scope="module")
def month(backend: tuple[Any, Truth]) -> tuple[str, Truth]:
    server, truth = backend
    return server.url, truth


class Run:
    """One `report` invocation: exit code, output lines and the three files."""

    def __init__(self, code: int, out: str, err: str, directory: Path) -> None:
        self.code, self.out, self.err, self.directory = code, out, err, directory

    def file(self, suffix: str) -> str:
        (path,) = self.directory.glob(f"*{suffix}")
        return path.read_text(encoding="utf-8")

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.file(".json"))

    @property
    def figures(self) -> dict[str, Any]:
        return self.json["figures"]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if not line.startswith("querying")]


def report(capsys: pytest.CaptureFixture[str], directory: Path, url: str, *args: str) -> Run:
    directory.mkdir(parents=True, exist_ok=True)
    code = main(["report", "--prometheus.url", url, "--output-dir", str(directory), *args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, directory)


@pytest.fixture(scope="module")
def october(month: tuple[str, Truth], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The default review of October, from the recording rules."""
    url, _ = month
    directory = tmp_path_factory.mktemp("october")
    # Run as the installed command: the entry point, progress and exit code as users see them.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_cost_exporter",
            "report",
            "--prometheus.url",
            url,
            "--month",
            "2026-10",
            "--output-dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=scaled(600),
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, directory)


@pytest.fixture(scope="module")
def october_rules(month: tuple[str, Truth], tmp_path_factory: pytest.TempPathFactory) -> Run:
    url, _ = month
    directory = tmp_path_factory.mktemp("october-rules")
    code = main(
        [
            "report",
            "--prometheus.url",
            url,
            "--month",
            "2026-10",
            "--source",
            "rules",
            "--quiet",
            "--output-dir",
            str(directory),
        ]
    )
    return Run(code, "", "", directory)


def close(got: float, want: float, rel: float = REL) -> bool:
    return math.isclose(got, want, rel_tol=rel)


# --- the totals ---------------------------------------------------------------------


def test_the_review_is_written_with_progress_and_a_coverage_warning(october: Run) -> None:
    assert october.code == 0, october.err
    written = october.out.split()
    assert [Path(p).name for p in written] == [
        "llmcost-review-2026-10.html",
        "llmcost-review-2026-10.csv",
        "llmcost-review-2026-10.json",
    ]
    progress = [line for line in october.err.splitlines() if line.startswith("querying")]
    assert len(progress) >= 31 and progress[-1].startswith("querying Prometheus: ")
    done, total = re.search(r"(\d+)/(\d+)", progress[-1]).groups()
    assert done == total
    (warning,) = october.error_lines
    assert "warning: data covers 99.46% of node-hours" in warning
    assert "4 h missing in 1 gaps" in warning


def test_totals_match_the_truth(october: Run, month: tuple[str, Truth]) -> None:
    _, truth = month
    t, obs = october.figures["totals"], truth.observable
    # Prometheus still holds the raw samples, so clock hours are read from them.
    assert october.json["meta"]["source"] == "raw counters"
    assert close(t["spend"], obs.spend)
    assert close(t["tokens"], obs.tokens_total)
    assert close(t["api_equivalent"], obs.api_equivalent_total)
    assert close(t["cost_per_million_tokens"], obs.cost_per_million_tokens)
    assert close(t["api_equivalent_per_million_tokens"], obs.api_equivalent_per_million_tokens)
    assert close(t["savings"], obs.api_equivalent_total - obs.spend)
    assert t["hours_compared"] == obs.hours
    assert t["hours_below_breakeven"] == obs.hours_below_breakeven
    assert close(t["utilization"], obs.tokens_total / (truth.capacity_tokens_per_hour * obs.hours))
    for component, spend in obs.spend_by_component.items():
        assert close(october.figures["spend_by_component"][component]["spend"], spend)
    for kind, tokens in obs.tokens_by_kind().items():
        assert close(october.figures["tokens_by_kind"][kind]["tokens"], tokens)
    for model, spend in obs.spend_by_model.items():
        row = october.figures["model"][model]
        assert close(row["spend"], spend)
        assert close(row["tokens"], obs.tokens_by_model()[model])
        assert close(row["api_equivalent"], obs.api_equivalent[model])
    node = october.figures["node"][NODE]
    assert node["spend"] == t["spend"] and node["tokens"] == t["tokens"]


def test_raw_counters_give_the_truth_to_the_cent(october: Run, month: tuple[str, Truth]) -> None:
    """Hour-aligned increase() windows start and end on samples: nothing is extrapolated."""
    _, truth = month
    t, obs = october.figures["totals"], truth.observable
    assert t["spend"] == round(obs.spend, 2)
    assert t["tokens"] == obs.tokens_total
    assert t["api_equivalent"] == round(obs.api_equivalent_total, 2)
    for day, totals in truth.observable_by_day().items():
        assert october.figures["day"][day]["spend"] == round(totals.spend, 2), day


@pytest.mark.parametrize("review", ["october", "october_rules"])
def test_every_figure_is_the_truth_to_the_cent(
    review: str, request: pytest.FixtureRequest, month: tuple[str, Truth], store: str
) -> None:
    """From raw counters on both stores, and from the hourly rules where they were
    evaluated on the hour: vmalert's replay evaluates the group at whole multiples
    of its interval, so a rule's window is the clock hour, as a raw figure's is.
    (promtool, like Prometheus, evaluates the group minutes past the hour: its
    rules are within 0.5%, see above.)"""
    if review == "october_rules" and store == "backfilled_month":
        pytest.skip("Prometheus's rule windows are not clock hours")
    run: Run = request.getfixturevalue(review)
    _, truth = month
    f, obs = run.figures, truth.observable
    assert run.code == 0
    assert run.json["meta"]["source"] == (
        "recording rules" if "rules" in review else "raw counters"
    )
    t = f["totals"]
    assert t["spend"] == round(obs.spend, 2)
    assert t["tokens"] == obs.tokens_total
    assert t["api_equivalent"] == round(obs.api_equivalent_total, 2)
    assert t["hours_compared"] == t["covered_hours"] == obs.hours
    assert t["hours_below_breakeven"] == obs.hours_below_breakeven
    for component, spend in obs.spend_by_component.items():
        assert f["spend_by_component"][component]["spend"] == round(spend, 2), component
    assert {k: v["tokens"] for k, v in f["tokens_by_kind"].items()} == obs.tokens_by_kind()
    assert set(f["model"]) == set(obs.spend_by_model)
    for model, spend in obs.spend_by_model.items():
        row = f["model"][model]
        assert row["spend"] == round(spend, 2), model
        assert row["tokens"] == obs.tokens_by_model()[model], model
        assert row["api_equivalent"] == round(obs.api_equivalent[model], 2), model
    days = truth.observable_by_day()
    assert set(f["day"]) == set(days)
    for day, totals in days.items():
        row = f["day"][day]
        assert row["spend"] == round(totals.spend, 2), day
        assert row["tokens"] == totals.tokens_total, day
        assert row["api_equivalent"] == round(totals.api_equivalent_total, 2), day
        assert row["covered_hours"] == totals.hours, day
    # The price cut: the day before at the old hourly cost, the day of it at the new one.
    sc, cut = truth.scenario, truth.price_change_at
    old, new = (math.fsum(sc.hourly_cost(at).values()) for at in (cut - HOUR, cut))
    for at, hourly in ((cut - HOUR, old), (cut, new)):
        day = datetime.fromtimestamp(at, timezone.utc)
        assert f["day"][f"{day:%Y-%m-%d}"]["spend"] == round(24 * hourly, 2), day
    day = datetime.fromtimestamp(cut, timezone.utc)
    findings = " ".join(run.json["findings"])
    assert f"fell from ${old:.2f} to ${new:.2f} on {day:%Y-%m-%d}" in findings
    (gap,) = run.json["gaps"]
    start, end = (datetime.fromtimestamp(at, timezone.utc).isoformat() for at in truth.outage)
    assert gap == {"node": NODE, "start": start, "end": end}
    assert f["coverage"]["missing_node_hours"] == truth.outage_hours
    hour = lambda at: datetime.fromtimestamp(at, timezone.utc).isoformat()  # noqa: E731
    assert {(e["kind"], e["hour"], e["count"]) for e in run.json["events"]} == {
        ("exporter_restart", hour(truth.restart_at), 1),
        ("engine_restart", hour(truth.engine_restart_at), 1),
    }


def test_recording_rules_give_the_same_totals(october_rules: Run, month: tuple[str, Truth]) -> None:
    """Rule windows end where Prometheus evaluates the group, minutes off the clock hour:
    totals stay within 0.5%, and an hour near break-even may fall on the other side."""
    _, truth = month
    assert october_rules.code == 0
    t, obs = october_rules.figures["totals"], truth.observable
    assert october_rules.json["meta"]["source"] == "recording rules"
    assert close(t["spend"], obs.spend)
    assert close(t["tokens"], obs.tokens_total)
    assert close(t["api_equivalent"], obs.api_equivalent_total)
    assert close(t["cost_per_million_tokens"], obs.cost_per_million_tokens)
    assert close(t["api_equivalent_per_million_tokens"], obs.api_equivalent_per_million_tokens)
    assert close(t["savings"], obs.api_equivalent_total - obs.spend, rel=0.01)
    assert abs(t["hours_compared"] - obs.hours) <= 1  # a window may straddle an outage edge
    assert abs(t["hours_below_breakeven"] - obs.hours_below_breakeven) <= 0.01 * obs.hours
    # Capacity, coverage and restarts come from their own hourly rules.
    assert close(t["utilization"], obs.tokens_total / (truth.capacity_tokens_per_hour * obs.hours))
    for component, spend in obs.spend_by_component.items():
        assert close(october_rules.figures["spend_by_component"][component]["spend"], spend)
    # Coverage is read in the rules' hours, as the money is: the group runs minutes past
    # the hour, so the hour whose window reaches past the outage's end is observed,
    # with the money it holds.
    (gap,) = october_rules.json["gaps"]
    assert gap["start"].endswith("T10:00:00+00:00")
    assert gap["end"][11:] in ("13:00:00+00:00", "14:00:00+00:00")
    kinds = {(e["kind"], e["node"], e["count"]) for e in october_rules.json["events"]}
    assert kinds == {("exporter_restart", NODE, 1), ("engine_restart", NODE, 1)}


RAW_RANGE = re.compile(r"\b(llmcost_[a-z_]+)(?:\{[^}]*\})?\[")
"""A range over a raw series (recorded names hold a colon, so never match)."""


def test_a_review_through_the_rules_reads_no_raw_range_but_engine_restarts(
    capsys, tmp_path: Path, proxy: AuthProxy, backfilled_month: tuple[Any, Truth]
) -> None:
    """A fleet's month of raw samples is what makes a review slow; through the rules only
    the engines' restart events, a few series that exist once an engine restarted, and
    a gauge per hour are read raw."""
    _, truth = backfilled_month
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    run = report(
        capsys, tmp_path / "out", proxy.url, "--month", "2026-10", "--source", "rules",
        "--quiet", "--prometheus.bearer-token-file", str(token),
    )  # fmt: skip
    assert run.code == 0, run.err
    assert close(run.figures["totals"]["spend"], truth.observable.spend)
    ranges = {name for query in proxy.seen_queries for name in RAW_RANGE.findall(query)}
    assert proxy.seen_queries and ranges == {"llmcost_engine_restarts_total"}


def test_a_review_from_the_rules_alone_reports_in_the_exporters_currency(
    capsys, tmp_path: Path
) -> None:
    """Once raw samples are gone, the currency comes from its hourly rule too: a euro
    fleet's review says EUR, not the USD a review assumes of exporters that say nothing."""
    try:
        find_victoria_metrics()
    except RuntimeError as error:
        pytest.skip(str(error))
    node = 'job="llm-cost",instance="gpu-eu:9478"'
    recorded = {
        f'instance_model:llmcost_cost:increase1h{{{node},model="m"}}': 10,
        f'instance_component:llmcost_cost:increase1h{{{node},component="gpu"}}': 10,
        f'instance_model_kind:llmcost_tokens:increase1h{{{node},model="m",kind="prompt"}}': 1e6,
        f'instance_model:llmcost_api_equivalent_cost:increase1h{{{node},model="m"}}': 12,
        f'instance:llmcost_build_info:count_over_time1h{{{node},version="1"}}': 240,
        f'instance_model:llmcost_cost:resets1h{{{node},model="m"}}': 0,
        f'instance:llmcost_pricing_info:last_over_time1h{{{node},currency="EUR"}}': 1,
    }
    start = datetime(2026, 9, 1, tzinfo=timezone.utc).timestamp()
    stamps = [int(start + hour * HOUR + 30) * 1000 for hour in (1, 2, 3)]
    with VictoriaMetricsServer(workdir=tmp_path / "vm") as server:
        server.import_prometheus(
            f"{series} {v} {t}" for series, v in recorded.items() for t in stamps
        )
        server.flush()
        run = report(
            capsys, tmp_path / "out", server.url, "--start", "2026-09-01", "--end", "2026-09-02",
            "--source", "rules", "--quiet",
        )  # fmt: skip
    assert run.code == 0, run.err
    assert run.json["meta"]["currency"] == "EUR"
    assert run.figures["totals"]["spend"] == 30


def test_the_outage_is_missing_coverage_and_its_cost_is_estimated(
    october: Run, month: tuple[str, Truth]
) -> None:
    _, truth = month
    (gap,) = october.json["gaps"]
    start, end = (datetime.fromtimestamp(t, timezone.utc).isoformat() for t in truth.outage)
    assert gap == {"node": NODE, "start": start, "end": end}
    coverage = october.figures["coverage"]
    assert coverage["missing_node_hours"] == truth.outage_hours
    assert coverage["ratio"] == round(truth.observable_hours / truth.period_hours, 4)
    assert close(coverage["unobserved_spend_estimate"], truth.true_spend - truth.observable_spend)
    assert close(coverage["unobserved_spend_estimate"], truth.unobserved_spend_estimate)
    findings = " ".join(october.json["findings"])
    assert "Data is missing for 4 node-hours" in findings
    assert f"{NODE} 2026-10-21 10:00-14:00" in findings
    html = october.file(".html")
    assert "2026-10-21 10:00" in html


def test_restarts_are_reported_where_they_happened(october: Run, month: tuple[str, Truth]) -> None:
    _, truth = month
    events = {(e["kind"], e["hour"], e["node"], e["count"]) for e in october.json["events"]}
    hour = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
    assert events == {
        ("exporter_restart", hour(truth.restart_at), NODE, 1),
        ("engine_restart", hour(truth.engine_restart_at), NODE, 1),
    }


def test_the_plan_and_the_variance_that_explains_the_gap(
    october: Run, month: tuple[str, Truth]
) -> None:
    _, truth = month
    plan, f = truth.plan, october.figures
    hours = truth.observable_hours
    p = f["projection"]
    assert close(p["utilization"], plan.utilization)
    assert close(p["tokens"], plan.tokens_for(hours))
    assert close(p["cost_per_million_tokens"], plan.cost_per_million_tokens)
    assert close(p["spend"], plan.spend_for(hours))
    assert close(p["hourly_cost"], plan.hourly_cost)
    assert close(p["api_equivalent_per_million_tokens"], plan.api_equivalent_per_million_tokens)
    for kind in KINDS:
        assert close(f["planned_token_mix"][kind]["token_share"], plan.token_mix[kind])
    obs = truth.observable
    realized_cpm = obs.cost_per_million_tokens
    cost = f["variance_cost_per_million"]
    # The plan's hourly cost spread over the realized volume, minus the plan.
    at_plan = plan.spend_for(hours) / obs.tokens_total * 1e6
    assert close(cost["utilization"]["per_million"], at_plan - plan.cost_per_million_tokens)
    assert close(cost["hourly_cost"]["per_million"], realized_cpm - at_plan, rel=0.05)
    assert math.isclose(
        plan.cost_per_million_tokens + sum(line["per_million"] for line in cost.values()),
        f["totals"]["cost_per_million_tokens"],
        abs_tol=2e-4,
    )
    savings = f["variance_savings_per_million"]
    mix = obs.api_equivalent_per_million_tokens - plan.api_equivalent_per_million_tokens
    assert close(savings["token_mix"]["per_million"], mix)
    planned, realized = (
        f["savings_per_million"][k]["savings_per_million_tokens"] for k in ("planned", "realized")
    )
    assert math.isclose(
        planned + sum(line["per_million"] for line in savings.values()), realized, abs_tol=3e-4
    )
    findings = " ".join(october.json["findings"])
    assert "Utilization averaged" in findings and "against 50.00% planned" in findings


def test_findings_tell_the_month_in_plain_language(october: Run, month: tuple[str, Truth]) -> None:
    _, truth = month
    findings = october.json["findings"]
    assert findings[0].startswith("Self-hosting cost $")
    assert "an overspend of $" in findings[0]
    below = [h for h in truth.hourly if h.observed and h.below_breakeven]
    quiet = sum(off_peak(datetime.fromtimestamp(h.start, timezone.utc)) for h in below)
    share = f"{len(below) / truth.observable_hours * 100:.2f}%"
    (sentence,) = [s for s in findings if "below break-even" in s]
    assert sentence.startswith(f"{share} of hours ran below break-even")
    assert f"{quiet / len(below) * 100:.2f}% of those were nights" in sentence
    assert any("fell from $20.80 to $16.64 on 2026-10-16" in s for s in findings)
    assert any(s.startswith("Traffic in the busiest hour of the week") for s in findings)
    peak = october.figures["totals"]["peak_to_trough"]
    assert 8 < peak < 14  # a B2B day: ~11x between a weekday afternoon and a weekend night


# --- outputs ---------------------------------------------------------------------------

FIGURE = re.compile(r'data-figure="([^"]*)" data-value="([^"]*)"')


def test_html_csv_and_json_hold_the_same_figures(october: Run) -> None:
    html = october.file(".html")
    marks = FIGURE.findall(html)
    assert len(marks) > 100
    rows = {
        (r["section"], r["item"], r["measure"]): r["value"]
        for r in csv.DictReader(io.StringIO(october.file(".csv")))
        if r["section"] != "meta"
    }
    figures = october.figures
    for key, value in marks:
        section, rest = key.split(".", 1)
        item, measure = rest.rsplit(".", 1)
        place = figures[section][item] if item else figures[section]
        if value == "":  # a figure without a value, such as the utilization of no replica
            assert rows[(section, item, measure)] == "" and place[measure] is None, key
            continue
        assert float(rows[(section, item, measure)]) == float(value), key
        assert place[measure] == float(value), key
    money = 0
    for (section, item, measure), value in rows.items():
        place = figures[section][item] if item else figures[section]
        want, unit = place[measure], unit_of(measure)
        if want is not None and is_money(unit):
            # Every amount with its cents (prices per 1M with their hundredths of a cent),
            # and still the very number the JSON carries.
            assert re.fullmatch(rf"-?\d+\.\d{{{DECIMALS[unit]}}}", value), (section, measure)
            assert float(value) == want, (section, item, measure)
            money += 1
        else:
            assert ("" if want is None else str(want)) == value
    assert money > 100
    assert re.search(r"^totals,,spend,\d+\.\d\d,USD$", october.file(".csv"), re.M)


def test_the_review_reads_bottom_line_first_in_words_not_keys(october: Run) -> None:
    html = october.file(".html")
    figures = october.figures
    bottom, coverage = html.index('<section id="bottom-line"'), html.index('<section id="coverage"')
    assert html.index("</header>") < bottom < coverage < html.index('<section id="findings"')
    headline = shown_text(section(html, "bottom-line"))
    t = figures["totals"]
    assert f"Realized spend {display(t['spend'], 'money')}" in headline
    assert f"API-equivalent cost {display(t['api_equivalent'], 'money')}" in headline
    assert f"Overspend versus the API {display(-t['savings'], 'money')}" in headline
    assert "The API would have been cheaper" in headline and "99.46%" in headline
    assert RAW_KEY.findall(shown_text(html)) == []
    for ident, key in (("kinds", "tokens_by_kind"), ("components", "spend_by_component")):
        assert sorted(row_headers(section(html, ident))) == sorted(label(k) for k in figures[key])
    assert "Cached prompt" in row_headers(section(html, "kinds")) and "GPU" in html
    shown = ticks(html)
    assert len(shown) >= 7 and not [t for t in shown if re.search(r"\.\d{3}", t)]
    daily = ticks(section(html, "daily"))
    assert all(re.fullmatch(r"\$\d+(\.\d\d)?", t) for t in daily), daily
    assert not re.search(r"\d\.00 (h\b|hours|node-hours)", shown_text(html))
    assert "4 node-hours are missing" in shown_text(section(html, "coverage"))


def test_the_html_is_self_contained(october: Run) -> None:
    html = october.file(".html")
    assert html.startswith("<!DOCTYPE html>")
    for forbidden in (
        "<script",
        "http://",
        "https://",
        "src=",
        "href=",
        "url(",
        "@import",
        "<link",
    ):
        assert forbidden not in html, forbidden
    assert html.count("<svg") >= 3


# --- selections -----------------------------------------------------------------------


def test_a_model_matcher_reviews_that_model_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, month: tuple[str, Truth]
) -> None:
    url, truth = month
    model = "qwen2.5-7b-instruct"
    run = report(
        capsys, tmp_path, url, "--month", "2026-10", "--quiet", "--match", f'model="{model}"'
    )
    assert run.code == 0, run.err
    t, obs = run.figures["totals"], truth.observable
    assert close(t["spend"], obs.spend_by_model[model])
    assert close(t["tokens"], obs.tokens_by_model()[model])
    assert close(t["api_equivalent"], obs.api_equivalent[model])
    assert list(run.figures["model"]) == [model]
    assert "spend_by_component" not in run.figures and "projection" not in run.figures
    assert run.json["meta"]["selection"] == [f'model="{model}"']


def test_a_time_zone_moves_the_month_and_its_days(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, month: tuple[str, Truth]
) -> None:
    url, truth = month
    run = report(
        capsys,
        tmp_path,
        url,
        "--month",
        "2026-10",
        "--timezone",
        "Europe/Berlin",
        "--source",
        "raw",
        "--quiet",
    )
    # Berlin's October runs from 22:00 UTC on 30 September to 23:00 UTC on 31 October.
    assert run.json["meta"]["period_start"] == "2026-10-01T00:00:00+02:00"
    sc = truth.scenario
    hours = range(truth.start - 2 * HOUR, truth.end - HOUR, HOUR)
    want = math.fsum(hour_truth(sc, h).spend for h in hours if hour_truth(sc, h).observed)
    assert close(run.figures["totals"]["spend"], want, rel=1e-9)
    assert len(run.figures["day"]) == 31


# --- errors -------------------------------------------------------------------------


def _one_error_line(run: Run) -> str:
    assert len(run.error_lines) == 1, run.err
    return run.error_lines[0]


def test_an_unreachable_prometheus_is_one_line(capsys, tmp_path: Path) -> None:
    run = report(capsys, tmp_path, "http://127.0.0.1:9", "--month", "2026-10")
    assert run.code == 1
    assert _one_error_line(run).startswith(
        "llm-cost-exporter report: cannot reach Prometheus at http://127.0.0.1:9"
    )
    assert not list(tmp_path.glob("*.html"))


def test_an_empty_period_is_one_line(capsys, tmp_path: Path, month: tuple[str, Truth]) -> None:
    url, _ = month
    run = report(capsys, tmp_path, url, "--month", "2026-08")
    assert run.code == 1
    line = _one_error_line(run)
    assert "no llmcost cost data" in line and "2026-08-01 00:00" in line
    run = report(capsys, tmp_path, url, "--month", "2026-10", "--match", 'cluster="nowhere"')
    assert run.code == 1 and 'cluster="nowhere"' in _one_error_line(run)


def test_a_prometheus_error_is_passed_on_in_one_line(capsys, tmp_path: Path, month) -> None:
    url, _ = month
    # Python accepts the lookahead; Go's RE2 (in either server) does not, and says so.
    run = report(capsys, tmp_path, url, "--month", "2026-10", "--match", 'instance=~"(?=g).*"')
    assert run.code == 1
    line = _one_error_line(run)
    assert line.startswith(f"llm-cost-exporter report: Prometheus at {url} returned an error")
    assert "error parsing regexp: invalid or unsupported Perl syntax" in line


class _LoginPage(QuietHandler):
    """What a misconfigured URL often reaches: a web page, not the query API."""

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = b"<html><body>Grafana login</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_page_that_is_not_prometheus_is_one_line(capsys, tmp_path: Path) -> None:
    with LoopbackHttp(_LoginPage, name="login-page") as page:
        run = report(capsys, tmp_path, page.url, "--month", "2026-10")
    assert run.code == 1
    assert "did not answer as the Prometheus HTTP API does" in _one_error_line(run)


@pytest.fixture
def proxy(backfilled_month: tuple[Any, Truth]) -> Iterator[AuthProxy]:
    """Credentials are the client's business, whatever store is behind the proxy."""
    server, _ = backfilled_month
    with AuthProxy(server.url, "Bearer s3cret-token") as running:
        yield running


def test_a_bearer_token_from_a_file_reaches_prometheus_through_a_proxy(
    capsys, tmp_path: Path, proxy: AuthProxy, backfilled_month: tuple[Any, Truth]
) -> None:
    _, truth = backfilled_month
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    run = report(
        capsys,
        tmp_path / "out",
        proxy.url,
        "--month",
        "2026-10",
        "--quiet",
        "--prometheus.bearer-token-file",
        str(token),
        "--prometheus.header",
        "X-Scope-OrgID=team-a",
    )
    assert run.code == 0, run.err
    assert close(run.figures["totals"]["spend"], truth.observable.spend)
    seen = [{k.lower(): v for k, v in h.items()} for h in proxy.seen_headers]
    assert seen and all(h.get("x-scope-orgid") == "team-a" for h in seen)
    assert "s3cret" not in run.file(".html") + run.file(".json")


def test_refused_credentials_are_one_line(capsys, tmp_path: Path, proxy: AuthProxy) -> None:
    host = proxy.url.removeprefix("http://")
    run = report(capsys, tmp_path, f"http://me:wrong@{host}", "--month", "2026-10")
    assert run.code == 1
    line = _one_error_line(run)
    assert "refused the request (HTTP 401)" in line and "wrong" not in line
    assert proxy.seen_headers[-1]["Authorization"].startswith("Basic ")


def test_low_coverage_writes_the_review_and_exits_3(capsys, tmp_path: Path, month) -> None:
    url, _ = month
    run = report(capsys, tmp_path, url, "--month", "2026-10", "--quiet", "--min-coverage", "0.999")
    assert run.code == 3
    assert run.error_lines[-1].startswith("llm-cost-exporter report: coverage 99.46% is below")
    assert len(list(tmp_path.glob("llmcost-review-2026-10.*"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "--month '2026-13'"),
        (["--match", "cluster"], "--match 'cluster'"),
        (["--min-coverage", "2"], "--min-coverage"),
        (["--prometheus.url", "ftp://x"], "--prometheus.url 'ftp://x'"),
        (["--ceiling", "1.5"], "--ceiling: expected a ratio above 0 and at most 1"),
        (["--replica-gpu-price", "3"], "--capacity: required with --replica-gpu-price"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, tmp_path: Path, args, message) -> None:
    run = report(capsys, tmp_path, "http://127.0.0.1:9", *args)
    assert run.code == 2
    assert message in _one_error_line(run)


def test_the_review_says_what_would_have_been_cheaper(october: Run) -> None:
    """The advice covers the review's own hours: as run is the review's spend, all on the
    API its API-equivalent, and the verdict is among the findings."""
    figures, document = october.figures, october.json
    assert figures["advice"]["as_run"]["cost"] == figures["totals"]["spend"]
    assert figures["advice"]["all_api"]["cost"] == figures["totals"]["api_equivalent"]
    assert figures["advice_period"]["period_hours"] == figures["totals"]["covered_hours"]
    cheapest = document["advice"]["cheapest"]
    assert any("would have been cheap" in f for f in document["findings"])
    assert 'id="advice"' in october.file(".html")
    assert cheapest in figures["advice"]
