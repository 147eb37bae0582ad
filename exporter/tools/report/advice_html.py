"""What would have been cheaper, as HTML: the review's advice section and ``plan``'s own page.

Finance reads the first sentence; the table, the week chart, the replica's
economics and the sensitivity back it up for whoever has to act on it. Every
figure is marked with the same ``section.item.measure`` names the CSV and
JSON rows carry (see :func:`exporter.report.tabular.advice_figures`).
"""

from __future__ import annotations

from llm_cost_exporter.accounting.costmodel import SECONDS_PER_HOUR
from llm_cost_exporter.tools.planner.model import HYBRID_SCHEDULE, SCHEDULED, Advice, Outcome
from llm_cost_exporter.tools.report.advice_words import (
    Style,
    assumptions,
    breakeven,
    lower,
    percent,
    replicas,
    sensitivity_verdict,
    span,
    verdict,
)
from llm_cost_exporter.tools.report.labels import label
from llm_cost_exporter.tools.report.markup import (
    document,
    html_figure,
    html_section,
    html_table,
    mark,
    marked_cell,
    plain_cell,
    scrolling,
)
from llm_cost_exporter.tools.report.model import hour_of_week_label
from llm_cost_exporter.tools.report.svg import Axis, Series, text, week_chart
from llm_cost_exporter.tools.report.tabular import (
    POLICY_MEASURES,
    load_item,
    policy_value,
    sensitivity_item,
)
from llm_cost_exporter.tools.report.units import display, rounded

TITLE = "What would have been cheaper"
TRAFFIC_COLOUR = "#2563eb"
SCHEDULED_COLOUR = "#047857"
HYBRID_COLOUR = "#ea580c"

POLICY_HEAD = (
    ("Policy", False),
    ("Cost", True),
    ("Per 1M tokens", True),
    ("Self-hosted share", True),
    ("Utilization of kept replicas", True),
    ("Hours below break-even", True),
    ("Saving vs as run", True),
    ("Saving vs all API", True),
    ("Replica-hours", True),
)

LEAVES_OUT = (
    "Scale-up lag: a scheduled step is assumed to be serving from the first minute of its "
    "hour; the minimum run is the only limit on how often the fleet changes.",
    "Latency targets: the utilization ceiling is the only headroom, so a policy that meets "
    "the ceiling is assumed to meet its latency objective.",
    "Quality: the self-hosted model and the API's model are taken to be interchangeable for "
    "every request.",
    "Routing: sending part of the traffic to the API is assumed to cost nothing per request "
    "and to need no extra service.",
    "Capacity per replica is the one number every self-hosted policy scales on: see the "
    "sensitivity table above for how the answer moves with it.",
)


def _money(value: float | None, currency: str) -> str:
    return text(display(value, "money", currency))


def _figure(section: str, item: str, measure: str, value: float | None, shown: str) -> str:
    """A figure inside a sentence, marked like a table cell."""
    return f"<strong {mark(section, item, measure, value)}>{text(shown)}</strong>"


MARKED = Style(escape=text, figure=_figure)


# The table of policies ---------------------------------------------------------------------


def _policy_row(advice: Advice, outcome: Outcome, best: bool) -> str:
    tag = '<span class="tag">cheapest</span>' if best else ""
    name = (
        f'<th scope="row">{text(outcome.name)} {tag}'
        f' <span class="what">{text(outcome.summary)}</span></th>'
    )
    cells = "".join(
        marked_cell(
            "advice",
            outcome.key,
            measure,
            policy_value(advice, outcome.key, measure),
            advice.currency,
        )
        for measure in POLICY_MEASURES
    )
    klass = ' class="best"' if best else ""
    return f"<tr{klass}>{name}{cells}</tr>"


def _policies(advice: Advice) -> str:
    best = advice.cheapest.key
    rows = [_policy_row(advice, o, o.key == best) for o in advice.outcomes]
    note = (
        '<p class="note">Every policy serves the same tokens over the same hours. A negative '
        "saving means the policy would have cost more. Utilization is the self-hosted tokens "
        "over what the kept replicas could serve at full load; an hour below break-even is one "
        "whose kept replicas cost more than the API would have charged for the tokens they "
        "served.</p>"
    )
    return scrolling(html_table(POLICY_HEAD, rows, "compact")) + note


# The week ----------------------------------------------------------------------------------


