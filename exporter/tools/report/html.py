"""The review as one self-contained HTML page, for SREs and for finance.

The page is a single file that is mailed, archived and printed: styles are
inline, charts are inline SVG, and nothing refers to anything outside the file
(no script, no font, no image, no link). Every figure is rounded and shown by
:mod:`exporter.report.units`, and the figures a machine may want to check carry
``data-figure="<section>.<item>.<measure>"`` with the rounded value in
``data-value``, so the page can be compared with the CSV and JSON outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone, tzinfo

from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.model import (
    Coverage,
    Day,
    Event,
    Report,
    Row,
    Totals,
    Variance,
    VarianceLine,
)
from llm_cost_exporter.tools.report.period import PeriodError, zone_named
from llm_cost_exporter.tools.report.svg import (
    Reference,
    Series,
    bar_chart,
    heatmap,
    line_chart,
    text,
)
from llm_cost_exporter.tools.report.units import DECIMALS, Unit, display, rounded

REALIZED_COLOUR = "#2563eb"
API_COLOUR = "#ea580c"
PLANNED_COLOUR = "#4b5563"

EVENT_NAMES = {"exporter_restart": "exporter restart", "engine_restart": "engine restart"}

CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --strong-line: #d1d5db;
  --bad: #b91c1c; --good: #047857; }
* { box-sizing: border-box; }
html { font-size: 14px; background: #f3f4f6; }
body { margin: 0; color: var(--ink); font-size: 1rem; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1200px; margin: 24px auto; padding: 2.3rem 2.8rem 2.8rem; background: #fff;
  border: 1px solid var(--line); border-radius: 8px; }
h1 { font-size: 1.85rem; line-height: 1.25; margin: 0 0 0.3rem; }
h2 { font-size: 1.3rem; margin: 2.6rem 0 0.85rem; padding-bottom: 0.4rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1.07rem; margin: 1.4rem 0 0.4rem; }
p { margin: 0.4rem 0 0.7rem; }
.period { font-size: 1.15rem; color: var(--muted); margin: 0 0 1.3rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1.3rem; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9rem;
  background: #f3f4f6; padding: 0.05rem 0.3rem; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; margin: 0.4rem 0 1rem;
  font-variant-numeric: tabular-nums; }
th, td { padding: 0.45rem 0.7rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { font-size: 0.85rem; font-weight: 600; color: var(--muted);
  border-bottom: 2px solid var(--strong-line); vertical-align: bottom; }
thead th.num { white-space: normal; }
tbody th { font-weight: 500; }
.num { text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
td.when { min-width: 5.5em; }
table.compact th, table.compact td { padding: 0.2rem 0.5rem; font-size: 0.9rem; }
table.summary { break-inside: avoid; page-break-inside: avoid; }
table.summary td.num { font-weight: 600; font-size: 1.07rem; }
table.summary td.note, .note { color: var(--muted); font-size: 0.93rem; }
tr.edge td, tr.edge th { font-weight: 600; background: #f9fafb; }
.box { border: 1px solid var(--line); border-radius: 8px; padding: 0.3rem 1.4rem 0.85rem;
  margin: 1.4rem 0; }
.box h2 { border-bottom: 0; margin-top: 0.85rem; }
.box.warn { border: 2px solid #f59e0b; background: #fffbeb; }
.box.warn table { background: #fff; }
.lead { font-size: 1.15rem; }
.bad { color: var(--bad); }
.good { color: var(--good); }
.split { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 2rem;
  align-items: start; }
figure { margin: 0.6rem 0 1.1rem; }
figcaption { color: var(--muted); font-size: 0.93rem; margin-top: 0.3rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
ul.findings li { margin: 0.3rem 0; }
footer { margin-top: 2.6rem; color: var(--muted); font-size: 0.85rem; }
@media screen and (max-width: 820px) {
  main { padding: 1.4rem; margin: 0; border: 0; border-radius: 0; }
  .split { grid-template-columns: 1fr; }
}
@page { size: A4; margin: 14mm; }
@media print {
  html { font-size: 10.5px; background: #fff; }
  main { max-width: none; margin: 0; padding: 0; border: 0; border-radius: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  figure, .box, tr { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  .scroll { overflow: visible; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


# Small helpers -----------------------------------------------------------------------------


def _zone(name: str) -> tuple[tzinfo, str]:
    """The report's time zone, and how it is named on the page.

    An unknown zone falls back to UTC and says so, rather than mislabelling times.
    """
    if name.strip().upper() in ("UTC", "Z", "ETC/UTC", ""):
        return timezone.utc, "UTC"
    try:
        return zone_named(name), name
    except PeriodError:
        return timezone.utc, f"UTC (time zone {name} unknown)"


def _when(moment: datetime | None, zone: tzinfo) -> str:
    """A moment in the report's zone; naive times are taken as UTC, never as the host's."""
    if moment is None:
        return "n/a"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _data_value(value: float | None, unit: Unit) -> str:
    """The rounded value in fixed notation: what ``rounded`` gives, without exponents."""
    r = rounded(value, unit)
    return "" if r is None else f"{r:.{DECIMALS[unit]}f}"


def _mark(section: str, item: str, measure: str, value: float | None) -> str:
    """The attributes that let a machine find a figure and its rounded value."""
    key = f"{section}.{item}.{measure}"
    return f'data-figure="{text(key)}" data-value="{_data_value(value, unit_of(measure))}"'


def _cell(
    section: str,
    item: str,
    measure: str,
    value: float | None,
    currency: str,
    *,
    shown: str | None = None,
    tag: str = "td",
) -> str:
    """A marked figure; ``shown`` replaces the displayed text (already escaped)."""
    content = shown if shown is not None else text(display(value, unit_of(measure), currency))
    return f'<{tag} class="num" {_mark(section, item, measure, value)}>{content}</{tag}>'


def _plain(value: float | None, unit: Unit, currency: str) -> str:
    """An unmarked figure cell."""
    return f'<td class="num">{text(display(value, unit, currency))}</td>'


def _signed(value: float | None, unit: Unit, currency: str) -> str:
    """A difference, with an explicit plus so the direction is never guessed."""
    shown = display(value, unit, currency)
    r = rounded(value, unit)
    return f"+{shown}" if r is not None and r > 0 else shown


def _savings_words(savings: float | None, currency: str) -> tuple[str, str]:
    """Savings as a positive amount and the word for its direction."""
    if savings is None:
        return "n/a", ""
    amount = text(display(abs(savings), "money", currency))
    if (rounded(savings, "money") or 0) < 0:
        return amount, "overspend"
    return amount, "savings"


def _table(head: Sequence[tuple[str, bool]], rows: Iterable[str], cls: str = "") -> str:
    """A table with a header; ``head`` is (label, numeric) per column."""
    cells = "".join(
        f'<th scope="col"{" class=num" if numeric else ""}>{text(label)}</th>'
        for label, numeric in head
    )
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _scroll(table: str) -> str:
    """Wide tables scroll on a narrow screen instead of pushing the page sideways."""
    return f'<div class="scroll">{table}</div>'


def _section(ident: str, title: str, body: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<section id="{ident}"{klass}><h2>{text(title)}</h2>{body}</section>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{text(caption)}</figcaption></figure>"


# Sections ----------------------------------------------------------------------------------


def _header(report: Report, zone: tzinfo, zone_name: str) -> str:
    selection = (
        ", ".join(f"<code>{text(m)}</code>" for m in report.selection)
        if report.selection
        else "all (no selection)"
    )
    meta = (
        ("Generated", text(f"{_when(report.generated_at, zone)} ({zone_name})")),
        ("Prometheus", f"<code>{text(report.prometheus_url)}</code>"),
        ("Selection", selection),
        ("Data source", text(report.coverage.source)),
        ("Currency", text(report.currency)),
    )
    rows = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in meta)
    period = (
        f"{_when(report.period_start, zone)} \u2013 {_when(report.period_end, zone)} ({zone_name})"
    )
    return (
        f"<header><h1>{text(report.title)}</h1>"
        f'<p class="period">{text(period)}</p><dl class="meta">{rows}</dl></header>'
    )


def _coverage(report: Report, zone: tzinfo) -> str:
    cov, currency = report.coverage, report.currency
    partial = cov.ratio < 1.0 or bool(cov.gaps)
    unobserved = cov.unobserved_spend_estimate
    lead = (
        f'<p class="lead">The data covers <strong {_mark("coverage", "", "ratio", cov.ratio)}>'
        f"{text(display(cov.ratio, 'ratio'))}</strong> of the expected node-hours; "
        f"<strong {_mark('coverage', '', 'missing_node_hours', cov.missing_node_hours)}>"
        f"{text(display(cov.missing_node_hours, 'hours'))}</strong> node-hours are missing.</p>"
    )
    scope = (
        "<p>All totals in this report cover observed hours only. "
        f"{text(display(cov.covered_node_hours, 'hours'))} of "
        f"{text(display(cov.expected_node_hours, 'hours'))} expected node-hours were observed, "
        f"in a period of {text(display(cov.period_hours, 'hours'))} hours. At each node's last "
        "known hourly cost, the unobserved hours would have cost about "
        f"<strong {_mark('coverage', '', 'unobserved_spend_estimate', unobserved)}>"
        f"{text(display(unobserved, 'money', currency))}</strong>, "
        "which is not included in the totals.</p>"
    )
    body = lead + scope + _gaps(cov, zone) + _membership(cov, zone)
    return (
        f'<section id="coverage" class="box{" warn" if partial else ""}">'
        f"<h2>Coverage</h2>{body}</section>"
    )


def _gaps(cov: Coverage, zone: tzinfo) -> str:
    if not cov.gaps:
        return "<p>No gaps: every node reported for every hour between its first and last hour.</p>"
    rows = (
        f"<tr><td>{text(g.node)}</td><td>{_when(g.start, zone)}</td><td>{_when(g.end, zone)}</td>"
        f"{_plain(g.hours, 'hours', '')}</tr>"
        for g in sorted(cov.gaps, key=lambda g: (g.start, g.node))
    )
    head = (("Node", False), ("Gap start", False), ("Gap end", False), ("Hours", True))
    return "<h3>Gaps</h3>" + _table(head, rows, "compact")


def _membership(cov: Coverage, zone: tzinfo) -> str:
    parts = []
    for title, entries, verb in (
        ("Nodes that joined", cov.nodes_joined, "first data"),
        ("Nodes that left", cov.nodes_left, "last data"),
    ):
        if entries:
            items = "".join(
                f"<li>{text(node)}: {verb} {_when(moment, zone)}</li>"
                for node, moment in sorted(entries, key=lambda e: (e[1], e[0]))
            )
            parts.append(f"<h3>{title} during the period</h3><ul>{items}</ul>")
    return "".join(parts)


def _findings(report: Report) -> str:
    if not report.findings:
        return _section("findings", "Findings", "<p>No findings.</p>")
    items = "".join(f"<li>{text(f)}</li>" for f in report.findings)
    return _section("findings", "Findings", f'<ul class="findings">{items}</ul>')


def _summary(report: Report) -> str:
    t, currency = report.totals, report.currency
    amount, word = _savings_words(t.savings, currency)
    savings_label = {"overspend": "Overspend versus the API", "savings": "Savings versus the API"}
    rows = [
        ("Realized spend", "spend", t.spend, None, _covered_note(t)),
        ("Tokens", "tokens", t.tokens, None, "all tokens served, of every kind"),
        (
            "Effective cost per 1M tokens",
            "cost_per_million_tokens",
            t.cost_per_million_tokens,
            None,
            "realized spend \u00f7 tokens",
        ),
        (
            "API-equivalent cost of the same traffic",
            "api_equivalent",
            t.api_equivalent,
            None,
            "the same tokens at the API's list prices" + _priced_only(report),
        ),
        (
            "API-equivalent per 1M tokens",
            "api_equivalent_per_million_tokens",
            t.api_equivalent_per_million_tokens,
            None,
            "API-equivalent cost \u00f7 priced tokens",
        ),
        (
            savings_label.get(word, "Savings versus the API"),
            "savings",
            t.savings,
            amount if word else None,
            _savings_note(word, t, currency),
        ),
        (
            "Cost ratio",
            "cost_ratio",
            t.cost_ratio,
            None,
            "self-hosted cost \u00f7 API-equivalent; above 1.00\u00d7 the API was cheaper",
        ),
        (
            "Average hourly cost",
            "average_hourly_cost",
            t.average_hourly_cost,
            None,
            "average cost per covered hour",
        ),
        (
            "Utilization",
            "utilization",
            t.utilization,
            None,
            "tokens served \u00f7 token capacity over the covered hours",
        ),
    ]
    body = [
        f'<tr><th scope="row">{text(label)}</th>'
        f"{_cell('totals', '', measure, value, currency, shown=shown)}"
        f'<td class="note">{text(note)}</td></tr>'
        for label, measure, value, shown, note in rows
    ]
    body.append(_breakeven_row(t))
    head = (("Measure", False), ("Value", True), ("", False))
    table = _table(head, body, "summary")
    return _section("summary", "Summary", table + _unpriced(report))


def _covered_note(t: Totals) -> str:
    return f"over {display(t.covered_hours, 'hours')} covered hours"


def _priced_only(report: Report) -> str:
    return "; priced models only" if report.unpriced_models else ""


def _savings_note(word: str, t: Totals, currency: str) -> str:
    if not word:
        return "no model in the selection has an API price"
    spent = display(t.priced_spend, "money", currency)
    if word == "overspend":
        return f"self-hosting cost more than the API would have; spend on priced models {spent}"
    return f"the API would have cost more; spend on priced models {spent}"


def _breakeven_row(t: Totals) -> str:
    below = rounded(t.hours_below_breakeven, "count")
    compared = rounded(t.hours_compared, "count")
    share = display(t.share_below_breakeven, "ratio")
    return (
        '<tr><th scope="row">Hours below break-even</th><td class="num">'
        f"<span {_mark('totals', '', 'hours_below_breakeven', t.hours_below_breakeven)}>"
        f"{text(display(below, 'count'))}</span> of "
        f"<span {_mark('totals', '', 'hours_compared', t.hours_compared)}>"
        f"{text(display(compared, 'count'))}</span></td>"
        f'<td class="note">{text(share)} of the hours with an API comparison; '
        "in those hours the API would have been cheaper</td></tr>"
    )


def _unpriced(report: Report) -> str:
    if not report.unpriced_models:
        return ""
    names = ", ".join(f"<code>{text(m)}</code>" for m in sorted(report.unpriced_models))
    return (
        f'<p class="note">The API comparison excludes models without an API price: {names}. '
        "Their spend and tokens are in the realized totals but not in the API-equivalent, "
        "savings, cost ratio or break-even figures.</p>"
    )


def _breakdown(
    ident: str,
    title: str,
    section: str,
    measure: str,
    column: str,
    value_column: str,
    values: dict[str, float],
    currency: str,
) -> str:
    """A table of a breakdown beside its bar chart, largest first."""
    unit = unit_of(measure)
    items = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = (
        f'<tr><th scope="row">{text(name)}</th>'
        f"{_cell(section, name, measure, value, currency)}</tr>"
        for name, value in items
    )
    table = _table(((column, False), (value_column, True)), rows)
    chart = bar_chart(items, unit=unit, currency=currency, title=title)
    return _section(ident, title, f'<div class="split">{table}<figure>{chart}</figure></div>')


def _components(report: Report) -> str:
    if not report.spend_by_component:
        return _section(
            "components",
            "Spend by component",
            "<p>Spend by component is not available when models are selected.</p>",
        )
    return _breakdown(
        "components",
        "Spend by component",
        "spend_by_component",
        "spend",
        "Component",
        "Spend",
        report.spend_by_component,
        report.currency,
    )


def _kinds(report: Report) -> str:
    if not report.tokens_by_kind:
        return _section("kinds", "Tokens by kind", "<p>No tokens were recorded.</p>")
    return _breakdown(
        "kinds",
        "Tokens by kind",
        "tokens_by_kind",
        "tokens",
        "Kind",
        "Tokens",
        report.tokens_by_kind,
        report.currency,
    )


def _projection(report: Report) -> str:
    title = "Projection versus realized"
    plan, t, currency = report.projection, report.totals, report.currency
    if plan is None:
        return _section(
            "projection",
            title,
            "<p>No <code>llmcost_projected_*</code> series were found for this selection and "
            "period, so there is no plan to compare with.</p>",
        )
    lines = (
        ("Utilization", "ratio", plan.utilization, t.utilization),
        ("Tokens", "tokens", plan.tokens, t.tokens),
        (
            "Cost per 1M tokens",
            "money_per_million",
            plan.cost_per_million_tokens,
            t.cost_per_million_tokens,
        ),
        ("Hourly cost", "money", plan.hourly_cost, t.average_hourly_cost),
        ("Spend", "money", plan.spend, t.spend),
        (
            "API-equivalent per 1M tokens",
            "money_per_million",
            plan.api_equivalent_per_million_tokens,
            t.api_equivalent_per_million_tokens,
        ),
    )
    rows = (
        f'<tr><th scope="row">{label}</th>{_plain(planned, unit, currency)}'
        f"{_plain(realized, unit, currency)}"
        f'<td class="num">{text(_signed(_difference(realized, planned), unit, currency))}</td>'
        "</tr>"
        for label, unit, planned, realized in lines
    )
    head = (("Measure", False), ("Planned", True), ("Realized", True), ("Difference", True))
    body = (
        "<p>Planned figures are the <code>llmcost_projected_*</code> series during the period, "
        "scaled to the covered hours so both columns describe the same time. The utilization "
        "difference is in percentage points.</p>" + _table(head, rows)
    )
    body += _token_mix(report)
    body += _bridges(report.variance, plan.cost_per_million_tokens, t, currency)
    return _section("projection", title, body)


def _difference(realized: float | None, planned: float | None) -> float | None:
    return None if realized is None or planned is None else realized - planned


def _token_mix(report: Report) -> str:
    plan = report.projection
    if plan is None or not plan.token_mix:
        return ""
    total = sum(report.tokens_by_kind.values())
    kinds = list(dict.fromkeys([*plan.token_mix, *report.tokens_by_kind]))
    rows = []
    for kind in kinds:
        planned = plan.token_mix.get(kind)
        realized = report.tokens_by_kind.get(kind, 0.0) / total if total else None
        rows.append(
            f'<tr><th scope="row">{text(kind)}</th>{_plain(planned, "ratio", "")}'
            f"{_plain(realized, 'ratio', '')}"
            f'<td class="num">{text(_signed(_difference(realized, planned), "ratio", ""))}</td>'
            "</tr>"
        )
    head = (
        ("Token kind", False),
        ("Planned share", True),
        ("Realized share", True),
        ("Difference", True),
    )
    return "<h3>Token mix</h3>" + _table(head, rows, "compact")


def _bridges(
    variance: Variance | None, planned_cost: float | None, t: Totals, currency: str
) -> str:
    if variance is None:
        return '<p class="note">The difference could not be split into causes.</p>'
    cost = _bridge(
        "Cost per 1M tokens: from plan to realized",
        "A positive line raised the cost per 1M tokens.",
        ("Planned cost per 1M", planned_cost),
        variance.cost_per_million,
        ("Realized cost per 1M", t.cost_per_million_tokens),
        currency,
    )
    savings = _bridge(
        "Savings per 1M tokens: from plan to realized",
        "A positive line raised the savings per 1M tokens against the API.",
        ("Planned savings per 1M", variance.planned_savings_per_million),
        variance.savings_per_million,
        ("Realized savings per 1M", variance.realized_savings_per_million),
        currency,
    )
    return cost + savings


def _bridge(
    title: str,
    explanation: str,
    start: tuple[str, float | None],
    lines: Sequence[VarianceLine],
    end: tuple[str, float | None],
    currency: str,
) -> str:
    """Planned figure, each cause with its effect, realized figure: the lines add up."""
    rows = [_bridge_edge(*start, currency)]
    rows += [
        f'<tr><td>{text(line.label)}</td><td class="num">'
        f"{text(_signed(line.per_million, 'money_per_million', currency))}</td>"
        f'<td class="num">{text(_signed(line.amount, "money", currency))}</td></tr>'
        for line in lines
    ]
    rows.append(_bridge_edge(*end, currency))
    head = (("Step", False), ("Per 1M tokens", True), ("Over the period", True))
    return (
        f"<h3>{text(title)}</h3><p class=\"note\">{text(explanation)} 'Over the period' is "
        "the effect on the realized tokens.</p>" + _table(head, rows)
    )


def _bridge_edge(label: str, value: float | None, currency: str) -> str:
    return (
        f'<tr class="edge"><td>{text(label)}</td>{_plain(value, "money_per_million", currency)}'
        "<td></td></tr>"
    )


def _daily(report: Report) -> str:
    days, currency = report.days, report.currency
    if not days:
        return _section("daily", "Daily cost per 1M tokens", "<p>No days with data.</p>")
    series = [
        Series("Realized cost per 1M", [d.cost_per_million_tokens for d in days], REALIZED_COLOUR),
        Series(
            "API-equivalent per 1M",
            [d.api_equivalent_per_million_tokens for d in days],
            API_COLOUR,
        ),
    ]
    references = []
    if report.projection is not None and report.projection.cost_per_million_tokens is not None:
        references.append(
            Reference(
                "Planned cost per 1M", report.projection.cost_per_million_tokens, PLANNED_COLOUR
            )
        )
    chart = line_chart(
        [d.date for d in days],
        series,
        references=references,
        unit="money_per_million",
        currency=currency,
        title="Daily cost per 1M tokens",
    )
    caption = (
        "Days without tokens leave a gap in the line. Dates are calendar days in the "
        f"report's time zone ({report.timezone})."
    )
    return _section(
        "daily", "Daily cost per 1M tokens", _figure(chart, caption) + _day_table(days, currency)
    )


def _day_table(days: Sequence[Day], currency: str) -> str:
    rows = (
        f'<tr><th scope="row">{text(d.date)}</th>'
        f"{_cell('day', d.date, 'spend', d.spend, currency)}"
        f"{_cell('day', d.date, 'tokens', d.tokens, currency)}"
        f"{_cell('day', d.date, 'cost_per_million_tokens', d.cost_per_million_tokens, currency)}"
        f"{_plain(d.api_equivalent_per_million_tokens, 'money_per_million', currency)}"
        f"{_plain(d.utilization, 'ratio', currency)}"
        f"{_plain(d.covered_hours, 'hours', currency)}"
        f"{_plain(d.hours_below_breakeven, 'count', currency)}</tr>"
        for d in days
    )
    head = (
        ("Date", False),
        ("Spend", True),
        ("Tokens", True),
        ("Cost per 1M", True),
        ("API-eq. per 1M", True),
        ("Utilization", True),
        ("Covered hours", True),
        ("Hours below break-even", True),
    )
    return _table(head, rows, "compact")


def _hour_of_week(report: Report) -> str:
    tokens = report.hour_of_week_tokens
    notes = [
        None
        if i >= len(tokens) or tokens[i] is None
        else f"{display(tokens[i], 'tokens')} tokens per hour on average"
        for i in range(168)
    ]
    chart = heatmap(
        report.hour_of_week_utilization, title="Utilization by hour of week", notes=notes
    )
    caption = (
        f"Average utilization for each hour of the week, Monday first, in {report.timezone}. "
        "Grey hatched cells had no data."
    )
    ratio = (
        f"<p>Peak-to-trough: <strong>{text(display(report.peak_to_trough, 'factor'))}</strong> "
        "(the busiest hour of the weekly profile over the quietest).</p>"
    )
    return _section("hour-of-week", "Utilization by hour of week", _figure(chart, caption) + ratio)


def _row_cells(section: str, row: Row, currency: str) -> str:
    t = row.totals
    per_million = t.cost_per_million_tokens
    amount, word = _savings_words(t.savings, currency)
    savings = f"{amount} {word}" if word else amount
    klass = "num bad" if word == "overspend" else "num"
    return (
        f'<th scope="row">{text(row.name)}</th>'
        f"{_cell(section, row.name, 'spend', t.spend, currency)}"
        f"{_cell(section, row.name, 'tokens', t.tokens, currency)}"
        f"{_cell(section, row.name, 'cost_per_million_tokens', per_million, currency)}"
        f"{_plain(t.api_equivalent, 'money', currency)}"
        f'<td class="{klass}">{savings}</td>'
        f"{_plain(t.cost_ratio, 'factor', currency)}"
        f"{_plain(t.utilization, 'ratio', currency)}"
        f"{_plain(t.share_below_breakeven, 'ratio', currency)}"
    )


ROW_HEAD = (
    ("Name", False),
    ("Spend", True),
    ("Tokens", True),
    ("Cost per 1M", True),
    ("API-equivalent", True),
    ("Savings / overspend", True),
    ("Cost ratio", True),
    ("Utilization", True),
    ("Hours below break-even (share)", True),
)


def _nodes(report: Report, zone: tzinfo) -> str:
    if not report.nodes:
        return _section("nodes", "Per node", "<p>No nodes in the selection.</p>")
    rows = (
        f"<tr>{_row_cells('node', row, report.currency)}"
        f"{_plain(row.coverage, 'ratio', report.currency)}"
        f'<td class="when">{_when(row.first_seen, zone)}</td>'
        f'<td class="when">{_when(row.last_seen, zone)}</td></tr>'
        for row in report.nodes
    )
    head = (*ROW_HEAD, ("Coverage", True), ("First seen", False), ("Last seen", False))
    return _section("nodes", "Per node", _scroll(_table(head, rows, "compact")))


def _models(report: Report) -> str:
    if not report.models:
        return _section("models", "Per model", "<p>No models in the selection.</p>")
    rows = (f"<tr>{_row_cells('model', row, report.currency)}</tr>" for row in report.models)
    note = (
        '<p class="note">Models without an API price show n/a for the API comparison.</p>'
        if report.unpriced_models
        else ""
    )
    return _section("models", "Per model", _scroll(_table(ROW_HEAD, rows, "compact")) + note)


def _events(report: Report, zone: tzinfo) -> str:
    if not report.events:
        return _section("events", "Events", "<p>None: no exporter or engine restarts.</p>")
    events: list[Event] = sorted(report.events, key=lambda e: (e.hour, e.node, e.kind))
    rows = (
        f"<tr><td>{text(e.node)}</td><td>{_when(e.hour, zone)}</td>"
        f"<td>{text(EVENT_NAMES.get(e.kind, e.kind))}</td>{_plain(e.count, 'count', '')}</tr>"
        for e in events
    )
    counts = {
        name: sum(e.count for e in events if e.kind == kind) for kind, name in EVENT_NAMES.items()
    }
    lead = "<p>" + text(", ".join(f"{name}s: {n}" for name, n in counts.items())) + ".</p>"
    head = (("Node", False), ("Hour", False), ("Event", False), ("Count", True))
    return _section("events", "Events", lead + _table(head, rows, "compact"))


def _method(report: Report) -> str:
    source = (
        "the hourly recording rules"
        if "recording" in report.coverage.source.lower()
        else "the raw counters"
    )
    items = (
        "Money comes from the increase of the exporter's cost counters over the period; "
        f"for this report they were read from {source}.",
        "Each hour's figure is the counters' increase over an hour. With recording rules "
        "that hour ends where Prometheus evaluates the rule group, a fixed minute past each "
        "hour, so the period's edges shift by under an hour; raw counters (--source raw) "
        "give hours aligned to the clock. Counter resets are carried across.",
        "Only observed hours count: hours without data (see Coverage) are left out of every "
        "total, average and ratio, not filled with zeros or estimates.",
        "The API comparison covers only models with an API price: the API-equivalent is "
        "their tokens at list prices, and savings, cost ratio and break-even hours compare it "
        "with their spend alone.",
        "Figures are rounded once, at the end: money to the cent, prices per 1M tokens to "
        "a hundredth of a cent, shares to a hundredth of a percent.",
    )
    body = "<ul>" + "".join(f"<li>{text(item)}</li>" for item in items) + "</ul>"
    return _section("method", "How these figures are computed", body)


# Document ----------------------------------------------------------------------------------


def render_html(report: Report) -> str:
    """The whole review as one HTML5 document with no external reference."""
    zone, zone_name = _zone(report.timezone)
    parts = (
        _header(report, zone, zone_name),
        _coverage(report, zone),
        _findings(report),
        _summary(report),
        _components(report),
        _kinds(report),
        _projection(report),
        _daily(report),
        _hour_of_week(report),
        _nodes(report, zone),
        _models(report),
        _events(report, zone),
        _method(report),
        "<footer>llm-cost-exporter report</footer>",
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(report.title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )
