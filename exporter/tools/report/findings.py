"""Plain-language findings drawn from a review's figures. Pure.

Each sentence states a number the report shows elsewhere, so a reader can
check it, and says what it means for the bill.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from llm_cost_exporter.tools.report.advice_words import verdict
from llm_cost_exporter.tools.report.model import Report, hour_of_week_label
from llm_cost_exporter.tools.report.units import display

NIGHT_START, NIGHT_END = 20, 8
RATE_CHANGE = 0.01  # day-to-day change in average hourly cost worth mentioning
MAX_RATE_CHANGES = 3


def off_peak(when: datetime) -> bool:
    """Night (20:00-08:00) or weekend, in the report's time zone."""
    return when.weekday() >= 5 or when.hour >= NIGHT_START or when.hour < NIGHT_END


def findings(report: Report, below_breakeven_hours: Iterable[datetime]) -> tuple[str, ...]:
    """The review's conclusions, most important first."""
    money = lambda v: display(v, "money", report.currency)  # noqa: E731
    per_m = lambda v: display(v, "money_per_million", report.currency)  # noqa: E731
    t = report.totals
    out: list[str] = []
    if t.savings is not None and t.cost_per_million_tokens is not None:
        api = t.api_equivalent_per_million_tokens
        if t.savings < 0:
            out.append(
                f"Self-hosting cost {per_m(t.cost_per_million_tokens)} per 1M tokens against "
                f"{per_m(api)} on the API for the same traffic: {display(t.cost_ratio, 'factor')} "
                f"the API price, an overspend of {money(-t.savings)} over the period."
            )
        else:
            out.append(
                f"Self-hosting cost {per_m(t.cost_per_million_tokens)} per 1M tokens against "
                f"{per_m(api)} on the API for the same traffic: a saving of {money(t.savings)} "
                "over the period."
            )
    out.extend(_breakeven(report, list(below_breakeven_hours)))
    if report.advice is not None:
        out.append(verdict(report.advice))
    out.extend(_plan(report))
    out.extend(_traffic_shape(report))
    out.extend(_rate_changes(report, money))
    out.extend(_coverage(report, money))
    out.extend(_events(report))
    out.extend(_models(report, per_m))
    if report.unpriced_models:
        out.append(
            "No API price for " + ", ".join(report.unpriced_models) + ": their tokens and "
            "spend are left out of the API comparison."
        )
    return tuple(out)


def _breakeven(report: Report, below: list[datetime]) -> list[str]:
    t = report.totals
    if not t.hours_compared:
        return []
    if not below:
        return [f"None of the {t.hours_compared} hours compared ran below break-even."]
    share = display(len(below) / t.hours_compared, "ratio")
    quiet = display(sum(off_peak(h) for h in below) / len(below), "ratio")
    return [
        f"{share} of hours ran below break-even ({len(below)} of {t.hours_compared}: they "
        f"cost more than the API would have charged); {quiet} of those were nights "
        "(20:00-08:00) or weekends."
    ]


def _plan(report: Report) -> list[str]:
    out = []
    p, t = report.projection, report.totals
    if p is not None and p.utilization is not None and t.utilization is not None:
        out.append(
            f"Utilization averaged {display(t.utilization, 'ratio')} against "
            f"{display(p.utilization, 'ratio')} planned."
        )
    v = report.variance
    if v is not None and v.cost_per_million and p is not None:
        per_m = lambda x: display(x, "money_per_million", report.currency)  # noqa: E731
        gap = sum(line.per_million for line in v.cost_per_million)
        direction = "above" if gap >= 0 else "below"
        parts = "; ".join(
            f"{line.label[0].lower()}{line.label[1:]}: "
            f"{'+' if line.per_million >= 0 else ''}{per_m(line.per_million)}"
            for line in v.cost_per_million
        )
        out.append(
            f"Cost per 1M tokens was {per_m(abs(gap))} {direction} the planned "
            f"{per_m(p.cost_per_million_tokens)} ({parts})."
        )
        mix = [line for line in v.savings_per_million if line.key == "token_mix"]
        if mix and p.api_equivalent_per_million_tokens is not None:
            realized = t.api_equivalent_per_million_tokens
            out.append(
                f"The realized token mix is worth {per_m(realized)} per 1M on the API against "
                f"{per_m(p.api_equivalent_per_million_tokens)} for the planned mix."
            )
    return out


