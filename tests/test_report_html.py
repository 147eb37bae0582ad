"""The HTML review: self-contained, escaped, marked figures that match the rounding rule."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from llm_cost_exporter.tools.report.html import render_html
from llm_cost_exporter.tools.report.labels import LABELS
from llm_cost_exporter.tools.report.measures import MEASURE_UNITS, unit_of
from llm_cost_exporter.tools.report.model import (
    Coverage,
    Day,
    Event,
    Gap,
    ProjectionComparison,
    Report,
    Row,
    Totals,
    Variance,
    VarianceLine,
)
from llm_cost_exporter.tools.report.svg import (
    Reference,
    Series,
    bar_chart,
    heatmap,
    line_chart,
    nice_ticks,
)
from llm_cost_exporter.tools.report.tabular import render_csv, render_json
from llm_cost_exporter.tools.report.units import display, is_money, rounded

UTC = timezone.utc
START = datetime(2025, 4, 30, 22, tzinfo=UTC)  # 2025-05-01 00:00 in Europe/Berlin
END = datetime(2025, 5, 31, 22, tzinfo=UTC)
NODE_A, NODE_B = "gpu-a", "gpu-<b>&b"
MODEL_A, MODEL_B = "llama-3.1-8b-instruct", "qwen<b>&coder"
GAP_DAY = 9  # index of 2025-05-10, a day without tokens

# ----------------------------------------------------------------------------- the fixture


def make_totals(
    spend: float,
    tokens: float,
    hours: float,
    *,
    api_per_million: float | None = 2.4567891,
    priced_share: float = 1.0,
    utilization: float | None = 0.43219876,
    below: int = 120,
    compared: int = 700,
) -> Totals:
    """Totals whose derived figures agree with each other, as the builder's would."""
    priced_spend, priced_tokens = spend * priced_share, tokens * priced_share
    api = None if api_per_million is None else priced_tokens / 1e6 * api_per_million
    return Totals(
        spend=spend,
        tokens=tokens,
        covered_hours=hours,
        cost_per_million_tokens=spend / tokens * 1e6 if tokens else None,
        api_equivalent=api,
        api_equivalent_per_million_tokens=api_per_million,
        priced_spend=priced_spend,
        priced_tokens=priced_tokens,
        savings=None if api is None else api - priced_spend,
        cost_ratio=None if not api else priced_spend / api,
        average_hourly_cost=spend / hours if hours else None,
        utilization=utilization,
        hours_below_breakeven=below if api is not None else 0,
        hours_compared=compared if api is not None else 0,
    )


def make_days() -> tuple[Day, ...]:
    days = []
    for i in range(31):
        tokens = 0.0 if i == GAP_DAY else 110_000_000 + 7_654_321.37 * math.sin(i)
        spend = 228.123456 + 3.3 * math.cos(i)
        api = tokens / 1e6 * 2.4567891 if tokens else None
        days.append(
            Day(
                date=f"2025-05-{i + 1:02d}",
                spend=spend,
                tokens=tokens,
                api_equivalent=api,
                cost_per_million_tokens=spend / tokens * 1e6 if tokens else None,
                api_equivalent_per_million_tokens=2.4567891 if tokens else None,
                utilization=0.4 + 0.05 * math.sin(i / 3) if tokens else None,
                covered_hours=18.0 if i == GAP_DAY else 48.0,
                hours_below_breakeven=i % 7,
            )
        )
    return tuple(days)


def make_variance(realized: float, planned: float) -> Variance:
    """Two bridges whose lines add up exactly to the gap, as the model promises."""
    tokens_m = 3_580.2467920
    gap = realized - planned
    utilization, hourly = 0.41234567, 0.0512345
    cost = (
        VarianceLine("utilization", "Lower utilization than planned", utilization, 0.0),
        VarianceLine("hourly_cost", "Higher hourly cost", hourly, 0.0),
        VarianceLine("token_mix", "More prompt tokens", gap - utilization - hourly, 0.0),
    )
    cost = tuple(dataclasses.replace(line, amount=line.per_million * tokens_m) for line in cost)
    savings = tuple(
        dataclasses.replace(line, per_million=-line.per_million, amount=-line.amount)
        for line in cost
    )
    return Variance(cost, savings, 2.4567891 - planned, 2.4567891 - realized)