def _week(advice: Advice) -> str:
    scheduled, hybrid = advice.outcome(SCHEDULED), advice.outcome(HYBRID_SCHEDULE)
    ceiling = percent(advice.knobs.ceiling)
    per_replica = advice.capacity * SECONDS_PER_HOUR * advice.knobs.ceiling
    in_replicas = [None if t is None else t / per_replica for t in advice.week_tokens]
    notes = []
    for slot, tokens in enumerate(advice.week_tokens):
        traffic = (
            "no traffic data"
            if tokens is None
            else f"{display(tokens / SECONDS_PER_HOUR, 'tokens')} tokens/s on average, "
            f"{tokens / per_replica:.2f} replicas at {ceiling}"
        )
        notes.append(
            f"{hour_of_week_label(slot)}: {traffic}; {lower(scheduled.name)} "
            f"{replicas(advice.scheduled_replicas[slot])}; {lower(hybrid.name)} "
            f"{replicas(advice.hybrid_schedule_replicas[slot])}"
        )
    where = f"in {advice.zone}" if advice.zone else "in the traffic's time zone"
    chart = week_chart(
        Series(f"Average traffic, in replicas at {ceiling}", in_replicas, TRAFFIC_COLOUR),
        [
            Series(scheduled.name, advice.scheduled_replicas, SCHEDULED_COLOUR),
            Series(hybrid.name, advice.hybrid_schedule_replicas, HYBRID_COLOUR, dashed=True),
        ],
        summary=_week_summary(advice, scheduled.name, hybrid.name, where),
        axis_label="replicas",
        notes=notes,
        right=Axis(
            "tokens/s",
            advice.capacity * advice.knobs.ceiling,
            lambda value: display(value, "tokens"),
        ),
    )
    caption = (
        f"Each hour of the week, Monday first, {where}, averaged over the period. The shaded "
        f"line is the average traffic, drawn as the replicas it would fill at the {ceiling} "
        "ceiling (right axis: tokens per second); the steps are the replicas each schedule "
        "keeps. Where the hybrid schedule is below the traffic, the rest goes to the API."
    )
    lines = "".join(
        f"<li><strong>{text(o.name)}</strong>: {text(o.summary)}.</li>" for o in (scheduled, hybrid)
    )
    return (
        "<h3>The week the schedules are built on</h3>"
        + html_figure(chart, caption)
        + f"<ul>{lines}</ul>"
    )


def _week_summary(advice: Advice, scheduled: str, hybrid: str, where: str) -> str:
    known = [(t, i) for i, t in enumerate(advice.week_tokens) if t is not None]
    parts = [f"{TITLE}, the week: 168 hours from Mon 00:00 to Sun 23:00 {where}"]
    if known:
        low, high = min(known), max(known, key=lambda p: (p[0], -p[1]))
        parts.append(
            f"average traffic from {display(low[0] / SECONDS_PER_HOUR, 'tokens')} to "
            f"{display(high[0] / SECONDS_PER_HOUR, 'tokens')} tokens/s, busiest "
            f"{hour_of_week_label(high[1])}"
        )
    else:
        parts.append("no traffic data")
    missing = len(advice.week_tokens) - len(known)
    if known and missing:
        parts.append(f"{missing} hours without traffic data")
    parts.append(f"{scheduled} keeps {span(advice.scheduled_replicas)}")
    parts.append(f"{hybrid} keeps {span(advice.hybrid_schedule_replicas)}")
    return "; ".join(parts) + "."


# One replica -------------------------------------------------------------------------------


def _economics(advice: Advice) -> str:
    e, currency = advice.economics, advice.currency
    api = e.api_per_million
    hourly = _figure(
        "advice_replica",
        "",
        "hourly_cost",
        e.hourly_cost,
        display(e.hourly_cost, "money", currency),
    )
    fleet = _figure(
        "advice_replica", "", "fleet_size", advice.fleet_size, replicas(advice.fleet_size)
    )
    lead = (
        f"<p>One replica ({text(advice.replica)}) costs {hourly} an hour on average over the "
        f"period and serves {text(display(advice.capacity, 'tokens'))} tokens per second at full "
        f"load. The busiest hour needs {fleet} at the "
        f"{percent(advice.knobs.ceiling)} ceiling: the right-sized fixed fleet, "
        "and the most the hybrid policies keep.</p>"
    )
    rows = []
    for load, per_million in e.cost_per_million_by_load:
        cheaper = "" if api is None else ("yes" if _below(per_million, api) else "no")
        rows.append(
            f'<tr><th scope="row">At {percent(load)} load</th>'
            + marked_cell(
                "advice_replica", load_item(load), "cost_per_million_tokens", per_million, currency
            )
            + f"<td>{cheaper}</td></tr>"
        )
    rows.append(
        '<tr class="edge"><th scope="row">The API, blended over the period</th>'
        + marked_cell("advice_replica", "", "api_equivalent_per_million_tokens", api, currency)
        + "<td></td></tr>"
    )
    head = (("Load", False), ("Cost per 1M tokens", True), ("Cheaper than the API", False))
    return (
        "<h3>One replica</h3>"
        + lead
        + html_table(head, rows, "compact")
        + f"<p>{breakeven(advice, MARKED)}</p>"
    )