def _traffic_shape(report: Report) -> list[str]:
    profile = report.hour_of_week_tokens
    cells = [(v, i) for i, v in enumerate(profile) if v is not None]
    if report.peak_to_trough is None or not cells:
        return []
    peak, trough = max(cells)[1], min(cells)[1]
    return [
        f"Traffic in the busiest hour of the week ({hour_of_week_label(peak)}) was "
        f"{display(report.peak_to_trough, 'factor')} the quietest ({hour_of_week_label(trough)})."
    ]


def _rate_changes(report: Report, money) -> list[str]:
    full = [d for d in report.days if d.covered_hours >= 24]
    changes = []
    for before, after in zip(full, full[1:], strict=False):
        a, b = before.spend / before.covered_hours, after.spend / after.covered_hours
        if a > 0 and abs(b - a) / a > RATE_CHANGE:
            changes.append((after.date, a, b))
    if not changes:
        return []
    if len(changes) > MAX_RATE_CHANGES:
        return [f"The average hourly cost changed on {len(changes)} days; see the daily table."]
    return [
        f"The average hourly cost {'rose' if b > a else 'fell'} from {money(a)} to {money(b)} "
        f"on {date}."
        for date, a, b in changes
    ]


def _coverage(report: Report, money) -> list[str]:
    c = report.coverage
    out = []
    if c.gaps:
        where = ", ".join(
            f"{g.node} {g.start:%Y-%m-%d %H:%M}-{g.end:%H:%M}"
            if g.start.date() == g.end.date()
            else f"{g.node} {g.start:%Y-%m-%d %H:%M} to {g.end:%Y-%m-%d %H:%M}"
            for g in c.gaps[:5]
        )
        more = f" and {len(c.gaps) - 5} more" if len(c.gaps) > 5 else ""
        out.append(
            f"Data is missing for {display(c.missing_node_hours, 'hours')} node-hours "
            f"({display(1 - c.ratio, 'ratio')} of the time observed): {where}{more}. Totals "
            f"cover observed hours only; the missing hours probably cost about "
            f"{money(c.unobserved_spend_estimate)} more."
        )
    for name, when in c.nodes_joined:
        out.append(f"{name} first reported at {when:%Y-%m-%d %H:%M}.")
    for name, when in c.nodes_left:
        out.append(f"{name} last reported before {when:%Y-%m-%d %H:%M}.")
    return out


def _events(report: Report) -> list[str]:
    out = []
    for kind, what, note in (
        ("exporter_restart", "The exporter restarted", "; its counters were read across it"),
        ("engine_restart", "An engine restarted", "; spend and tokens carried on unaffected"),
    ):
        events = [e for e in report.events if e.kind == kind]
        if events:
            count = sum(e.count for e in events)
            where = ", ".join(f"{e.node} {e.hour:%Y-%m-%d %H:00}" for e in events[:5])
            times = "once" if count == 1 else f"{count} times"
            out.append(f"{what} {times} ({where}){note}.")
    return out


def _models(report: Report, per_m) -> list[str]:
    if len(report.models) < 2:
        return []
    out = []
    for row in report.models:
        t = row.totals
        if t.cost_ratio is None or t.cost_per_million_tokens is None:
            continue
        out.append(
            f"{row.name}: {per_m(t.cost_per_million_tokens)} per 1M against "
            f"{per_m(t.api_equivalent_per_million_tokens)} on the API "
            f"({display(t.cost_ratio, 'factor')})."
        )
    return out
