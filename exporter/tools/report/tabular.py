"""The review as data for finance tools: one list of figures, written as CSV and as JSON.

Both files come from :func:`figure_rows`, so they hold the same figures, rounded
by the same rule as the HTML (``section.item.measure`` names match the HTML's
``data-figure`` marks). CSV is long-form (one figure per row), which pivots
cleanly in a spreadsheet; JSON nests the same rows by section and item.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from llm_cost_exporter.tools.report.measures import unit_of
from llm_cost_exporter.tools.report.model import Report, Totals, hour_of_week_label
from llm_cost_exporter.tools.report.units import rounded

FigureRow = tuple[str, str, str, float | int | None, str]

TOTALS_MEASURES = (
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
    "share_below_breakeven",
    "covered_hours",
    "priced_spend",
    "priced_tokens",
)
DAY_MEASURES = (
    "spend",
    "tokens",
    "api_equivalent",
    "cost_per_million_tokens",
    "api_equivalent_per_million_tokens",
    "utilization",
    "covered_hours",
    "hours_below_breakeven",
)


def unit_label(measure: str, currency: str) -> str:
    unit = unit_of(measure)
    return {
        "money": currency,
        "money_per_million": f"{currency} per 1M tokens",
        "tokens": "tokens",
        "ratio": "ratio",
        "factor": "times",
        "hours": "hours",
        "count": "count",
    }[unit]


def figure_rows(report: Report) -> list[FigureRow]:
    """Every figure of the review, rounded for output, as (section, item, measure, value, unit)."""
    return [
        (
            section,
            item,
            measure,
            rounded(value, unit_of(measure)),
            unit_label(measure, report.currency),
        )
        for section, item, measure, value in _raw_rows(report)
    ]


def _totals(section: str, item: str, totals: Totals) -> Iterator[tuple[str, str, str, Any]]:
    for measure in TOTALS_MEASURES:
        yield section, item, measure, getattr(totals, measure)


def _raw_rows(report: Report) -> Iterator[tuple[str, str, str, Any]]:
    yield from _totals("totals", "", report.totals)
    yield "totals", "", "peak_to_trough", report.peak_to_trough
    c = report.coverage
    for measure in (
        "ratio",
        "missing_node_hours",
        "unobserved_spend_estimate",
        "period_hours",
        "expected_node_hours",
        "covered_node_hours",
    ):
        yield "coverage", "", measure, getattr(c, measure)
    for gap in c.gaps:
        yield "gap", f"{gap.node} {gap.start.isoformat()}", "missing_node_hours", gap.hours
    for component, spend in report.spend_by_component.items():
        yield "spend_by_component", component, "spend", spend
    for kind, tokens in report.tokens_by_kind.items():
        yield "tokens_by_kind", kind, "tokens", tokens
    p = report.projection
    if p is not None:
        for measure in (
            "utilization",
            "tokens",
            "cost_per_million_tokens",
            "hourly_cost",
            "spend",
            "api_equivalent_per_million_tokens",
        ):
            yield "projection", "", measure, getattr(p, measure)
        for kind, share in p.token_mix.items():
            yield "planned_token_mix", kind, "token_share", share
    v = report.variance
    if v is not None:
        for section, lines in (
            ("variance_cost_per_million", v.cost_per_million),
            ("variance_savings_per_million", v.savings_per_million),
        ):
            for line in lines:
                yield section, line.key, "per_million", line.per_million
                yield section, line.key, "amount", line.amount
        for item, value in (
            ("planned", v.planned_savings_per_million),
            ("realized", v.realized_savings_per_million),
        ):
            yield "savings_per_million", item, "savings_per_million_tokens", value
    for row in report.nodes:
        yield from _totals("node", row.name, row.totals)
        yield "node", row.name, "coverage", row.coverage
    for row in report.models:
        yield from _totals("model", row.name, row.totals)
    for day in report.days:
        for measure in DAY_MEASURES:
            yield "day", day.date, measure, getattr(day, measure)
    for index, (util, tokens) in enumerate(
        zip(report.hour_of_week_utilization, report.hour_of_week_tokens, strict=True)
    ):
        slot = hour_of_week_label(index)
        yield "hour_of_week", slot, "utilization", util
        yield "hour_of_week", slot, "tokens", tokens
    for event in report.events:
        yield event.kind, f"{event.node} {event.hour.isoformat()}", "count", event.count


def meta(report: Report) -> dict[str, Any]:
    return {
        "title": report.title,
        "period_start": report.period_start.isoformat(),
        "period_end": report.period_end.isoformat(),
        "timezone": report.timezone,
        "generated_at": report.generated_at.isoformat(),
        "prometheus_url": report.prometheus_url,
        "selection": list(report.selection),
        "currency": report.currency,
        "source": report.coverage.source,
        "unpriced_models": list(report.unpriced_models),
    }


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "item", "measure", "value", "unit"))
    for key, value in meta(report).items():
        writer.writerow(
            ("meta", "", key, value if not isinstance(value, list) else ";".join(value), "")
        )
    for section, item, measure, value, unit in figure_rows(report):
        writer.writerow((section, item, measure, "" if value is None else value, unit))
    return out.getvalue()


def render_json(report: Report) -> str:
    figures: dict[str, Any] = {}
    for section, item, measure, value, _ in figure_rows(report):
        place = figures.setdefault(section, {})
        if item:
            place = place.setdefault(item, {})
        place[measure] = value
    document = {
        "meta": meta(report),
        "figures": figures,
        "findings": list(report.findings),
        "gaps": [
            {"node": g.node, "start": g.start.isoformat(), "end": g.end.isoformat()}
            for g in report.coverage.gaps
        ],
        "events": [{**asdict(e), "hour": e.hour.isoformat()} for e in report.events],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