def make_report(
    *,
    overspend: bool = False,
    unpriced: bool = False,
    projection: bool = True,
    components: bool = True,
) -> Report:
    """A month of two nodes and two models, with a gap, restarts and a plan."""
    api_per_million = 1.6543219 if overspend else 2.4567891
    share = 0.8123 if unpriced else 1.0
    totals = make_totals(
        7135.802389, 3_580_246_792.0, 738.0, api_per_million=api_per_million, priced_share=share
    )
    nodes = (
        Row(
            NODE_A,
            make_totals(4123.456789, 2_345_678_901.4, 744.0),
            1.0,
            START,
            END - timedelta(hours=1),
        ),
        Row(
            NODE_B,
            make_totals(3012.345600, 1_234_567_890.6, 678.0, api_per_million=1.2),
            678 / 708,
            START + timedelta(hours=36),
            END - timedelta(hours=1),
        ),
    )
    models = (
        Row(MODEL_A, make_totals(5795.0, 2_900_000_000.0, 738.0)),
        Row(
            MODEL_B,
            make_totals(
                1340.802389, 680_246_792.0, 738.0, api_per_million=None if unpriced else 1.1
            ),
        ),
    )
    gap = Gap(NODE_B, datetime(2025, 5, 10, tzinfo=UTC), datetime(2025, 5, 11, 6, tzinfo=UTC))
    coverage = Coverage(
        period_hours=744.0,
        expected_node_hours=744.0 + 708.0,
        covered_node_hours=744.0 + 678.0,
        gaps=(gap,),
        nodes_joined=((NODE_B, START + timedelta(hours=36)),),
        nodes_left=(),
        unobserved_spend_estimate=30 * 4.123456789,
        source="recording rules",
    )
    plan = ProjectionComparison(
        utilization=0.62,
        tokens=4_100_000_000.0,
        cost_per_million_tokens=1.5123456,
        hourly_cost=9.87654321,
        spend=7000.123456,
        api_equivalent_per_million_tokens=2.45,
        token_mix={"prompt": 0.55, "cached_prompt": 0.15, "generation": 0.3},
    )
    utilization = tuple(
        None if (day == 6 and hour < 3) else 0.5 + 0.45 * math.sin((day * 24 + hour) / 7)
        for day in range(7)
        for hour in range(24)
    )
    return Report(
        title="LLM inference cost review: May 2025",
        period_start=START,
        period_end=END,
        timezone="Europe/Berlin",
        generated_at=datetime(2025, 6, 1, 6, 30, tzinfo=UTC),
        prometheus_url="http://prometheus.monitoring:9090",
        selection=('cluster="prod"',),
        currency="USD",
        coverage=coverage,
        totals=totals,
        spend_by_component=(
            {"gpu": 5123.456789, "overhead": 1234.5678, "node_extra": 777.777822}
            if components
            else {}
        ),
        tokens_by_kind={
            "prompt": 2_000_000_000.4,
            "cached_prompt": 500_000_000.0,
            "generation": 1_080_246_791.6,
        },
        unpriced_models=(MODEL_B,) if unpriced else (),
        projection=plan if projection else None,
        variance=(
            make_variance(totals.cost_per_million_tokens, plan.cost_per_million_tokens)
            if projection
            else None
        ),
        hour_of_week_utilization=utilization,
        hour_of_week_tokens=tuple(None if u is None else u * 4.1e6 for u in utilization),
        peak_to_trough=3.456789,
        nodes=nodes,
        models=models,
        days=make_days(),
        events=(
            Event(NODE_A, datetime(2025, 5, 14, 3, tzinfo=UTC), "exporter_restart"),
            Event(NODE_B, datetime(2025, 5, 20, 11, tzinfo=UTC), "engine_restart", 2),
        ),
        findings=(
            "Cost per 1M tokens was 32% above plan, mostly because utilization was low.",
            "Node gpu-<b>&b had no data for 30 hours; totals leave those hours out.",
        ),
    )