def _below(per_million: float, api: float) -> bool:
    """Cheaper than the API as both are shown: rounded to a hundredth of a cent."""
    return (rounded(per_million, "money_per_million") or 0) < (
        rounded(api, "money_per_million") or 0
    )


# Sensitivity -------------------------------------------------------------------------------


def _sensitivity(advice: Advice) -> str:
    currency, outcomes = advice.currency, advice.outcomes
    base = advice.cheapest
    names = {o.key: o.name for o in outcomes}
    head = (
        ("Case", False),
        ("Capacity (tokens/s)", True),
        ("Ceiling", True),
        *((o.name, True) for o in outcomes),
        ("Cheapest", False),
    )
    base_cells = "".join(
        f'<td class="num{" best" if o.key == base.key else ""}">{_money(o.cost, currency)}</td>'
        for o in outcomes
    )
    rows = [
        '<tr class="edge"><th scope="row">As given</th>'
        + plain_cell(advice.capacity, "tokens", currency)
        + plain_cell(advice.knobs.ceiling, "ratio", currency)
        + base_cells
        + f"<td>{text(base.name)}</td></tr>"
    ]
    for case in advice.sensitivity:
        item = sensitivity_item(case)
        cells = "".join(
            marked_cell(
                "advice_sensitivity",
                item,
                f"{o.key}_cost",
                case.costs.get(o.key),
                currency,
                best=o.key == case.cheapest,
            )
            for o in outcomes
        )
        rows.append(
            f'<tr><th scope="row">{text(case.label[:1].upper() + case.label[1:])}</th>'
            + marked_cell("advice_sensitivity", item, "capacity", case.capacity, currency)
            + marked_cell("advice_sensitivity", item, "ceiling", case.ceiling, currency)
            + cells
            + f"<td>{text(names.get(case.cheapest) or label(case.cheapest))}</td></tr>"
        )
    intro = (
        "Capacity per replica is the number every self-hosted policy scales on, and the "
        "ceiling is the only headroom modelled. Each row costs every policy again with one of "
        "them moved; the cheapest in each row is highlighted."
    )
    return (
        "<h3>How sure this is</h3>"
        + f"<p>{intro}</p>"
        + scrolling(html_table(head, rows, "compact"))
        + f"<p><strong>{text(sensitivity_verdict(advice))}</strong></p>"
    )


# The section and the page ------------------------------------------------------------------


def advice_section(advice: Advice | None, missing: str = "") -> str:
    """The "What would have been cheaper" section; without advice, why there is none."""
    if advice is None:
        reason = f": {missing.rstrip('.')}." if missing else "."
        return html_section(
            "advice",
            TITLE,
            f"<p>There is no comparison of policies for this period{text(reason)}</p>",
        )
    leaves_out = "".join(f"<li>{text(item)}</li>" for item in LEAVES_OUT)
    body = (
        f'<p class="lead">{verdict(advice, MARKED)}</p>'
        f'<p class="note">{assumptions(advice, MARKED)}</p>'
        + _policies(advice)
        + _week(advice)
        + _economics(advice)
        + _sensitivity(advice)
        + f"<h3>What this leaves out</h3><ul>{leaves_out}</ul>"
    )
    return html_section("advice", TITLE, body)


def render_advice_page(advice: Advice, title: str) -> str:
    """The advice alone as one self-contained HTML document, styled like the review."""
    meta = (
        ("Traffic", advice.source),
        ("Hours", f"{advice.hours:,}"),
        ("Replica", advice.replica),
        ("Currency", advice.currency),
    )
    rows = "".join(f"<dt>{label}</dt><dd>{text(value)}</dd>" for label, value in meta)
    header = f'<header><h1>{text(title)}</h1><dl class="meta">{rows}</dl></header>'
    footer = "<footer>llm-cost-exporter plan</footer>"
    return document(title, header + advice_section(advice) + footer)
