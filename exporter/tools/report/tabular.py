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
import math
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from llm_cost_exporter.tools.planner.model import ALL_API, AS_RUN, Advice, Sensitivity
from llm_cost_exporter.tools.report.measures import MEASURE_LABELS, unit_of
from llm_cost_exporter.tools.report.model import Report, Totals, hour_of_week_label
from llm_cost_exporter.tools.report.units import DECIMALS, is_money, rounded

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
POLICY_MEASURES = (
    "cost",
    "cost_per_million_tokens",
    "self_hosted_share",
    "utilization",
    "hours_below_breakeven",
    "saving_vs_as_run",
    "saving_vs_all_api",
    "replica_hours",
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
    if measure in MEASURE_LABELS:
        return MEASURE_LABELS[measure]
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
    return _rounded(_raw_rows(report), report.currency)


def advice_figure_rows(advice: Advice) -> list[FigureRow]:
    """The advice's figures alone, the same rows the review carries for it."""
    return _rounded(advice_figures(advice), advice.currency)


def _rounded(rows: Iterator[tuple[str, str, str, Any]], currency: str) -> list[FigureRow]:
    return [
        (section, item, measure, rounded(value, unit_of(measure)), unit_label(measure, currency))
        for section, item, measure, value in rows
    ]


def policy_value(advice: Advice, key: str, measure: str) -> float | int | None:
    """One of :data:`POLICY_MEASURES` for the policy ``key``, unrounded."""
    outcome = advice.outcome(key)
    if measure == "saving_vs_as_run":
        return advice.saving_against(AS_RUN, outcome)
    if measure == "saving_vs_all_api":
        return advice.saving_against(ALL_API, outcome)
    if measure == "cost_per_million_tokens":
        return outcome.cost_per_million_tokens
    return getattr(outcome, measure)


def load_item(load: float) -> str:
    """``load_100%``: the item naming one replica's cost per 1M tokens at a load."""
    return f"load_{load:.0%}"


def sensitivity_item(case: Sensitivity) -> str:
    """``capacity_-20%``, ``ceiling_60%``: a case's label as an item name (no dots, no spaces)."""
    return case.label.replace(" ", "_").replace(".", "_")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def advice_figures(advice: Advice) -> Iterator[tuple[str, str, str, Any]]:
    """Every figure of the advice, unrounded, as (section, item, measure, value).

    The HTML marks the same names, so the three outputs can be compared figure by figure.
    """
    yield "advice_period", "", "period_hours", advice.hours
    yield "advice_period", "", "tokens", advice.tokens
    knobs = advice.knobs
    yield "advice_knobs", "", "ceiling", knobs.ceiling
    yield "advice_knobs", "", "floor", knobs.floor
    yield "advice_knobs", "", "min_run", knobs.min_run
    for outcome in advice.outcomes:
        for measure in POLICY_MEASURES:
            yield "advice", outcome.key, measure, policy_value(advice, outcome.key, measure)
    e = advice.economics
    yield "advice_replica", "", "hourly_cost", e.hourly_cost
    yield "advice_replica", "", "capacity", advice.capacity
    yield "advice_replica", "", "fleet_size", advice.fleet_size
    yield "advice_replica", "", "api_equivalent_per_million_tokens", e.api_per_million
    yield "advice_replica", "", "breakeven_utilization", _finite(e.breakeven_utilization)
    for load, per_million in e.cost_per_million_by_load:
        yield "advice_replica", load_item(load), "cost_per_million_tokens", _finite(per_million)
    for case in advice.sensitivity:
        item = sensitivity_item(case)
        yield "advice_sensitivity", item, "capacity", case.capacity
        yield "advice_sensitivity", item, "ceiling", case.ceiling
        for outcome in advice.outcomes:
            yield "advice_sensitivity", item, f"{outcome.key}_cost", case.costs.get(outcome.key)
    for index, (tokens, scheduled, hybrid) in enumerate(
        zip(
            advice.week_tokens,
            advice.scheduled_replicas,
            advice.hybrid_schedule_replicas,
            strict=True,
        )
    ):
        slot = hour_of_week_label(index)
        yield "advice_week", slot, "tokens", tokens
        yield "advice_week", slot, "scheduled_replicas", scheduled
        yield "advice_week", slot, "hybrid_schedule_replicas", hybrid


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
    if report.advice is not None:
        yield from advice_figures(report.advice)


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
        "advice_cheapest": report.advice.cheapest.key if report.advice else "",
        "advice_missing": report.advice_missing if report.advice is None else "",
    }


def advice_description(advice: Advice | None) -> dict[str, Any] | None:
    """The advice's words, for the JSON: which policy is cheapest and what each one does."""
    if advice is None:
        return None
    return {
        "cheapest": advice.cheapest.key,
        "replica": advice.replica,
        "source": advice.source,
        "on_api": advice.on_api,
        "policies": {o.key: {"name": o.name, "summary": o.summary} for o in advice.outcomes},
        "sensitivity": {
            sensitivity_item(case): {"label": case.label, "cheapest": case.cheapest}
            for case in advice.sensitivity
        },
    }


def csv_value(measure: str, value: float | int | None) -> str | float | int:
    """A rounded figure as the CSV writes it: money at its fixed decimals (``13811.20``).

    A spreadsheet then shows every amount with its cents; other figures are
    written as rounded, the same numbers the JSON carries.
    """
    if value is None:
        return ""
    unit = unit_of(measure)
    # Already rounded: only written out, so the number stays the one the JSON carries.
    return f"{value:.{DECIMALS[unit]}f}" if is_money(unit) else value


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "item", "measure", "value", "unit"))
    for key, value in meta(report).items():
        writer.writerow(
            ("meta", "", key, value if not isinstance(value, list) else ";".join(value), "")
        )
    for section, item, measure, value, unit in figure_rows(report):
        writer.writerow((section, item, measure, csv_value(measure, value), unit))
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
        "advice": advice_description(report.advice),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