# ----------------------------------------------------------------------------- parsing


INLINE = {"span", "strong", "code", "b", "em", "a"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Document(HTMLParser):
    """Checks that every element is closed in order, and collects marks and text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.chunks: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in INLINE:
            self.chunks.append(" ")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag not in INLINE:
            self.chunks.append(" ")
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack[-1:] != ["style"]:
            self.chunks.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.chunks))

    def figures(self) -> list[tuple[str, str]]:
        return [
            (attrs["data-figure"] or "", attrs.get("data-value") or "")
            for _, attrs in self.elements
            if "data-figure" in attrs
        ]


RAW_KEY = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
"""An identifier as data names it (``cached_prompt``): never what a reader is shown."""


def shown_text(markup: str) -> str:
    """What a reader sees, less code samples (metric names and matchers are shown as code)."""
    return Document(re.sub(r"<code>.*?</code>", " ", markup, flags=re.S)).text


def ticks(markup: str) -> list[str]:
    """Every axis label of every chart in the markup, as read."""
    return [html.unescape(t) for t in re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', markup)]


def row_headers(markup: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<th scope="row">([^<]*)</th>', markup)]


def section(markup: str, ident: str) -> str:
    match = re.search(rf'<section id="{ident}"[^>]*>.*?</section>', markup, re.S)
    assert match, f"no section {ident}"
    return match.group(0)


def expected_figures(report: Report) -> dict[str, float | int | None]:
    """Every mark the page must carry, with the value ``rounded`` gives for it."""
    out: dict[str, float | int | None] = {}

    def put(section: str, item: str, measure: str, value: float | None) -> None:
        out[f"{section}.{item}.{measure}"] = rounded(value, unit_of(measure))

    for measure in (
        "spend",
        "tokens",
        "cost_per_million_tokens",
        "api_equivalent",
        "api_equivalent_per_million_tokens",
        "savings",
        "cost_ratio",
        "average_hourly_cost",
        "utilization",
        "hours_below_breakeven",
        "hours_compared",
    ):
        put("totals", "", measure, getattr(report.totals, measure))
    for measure in ("ratio", "missing_node_hours", "unobserved_spend_estimate"):
        put("coverage", "", measure, getattr(report.coverage, measure))
    for name, value in report.spend_by_component.items():
        put("spend_by_component", name, "spend", value)
    for name, value in report.tokens_by_kind.items():
        put("tokens_by_kind", name, "tokens", value)
    for prefix, rows in (("node", report.nodes), ("model", report.models)):
        for row in rows:
            for measure in ("spend", "tokens", "cost_per_million_tokens"):
                put(prefix, row.name, measure, getattr(row.totals, measure))
    for day in report.days:
        for measure in ("spend", "tokens", "cost_per_million_tokens"):
            put("day", day.date, measure, getattr(day, measure))
    return out


VARIANTS = {
    "full": {},
    "overspend": {"overspend": True},
    "unpriced": {"unpriced": True},
    "no-projection": {"projection": False},
    "no-components": {"components": False},
}


@pytest.fixture(params=sorted(VARIANTS))
def report(request: pytest.FixtureRequest) -> Report:
    return make_report(**VARIANTS[request.param])


# ----------------------------------------------------------------------------- the page


def test_the_page_parses_with_balanced_tags(report: Report) -> None:
    markup = render_html(report)
    doc = Document(markup)
    assert markup.startswith("<!DOCTYPE html>")
    assert doc.errors == []
    assert doc.stack == []


def test_the_page_refers_to_nothing_outside_itself(report: Report) -> None:
    markup = render_html(report).lower()
    for needle in ("<script", "http://", "https://", "src=", "href=", "url(", "@import", "<link"):
        assert needle not in markup, needle
    assert "<style>" in markup and "@media print" in markup


def test_the_prometheus_url_still_reads_as_given() -> None:
    doc = Document(render_html(make_report()))
    assert "http://prometheus.monitoring:9090" in doc.text
    assert 'cluster="prod"' in doc.text


def test_every_figure_is_marked_once_with_its_rounded_value(report: Report) -> None:
    figures = Document(render_html(report)).figures()
    expected = expected_figures(report)
    counts = Counter(key for key, _ in figures)
    assert set(counts) == set(expected)
    assert [key for key, n in counts.items() if n != 1] == []
    for key, value in figures:
        want = expected[key]
        if want is None:
            assert value == "", key
        else:
            assert float(value) == want, (key, value, want)
            if isinstance(want, int):
                assert value == str(want), key


def test_a_missing_figure_carries_an_empty_value() -> None:
    figures = dict(Document(render_html(make_report())).figures())
    assert figures["day.2025-05-10.cost_per_million_tokens"] == ""
    assert figures["day.2025-05-10.tokens"] == "0"


def test_sections_come_in_order() -> None:
    markup = render_html(make_report())
    ids = re.findall(r'<section id="([^"]+)"', markup)
    assert ids == [
        "bottom-line",
        "coverage",
        "findings",
        "summary",
        "advice",
        "components",
        "kinds",
        "projection",
        "daily",
        "hour-of-week",
        "nodes",
        "models",
        "events",
        "method",
    ]


def test_header_shows_the_period_in_the_report_time_zone() -> None:
    doc = Document(render_html(make_report()))
    assert "2025-05-01 00:00 \u2013 2025-06-01 00:00 (Europe/Berlin)" in doc.text
    assert "2025-06-01 08:30 (Europe/Berlin)" in doc.text  # generated at 06:30 UTC
    assert "recording rules" in doc.text and "USD" in doc.text


def test_no_selection_reads_all() -> None:
    doc = Document(render_html(dataclasses.replace(make_report(), selection=())))
    assert "Selection all" in doc.text


def test_savings_are_labelled_savings() -> None:
    report = make_report()
    assert report.totals.savings > 0
    summary = Document(section(render_html(report), "summary")).text
    assert "Savings versus the API" in summary
    assert "Overspend" not in summary


def test_negative_savings_read_as_a_positive_overspend() -> None:
    report = make_report(overspend=True)
    savings = report.totals.savings
    assert savings < 0
    markup = render_html(report)
    summary = Document(section(markup, "summary")).text
    assert "Overspend versus the API" in summary
    assert "Savings versus the API" not in summary
    assert f"${-savings:,.2f}" in summary
    assert f"-${-savings:,.2f}" not in summary
    assert dict(Document(markup).figures())["totals..savings"] == f"{rounded(savings, 'money')}"


def test_node_rows_say_overspend_when_the_api_was_cheaper() -> None:
    nodes = Document(section(render_html(make_report()), "nodes")).text
    node_b = make_report().nodes[1].totals
    assert node_b.savings < 0
    assert f"${-node_b.savings:,.2f} overspend" in nodes


def test_partial_coverage_is_prominent_and_lists_the_gap() -> None:
    markup = section(render_html(make_report()), "coverage")
    assert markup.startswith('<section id="coverage" class="box warn">')
    text = Document(markup).text
    assert "97.93%" in text  # 1422 of 1452 node-hours
    assert "30 node-hours are missing" in text
    assert f"{NODE_B} 2025-05-10 02:00 2025-05-11 08:00 30 h" in text
    assert "1,422 of 1,452 expected node-hours" in text and "a period of 744 hours" in text
    assert f"{NODE_B}: first data 2025-05-02 12:00" in text
    assert "$123.70" in text
    assert "cover observed hours only" in text


def test_full_coverage_is_not_flagged() -> None:
    report = make_report()
    full = dataclasses.replace(
        report.coverage, covered_node_hours=report.coverage.expected_node_hours, gaps=()
    )
    markup = section(render_html(dataclasses.replace(report, coverage=full)), "coverage")
    assert markup.startswith('<section id="coverage" class="box">')
    assert "No gaps" in Document(markup).text


def test_label_values_are_escaped() -> None:
    report = make_report()
    report = dataclasses.replace(report, title="Review <script>alert(1)</script> & co")
    markup = render_html(report)
    assert "<b>" not in markup
    assert "<script" not in markup
    assert "gpu-&lt;b&gt;&amp;b" in markup
    assert "qwen&lt;b&gt;&amp;coder" in markup
    text = Document(markup).text
    assert NODE_B in text and MODEL_B in text
    assert "Review <script>alert(1)</script> & co" in text


def test_label_text_that_reads_like_a_reference_stays_inert() -> None:
    odd = "see https://example.org/x?a=1 or url(x) src=y HREF=z @import"
    report = dataclasses.replace(
        make_report(), findings=(odd,), selection=(f'model="{odd}"',), title=odd
    )
    markup = render_html(report)
    lowered = markup.lower()
    for needle in ("http://", "https://", "src=", "href=", "url(", "@import"):
        assert needle not in lowered, needle
    assert odd in Document(section(markup, "findings")).text
    assert Document(markup).errors == []


def test_findings_are_listed() -> None:
    text = Document(section(render_html(make_report()), "findings")).text
    for finding in make_report().findings:
        assert finding in text


def test_unpriced_models_are_named_in_the_summary() -> None:
    summary = Document(section(render_html(make_report(unpriced=True)), "summary")).text
    assert f"excludes models without an API price: {MODEL_B}" in summary
    full = Document(section(render_html(make_report()), "summary")).text
    assert "excludes" not in full


def test_empty_components_say_why() -> None:
    markup = section(render_html(make_report(components=False)), "components")
    assert "not available when models are selected" in Document(markup).text
    assert "<svg" not in markup


def test_components_and_kinds_have_tables_and_bar_charts() -> None:
    markup = render_html(make_report())
    for ident, bars in (("components", 3), ("kinds", 3)):
        part = section(markup, ident)
        assert part.count('<rect class="bar"') == bars
        assert "<table" in part


def test_without_a_projection_the_page_says_so() -> None:
    markup = render_html(make_report(projection=False))
    text = Document(section(markup, "projection")).text
    assert "No llmcost_projected_* series were found" in text
    assert 'class="reference"' not in markup


def test_projection_table_and_bridges() -> None:
    report = make_report()
    markup = render_html(report)
    text = Document(section(markup, "projection")).text
    assert "Utilization 62.00% 43.22% -18.78%" in text
    assert "Spend $7,000.12 $7,135.80 +$135.68" in text
    assert "Planned cost per 1M $1.5123" in text
    realized = rounded(report.totals.cost_per_million_tokens, "money_per_million")
    assert f"Realized cost per 1M ${realized:.4f}" in text
    for line in report.variance.cost_per_million:
        assert line.label in text
    assert "Planned savings per 1M" in text and "Realized savings per 1M" in text
    assert "Token mix" in text
    assert section(markup, "daily").count('class="reference"') == 1


def test_events_are_listed_or_none() -> None:
    text = Document(section(render_html(make_report()), "events")).text
    assert "gpu-a 2025-05-14 05:00 Exporter restart 1" in text
    assert f"{NODE_B} 2025-05-20 13:00 Engine restart 2" in text
    assert "Exporter restarts: 1. Engine restarts: 2." in text
    quiet = dataclasses.replace(make_report(), events=())
    assert "None" in Document(section(render_html(quiet), "events")).text


# ----------------------------------------------------------------------------- reading order


def test_the_bottom_line_comes_first_and_coverage_right_after(report: Report) -> None:
    markup = render_html(report)
    header_end = markup.index("</header>")
    bottom = markup.index('<section id="bottom-line"')
    coverage = markup.index('<section id="coverage"')
    assert header_end < bottom < coverage < markup.index('<section id="findings"')
    assert "<section" not in markup[header_end:bottom]
    assert "<section" not in markup[markup.index("</section>", bottom) : coverage]


def test_the_bottom_line_shows_the_summarys_figures_and_a_verdict() -> None:
    report = make_report()
    markup = render_html(report)
    bottom = shown_text(section(markup, "bottom-line"))
    summary = section(markup, "summary")
    for measure, name in (
        ("spend", "Realized spend"),
        ("api_equivalent", "API-equivalent cost"),
        ("savings", "Savings versus the API"),
    ):
        cell = re.search(rf'data-figure="totals\.\.{measure}"[^>]*>([^<]*)<', summary).group(1)
        assert f"{name} {html.unescape(cell)}" in bottom, measure
    t = report.totals
    assert f"Realized spend {display(t.spend, 'money')}" in bottom
    assert "Self-hosting was cheaper than the API: " in bottom
    assert f"{display(t.savings, 'money')} saved" in bottom
    assert f"(cost ratio {display(t.cost_ratio, 'factor')})" in bottom
    assert "97.93% of the expected node-hours (see Coverage)" in bottom
    assert "data-figure" not in section(markup, "bottom-line")  # marked once, in the summary


def test_the_bottom_line_says_when_the_api_was_cheaper() -> None:
    report = make_report(overspend=True)
    bottom = shown_text(section(render_html(report), "bottom-line"))
    loss = display(-report.totals.savings, "money")
    assert f"Overspend versus the API {loss}" in bottom
    assert f"The API would have been cheaper: self-hosting cost {loss} more" in bottom
    assert "-$" not in bottom and "Savings" not in bottom


def test_the_bottom_line_names_what_it_leaves_out() -> None:
    bottom = shown_text(section(render_html(make_report(unpriced=True)), "bottom-line"))
    assert "API-equivalent cost (priced models)" in bottom
    assert "Models without an API price are left out of the comparison." in bottom
    report = make_report()
    full = dataclasses.replace(
        report.coverage, covered_node_hours=report.coverage.expected_node_hours, gaps=()
    )
    unpriced = dataclasses.replace(
        report.totals,
        api_equivalent=None,
        savings=None,
        cost_ratio=None,
        api_equivalent_per_million_tokens=None,
    )
    bare = dataclasses.replace(report, coverage=full, totals=unpriced)
    bottom = shown_text(section(render_html(bare), "bottom-line"))
    assert "API-equivalent cost n/a" in bottom and "Savings versus the API n/a" in bottom
    assert "No model in the selection has an API price, so there is no comparison." in bottom
    assert "observed hours" not in bottom


# ----------------------------------------------------------------------------- words and numbers


def test_no_raw_identifier_is_shown_as_a_label(report: Report) -> None:
    markup = render_html(report)
    assert RAW_KEY.findall(shown_text(markup)) == []
    kinds = section(markup, "kinds")
    assert row_headers(kinds) == ["Prompt", "Generation", "Cached prompt"]
    assert "<title>Cached prompt: 500,000,000 (13.97%)</title>" in kinds  # the bar's tooltip
    assert 'data-figure="tokens_by_kind.cached_prompt.tokens"' in kinds  # the key stays a key
    if report.spend_by_component:
        components = section(markup, "components")
        assert row_headers(components) == ["GPU", "Overhead", "Other node costs"]
        assert ">GPU</text>" in components and ">gpu<" not in components
    if report.projection is not None:
        mix = section(markup, "projection").split("<h3>Token mix</h3>")[1]
        assert row_headers(mix)[:3] == ["Prompt", "Cached prompt", "Generation"]
    for key in LABELS:
        assert f">{key}<" not in markup, key


def test_axis_ticks_carry_only_the_decimals_their_step_needs(report: Report) -> None:
    markup = render_html(report)
    assert ticks(section(markup, "daily")) == ["$0", "$1", "$2", "$3"]
    assert ticks(section(markup, "hour-of-week")) == ["0%", "50%", "100%"]
    assert not any(re.search(r"\.\d{4}", t) for t in ticks(markup))
    cheap = dataclasses.replace(
        report,
        currency="EUR",
        days=tuple(
            dataclasses.replace(
                d,
                cost_per_million_tokens=d.cost_per_million_tokens
                and d.cost_per_million_tokens / 100,
                api_equivalent_per_million_tokens=d.api_equivalent_per_million_tokens
                and d.api_equivalent_per_million_tokens / 100,
            )
            for d in report.days
        ),
        projection=None,
    )
    assert ticks(section(render_html(cheap), "daily")) == [
        "EUR 0.00",
        "EUR 0.01",
        "EUR 0.02",
        "EUR 0.03",
    ]


def test_hours_read_as_whole_hours_where_whole() -> None:
    report = make_report()
    markup = render_html(report)
    assert not re.search(r"\d\.00 (h\b|hours|node-hours|covered)", shown_text(markup))
    daily = shown_text(section(markup, "daily"))
    assert " 48 h " in daily and " 18 h " in daily
    assert "over 738 covered hours" in shown_text(section(markup, "summary"))
    days = (dataclasses.replace(report.days[0], covered_hours=3.5), *report.days[1:])
    daily = shown_text(section(render_html(dataclasses.replace(report, days=days)), "daily"))
    assert " 3.5 h " in daily and "3.50" not in daily


# ----------------------------------------------------------------------------- the CSV


def test_every_money_figure_of_the_csv_has_its_cents_and_the_jsons_value(report: Report) -> None:
    rows = [r for r in csv.DictReader(io.StringIO(render_csv(report))) if r["section"] != "meta"]
    figures = json.loads(render_json(report))["figures"]
    money = 0
    for r in rows:
        place = figures[r["section"]][r["item"]] if r["item"] else figures[r["section"]]
        want, value, unit = place[r["measure"]], r["value"], unit_of(r["measure"])
        if want is None:
            assert value == "", r
        elif is_money(unit):
            decimals = 2 if unit == "money" else 4
            assert re.fullmatch(rf"-?\d+\.\d{{{decimals}}}", value), r
            assert float(value) == want, r  # the same number, only written with its cents
            money += 1
        else:
            assert value == str(want), r
    assert money >= 50
    assert "totals,,spend,7135.80,USD" in render_csv(report)


def test_every_chart_is_an_accessible_image() -> None:
    doc = Document(render_html(make_report()))
    charts = [attrs for tag, attrs in doc.elements if tag == "svg"]
    assert len(charts) == 4  # components, kinds, daily, hour of week
    for attrs in charts:
        assert attrs.get("role") == "img"
        assert attrs.get("aria-label")


def test_the_heatmap_has_one_cell_per_hour_of_the_week() -> None:
    markup = section(render_html(make_report()), "hour-of-week")
    cells = [
        a for t, a in Document(markup).elements if t == "rect" and "cell" in (a.get("class") or "")
    ]
    assert len(cells) == 168
    missing = [a for a in cells if "nodata" in (a.get("class") or "")]
    assert len(missing) == 3  # Sunday 00:00 to 03:00
    assert "Peak-to-trough: 3.46\u00d7" in Document(markup).text


def test_a_day_without_a_value_breaks_the_line() -> None:
    markup = section(render_html(make_report()), "daily")
    elements = Document(markup).elements
    lines = [a for t, a in elements if t == "polyline" and a.get("data-series") == "0"]
    assert [len((a["points"] or "").split()) for a in lines] == [GAP_DAY, 31 - GAP_DAY - 1]
    dots = [a for t, a in elements if t == "circle" and a.get("data-series") == "0"]
    assert len(dots) == 30
    assert "Realized cost per 1M, 2025-05-10:" not in markup
    assert "Realized cost per 1M, 2025-05-11:" in markup
    xs = sorted(float(a["cx"]) for a in dots)
    steps = [round(b - a, 1) for a, b in zip(xs, xs[1:], strict=False)]
    assert steps.count(max(steps)) == 1 and max(steps) == pytest.approx(2 * min(steps), abs=0.2)


def test_the_output_is_deterministic(report: Report) -> None:
    assert render_html(report) == render_html(report)
    assert render_html(make_report()) == render_html(make_report())


# ----------------------------------------------------------------------------- the charts


def test_line_chart_leaves_gaps_and_draws_no_zero() -> None:
    svg = line_chart(
        ["d1", "d2", "d3", "d4", "d5"],
        [Series("cost", [1.0, 2.0, None, 4.0, 5.0], "#000")],
        references=[Reference("plan", 3.0, "#555")],
        title="t",
    )
    elements = Document(svg).elements
    lines = [a["points"] for t, a in elements if t == "polyline"]
    assert len(lines) == 2
    ys = {float(p.split(",")[1]) for pts in lines for p in pts.split()}
    zero_y = max(float(a["y1"]) for t, a in elements if t == "line" and a.get("y1") == a.get("y2"))
    assert zero_y not in ys
    assert 'stroke-dasharray="6 4"' in svg
    assert svg.startswith('<svg class="chart chart-line" role="img" aria-label="t: 5 points')


def test_line_chart_with_no_data_says_so() -> None:
    svg = line_chart(["d1"], [Series("cost", [None], "#000")], title="empty")
    assert "no data" in svg and "<polyline" not in svg and "<circle" not in svg


def test_line_chart_labels_are_sparse() -> None:
    labels = [f"2025-05-{i:02d}" for i in range(1, 32)]
    svg = line_chart(labels, [Series("cost", [1.0] * 31, "#000")], title="t")
    shown = [label for label in labels if f">{label}</text>" in svg]
    assert 3 <= len(shown) < 31 and shown[0] == labels[0]


def test_nice_ticks_are_round() -> None:
    assert nice_ticks(0, 2.37) == [0, 1.0, 2.0, 3.0]
    assert nice_ticks(0, 0) == [0, 0.25, 0.5, 0.75, 1.0]


def test_heatmap_tooltips_hold_the_exact_value() -> None:
    svg = heatmap([0.123456] + [None] * 167, title="u", notes=["n<1>"] + [None] * 167)
    assert "<title>Mon 00:00\u201301:00: 12.35%; n&lt;1&gt;</title>" in svg
    assert svg.count('class="cell nodata"') == 167


def test_bar_chart_escapes_and_labels_values() -> None:
    svg = bar_chart([("a<b>&", 3.0), ("c", 1.0)], unit="money", title="spend <x>")
    assert "a&lt;b&gt;&amp;" in svg and "<b>" not in svg
    assert "$3.00 (75.00%)" in svg
    assert 'aria-label="spend &lt;x&gt;: a&lt;b&gt;&amp; $3.00 (75.00%); c $1.00 (25.00%)."' in svg


# ----------------------------------------------------------------------------- the units


SPEC_UNITS = {
    "spend": "money",
    "api_equivalent": "money",
    "savings": "money",
    "average_hourly_cost": "money",
    "unobserved_spend_estimate": "money",
    "cost_per_million_tokens": "money_per_million",
    "api_equivalent_per_million_tokens": "money_per_million",
    "tokens": "tokens",
    "utilization": "ratio",
    "ratio": "ratio",
    "cost_ratio": "factor",
    "missing_node_hours": "hours",
    "hours_below_breakeven": "count",
    "hours_compared": "count",
}


def test_measures_have_the_agreed_units() -> None:
    for measure, unit in SPEC_UNITS.items():
        assert unit_of(measure) == unit, measure
    assert set(MEASURE_UNITS.values()) <= {
        "money",
        "money_per_million",
        "tokens",
        "ratio",
        "factor",
        "hours",
        "count",
    }
    with pytest.raises(KeyError, match="no unit"):
        unit_of("sped")
