"""The review as one self-contained HTML page, for SREs and for finance.

The page is a single file that is mailed, archived and printed: styles are
inline, charts are inline SVG, and nothing refers to anything outside the file
(no script, no font, no image, no link). It opens with the bottom line (spend,
the API-equivalent, the difference and a verdict) and then how much of the
period the data covers, since every total depends on it. Identifiers read as
words (:mod:`exporter.report.labels`). Every figure is rounded and shown by
:mod:`exporter.report.units`, and the figures a machine may want to check carry
``data-figure="<section>.<item>.<measure>"`` with the rounded value in
``data-value``, so the page can be compared with the CSV and JSON outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone, tzinfo

from llm_cost_exporter.tools.report.advice_html import advice_section
from llm_cost_exporter.tools.report.labels import EVENTS, label
from llm_cost_exporter.tools.report.markup import (
    document,
    html_figure,
    html_section,
    html_table,
    mark,
    marked_cell,
    plain_cell,
    scrolling,
    signed,
)
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
from llm_cost_exporter.tools.report.units import display, rounded

REALIZED_COLOUR = "#2563eb"
API_COLOUR = "#ea580c"
PLANNED_COLOUR = "#4b5563"


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


def _savings_words(savings: float | None, currency: str) -> tuple[str, str]:
    """Savings as a positive amount and the word for its direction."""
    if savings is None:
        return "n/a", ""
    amount = text(display(abs(savings), "money", currency))
    if (rounded(savings, "money") or 0) < 0:
        return amount, "overspend"
    return amount, "savings"


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


def _bottom_line(report: Report) -> str:
    """Spend, what the API would have charged, the difference and what it means, first."""
    t, currency = report.totals, report.currency
    amount, word = _savings_words(t.savings, currency)
    priced = " (priced models)" if report.unpriced_models else ""
    figures = (
        ("Realized spend", text(display(t.spend, "money", currency))),
        (
            "API-equivalent cost" + priced,
            text(display(t.api_equivalent, "money", currency)),
        ),
        ("Overspend versus the API" if word == "overspend" else "Savings versus the API", amount),
    )
    headline = "".join(
        f"<div><dt>{text(name)}</dt><dd>{shown}</dd></div>" for name, shown in figures
    )
    return html_section(
        "bottom-line",
        "Bottom line",
        f'<dl class="headline">{headline}</dl>'
        f'<p class="lead"><strong>{text(_verdict(t, currency))}</strong>'
        f"{text(_verdict_scope(report))}</p>",
    )


def _verdict(t: Totals, currency: str) -> str:
    """Whether self-hosting beat the API, in one sentence for whoever reads nothing else."""
    if t.savings is None:
        return "No model in the selection has an API price, so there is no comparison."
    amount = display(abs(t.savings), "money", currency)
    ratio = display(t.cost_ratio, "factor")
    saved = rounded(t.savings, "money") or 0
    if saved < 0:
        return (
            f"The API would have been cheaper: self-hosting cost {amount} more than the API's "
            f"list prices for the same tokens (cost ratio {ratio})."
        )
    if saved == 0:
        return "Self-hosting cost the same as the API's list prices for the same tokens."
    return (
        f"Self-hosting was cheaper than the API: {amount} saved against the API's list prices "
        f"for the same tokens (cost ratio {ratio})."
    )


def _verdict_scope(report: Report) -> str:
    """What the verdict leaves out: unpriced models, and hours without data."""
    out = ""
    if report.unpriced_models and report.totals.savings is not None:
        out += " Models without an API price are left out of the comparison."
    cov = report.coverage
    if cov.ratio < 1.0 or cov.gaps:
        out += (
            f" Totals cover the observed hours only: {display(cov.ratio, 'ratio')} of the "
            "expected node-hours (see Coverage)."
        )
    return out


def _coverage(report: Report, zone: tzinfo) -> str:
    cov, currency = report.coverage, report.currency
    partial = cov.ratio < 1.0 or bool(cov.gaps)
    unobserved = cov.unobserved_spend_estimate
    lead = (
        f'<p class="lead">The data covers <strong {mark("coverage", "", "ratio", cov.ratio)}>'
        f"{text(display(cov.ratio, 'ratio'))}</strong> of the expected node-hours; "
        f"<strong {mark('coverage', '', 'missing_node_hours', cov.missing_node_hours)}>"
        f"{text(display(cov.missing_node_hours, 'hours'))}</strong> node-hours are missing.</p>"
    )
    scope = (
        "<p>All totals in this report cover observed hours only. "
        f"{text(display(cov.covered_node_hours, 'hours'))} of "
        f"{text(display(cov.expected_node_hours, 'hours'))} expected node-hours were observed, "
        f"in a period of {text(display(cov.period_hours, 'hours'))} hours. At each node's last "
        "known hourly cost, the unobserved hours would have cost about "
        f"<strong {mark('coverage', '', 'unobserved_spend_estimate', unobserved)}>"
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
        f"{plain_cell(g.hours, 'hours', '')}</tr>"
        for g in sorted(cov.gaps, key=lambda g: (g.start, g.node))
    )
    head = (("Node", False), ("Gap start", False), ("Gap end", False), ("Hours", True))
    return "<h3>Gaps</h3>" + html_table(head, rows, "compact")


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
        return html_section("findings", "Findings", "<p>No findings.</p>")
    items = "".join(f"<li>{text(f)}</li>" for f in report.findings)
    return html_section("findings", "Findings", f'<ul class="findings">{items}</ul>')


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
        f"{marked_cell('totals', '', measure, value, currency, shown=shown)}"
        f'<td class="note">{text(note)}</td></tr>'
        for label, measure, value, shown, note in rows
    ]
    body.append(_breakeven_row(t))
    head = (("Measure", False), ("Value", True), ("", False))
    table = html_table(head, body, "summary")
    return html_section("summary", "Summary", table + _unpriced(report))


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
        f"<span {mark('totals', '', 'hours_below_breakeven', t.hours_below_breakeven)}>"
        f"{text(display(below, 'count'))}</span> of "
        f"<span {mark('totals', '', 'hours_compared', t.hours_compared)}>"
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
        f'<tr><th scope="row">{text(label(name))}</th>'
        f"{marked_cell(section, name, measure, value, currency)}</tr>"
        for name, value in items
    )
    table = html_table(((column, False), (value_column, True)), rows)
    bars = [(label(name), value) for name, value in items]
    chart = bar_chart(bars, unit=unit, currency=currency, title=title)
    return html_section(ident, title, f'<div class="split">{table}<figure>{chart}</figure></div>')


def _components(report: Report) -> str:
    if not report.spend_by_component:
        return html_section(
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
        return html_section("kinds", "Tokens by kind", "<p>No tokens were recorded.</p>")
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
        return html_section(
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
        f'<tr><th scope="row">{label}</th>{plain_cell(planned, unit, currency)}'
        f"{plain_cell(realized, unit, currency)}"
        f'<td class="num">{text(signed(_difference(realized, planned), unit, currency))}</td>'
        "</tr>"
        for label, unit, planned, realized in lines
    )
    head = (("Measure", False), ("Planned", True), ("Realized", True), ("Difference", True))
    body = (
        "<p>Planned figures are the <code>llmcost_projected_*</code> series during the period, "
        "scaled to the covered hours so both columns describe the same time. The utilization "
        "difference is in percentage points.</p>" + html_table(head, rows)
    )
    body += _token_mix(report)
    body += _bridges(report.variance, plan.cost_per_million_tokens, t, currency)
    return html_section("projection", title, body)


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
            f'<tr><th scope="row">{text(label(kind))}</th>{plain_cell(planned, "ratio", "")}'
            f"{plain_cell(realized, 'ratio', '')}"
            f'<td class="num">{text(signed(_difference(realized, planned), "ratio", ""))}</td>'
            "</tr>"
        )
    head = (
        ("Token kind", False),
        ("Planned share", True),
        ("Realized share", True),
        ("Difference", True),
    )
    return "<h3>Token mix</h3>" + html_table(head, rows, "compact")


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
        f"{text(signed(line.per_million, 'money_per_million', currency))}</td>"
        f'<td class="num">{text(signed(line.amount, "money", currency))}</td></tr>'
        for line in lines
    ]
    rows.append(_bridge_edge(*end, currency))
    head = (("Step", False), ("Per 1M tokens", True), ("Over the period", True))
    return (
        f"<h3>{text(title)}</h3><p class=\"note\">{text(explanation)} 'Over the period' is "
        "the effect on the realized tokens.</p>" + html_table(head, rows)
    )


def _bridge_edge(label: str, value: float | None, currency: str) -> str:
    return (
        f'<tr class="edge"><td>{text(label)}</td>{plain_cell(value, "money_per_million", currency)}'
        "<td></td></tr>"
    )


def _daily(report: Report) -> str:
    days, currency = report.days, report.currency
    if not days:
        return html_section("daily", "Daily cost per 1M tokens", "<p>No days with data.</p>")
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
    return html_section(
        "daily",
        "Daily cost per 1M tokens",
        html_figure(chart, caption) + _day_table(days, currency),
    )


def _day_table(days: Sequence[Day], currency: str) -> str:
    def row(d: Day) -> str:
        per_million = d.cost_per_million_tokens
        return (
            f'<tr><th scope="row">{text(d.date)}</th>'
            f"{marked_cell('day', d.date, 'spend', d.spend, currency)}"
            f"{marked_cell('day', d.date, 'tokens', d.tokens, currency)}"
            f"{marked_cell('day', d.date, 'cost_per_million_tokens', per_million, currency)}"
            f"{plain_cell(d.api_equivalent_per_million_tokens, 'money_per_million', currency)}"
            f"{plain_cell(d.utilization, 'ratio', currency)}"
            f"{plain_cell(d.covered_hours, 'hours', currency)}"
            f"{plain_cell(d.hours_below_breakeven, 'count', currency)}</tr>"
        )

    rows = (row(d) for d in days)
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
    return html_table(head, rows, "compact")


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
    return html_section(
        "hour-of-week", "Utilization by hour of week", html_figure(chart, caption) + ratio
    )


def _row_cells(section: str, row: Row, currency: str) -> str:
    t = row.totals
    per_million = t.cost_per_million_tokens
    amount, word = _savings_words(t.savings, currency)
    savings = f"{amount} {word}" if word else amount
    klass = "num bad" if word == "overspend" else "num"
    return (
        f'<th scope="row">{text(row.name)}</th>'
        f"{marked_cell(section, row.name, 'spend', t.spend, currency)}"
        f"{marked_cell(section, row.name, 'tokens', t.tokens, currency)}"
        f"{marked_cell(section, row.name, 'cost_per_million_tokens', per_million, currency)}"
        f"{plain_cell(t.api_equivalent, 'money', currency)}"
        f'<td class="{klass}">{savings}</td>'
        f"{plain_cell(t.cost_ratio, 'factor', currency)}"
        f"{plain_cell(t.utilization, 'ratio', currency)}"
        f"{plain_cell(t.share_below_breakeven, 'ratio', currency)}"
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
        return html_section("nodes", "Per node", "<p>No nodes in the selection.</p>")
    rows = (
        f"<tr>{_row_cells('node', row, report.currency)}"
        f"{plain_cell(row.coverage, 'ratio', report.currency)}"
        f'<td class="when">{_when(row.first_seen, zone)}</td>'
        f'<td class="when">{_when(row.last_seen, zone)}</td></tr>'
        for row in report.nodes
    )
    head = (*ROW_HEAD, ("Coverage", True), ("First seen", False), ("Last seen", False))
    return html_section("nodes", "Per node", scrolling(html_table(head, rows, "compact")))


def _models(report: Report) -> str:
    if not report.models:
        return html_section("models", "Per model", "<p>No models in the selection.</p>")
    rows = (f"<tr>{_row_cells('model', row, report.currency)}</tr>" for row in report.models)
    note = (
        '<p class="note">Models without an API price show n/a for the API comparison.</p>'
        if report.unpriced_models
        else ""
    )
    return html_section(
        "models", "Per model", scrolling(html_table(ROW_HEAD, rows, "compact")) + note
    )


def _events(report: Report, zone: tzinfo) -> str:
    if not report.events:
        return html_section("events", "Events", "<p>None: no exporter or engine restarts.</p>")
    events: list[Event] = sorted(report.events, key=lambda e: (e.hour, e.node, e.kind))
    rows = (
        f"<tr><td>{text(e.node)}</td><td>{_when(e.hour, zone)}</td>"
        f"<td>{text(label(e.kind))}</td>{plain_cell(e.count, 'count', '')}</tr>"
        for e in events
    )
    kinds = list(dict.fromkeys([*EVENTS, *(e.kind for e in events)]))
    counts = ". ".join(
        f"{label(kind)}s: {sum(e.count for e in events if e.kind == kind)}" for kind in kinds
    )
    lead = f"<p>{text(counts)}.</p>"
    head = (("Node", False), ("Hour", False), ("Event", False), ("Count", True))
    return html_section("events", "Events", lead + html_table(head, rows, "compact"))


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
    return html_section("method", "How these figures are computed", body)


# Document ----------------------------------------------------------------------------------


def render_html(report: Report) -> str:
    """The whole review as one HTML5 document with no external reference."""
    zone, zone_name = _zone(report.timezone)
    parts = (
        _header(report, zone, zone_name),
        _bottom_line(report),
        _coverage(report, zone),
        _findings(report),
        _summary(report),
        advice_section(report.advice, report.advice_missing),
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
    return document(report.title, "".join(parts))
