"""The advice in sentences, written once for the HTML page and the ``plan`` table alike.

Each sentence is built through a :class:`Style`: the HTML escapes text and
marks figures with ``data-figure``, the text table leaves both alone. Either
way the words and the rounding (:func:`exporter.report.units.display`) are
the same, so the two outputs cannot tell different stories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llm_cost_exporter.tools.planner.advise import replicas
from llm_cost_exporter.tools.planner.model import (
    ALL_API,
    AS_RUN,
    HYBRID,
    HYBRID_SCHEDULE,
    Advice,
    cheapest_of,
)
from llm_cost_exporter.tools.report.units import display, rounded


@dataclass(frozen=True)
class Style:
    """How a sentence shows text and figures."""

    escape: Callable[[str], str]
    # (section, item, measure, value, shown text) -> the figure as written
    figure: Callable[[str, str, str, float | None, str], str]


PLAIN = Style(escape=lambda words: words, figure=lambda s, i, m, v, shown: shown)


def percent(share: float) -> str:
    """A knob or a load in prose: ``80%``, ``62.5%``; tables keep the review's two decimals."""
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def lower(name: str) -> str:
    """A policy's name inside a sentence."""
    return name[:1].lower() + name[1:]


def span(levels: tuple[int, ...]) -> str:
    """``1 to 3 replicas``, or ``2 replicas`` when a schedule never changes."""
    low, high = min(levels), max(levels)
    return replicas(low) if low == high else f"{low} to {replicas(high)}"


def _money(value: float | None, currency: str, style: Style) -> str:
    return style.escape(display(value, "money", currency))


def _period(advice: Advice, style: Style) -> str:
    hours = style.figure("advice_period", "", "period_hours", advice.hours, f"{advice.hours:,}")
    tokens = style.figure(
        "advice_period", "", "tokens", advice.tokens, display(advice.tokens, "tokens")
    )
    return f"{hours} hours of traffic ({tokens} tokens)"


def verdict(advice: Advice, style: Style = PLAIN) -> str:
    """For finance: which policy would have been cheapest, and what it would have saved."""
    currency = advice.currency
    best, ran, api = advice.cheapest, advice.outcome(AS_RUN), advice.outcome(ALL_API)

    def money(value: float | None) -> str:
        return _money(value, currency, style)

    if best.key == AS_RUN:
        how = "keeping everything on the API, as it ran" if advice.on_api else "the way it ran"
        others = [o for o in advice.outcomes if o.key != AS_RUN]
        closest = cheapest_of(tuple(others))
        more = closest.cost - ran.cost
        gap = (
            "the same"
            if rounded(more, "money") == 0
            else f"{money(closest.cost)}, {money(more)} more"
        )
        return (
            f"Nothing modelled would have been cheaper than {how}: {money(ran.cost)} for "
            f"{_period(advice, style)}. The closest, {style.escape(lower(closest.name))}, "
            f"would have cost {gap}."
        )
    saving = ran.cost - best.cost
    share = (
        f" ({style.escape(display(saving / ran.cost, 'ratio'))} of {money(ran.cost)})"
        if ran.cost > 0
        else f" (as run: {money(ran.cost)})"
    )
    against = "the API bill as it ran" if advice.on_api else "the way it ran"
    sentence = (
        f"{style.escape(best.name)} would have been cheapest: {money(best.cost)} for "
        f"{_period(advice, style)}, saving {money(saving)}{share} against {against}"
    )
    if best.key != ALL_API and not advice.on_api:
        sentence += (
            f" and {money(api.cost - best.cost)} against sending everything to the API "
            f"({money(api.cost)})"
        )
    sentence += f". In practice: {style.escape(best.summary)}."
    if best.key == HYBRID:
        simple = advice.outcome(HYBRID_SCHEDULE)
        sentence += (
            " That is a floor rather than a plan, since it needs each hour's traffic in advance; "
            f"the best weekly schedule, {style.escape(lower(simple.name))}, would have cost "
            f"{money(simple.cost)}: {style.escape(simple.summary)}."
        )
    return sentence


def assumptions(advice: Advice, style: Style = PLAIN) -> str:
    """What every self-hosted policy takes as given: the replica and the knobs."""
    knobs = advice.knobs
    capacity = style.figure(
        "advice_replica", "", "capacity", advice.capacity, display(advice.capacity, "tokens")
    )
    ceiling = style.figure("advice_knobs", "", "ceiling", knobs.ceiling, percent(knobs.ceiling))
    floor = style.figure("advice_knobs", "", "floor", knobs.floor, replicas(knobs.floor))
    run = style.figure("advice_knobs", "", "min_run", knobs.min_run, f"{knobs.min_run} hours")
    return (
        f"Every self-hosted policy assumes one replica is {style.escape(advice.replica)}, "
        f"serving {capacity} tokens per second at full load and planned to at most {ceiling} "
        f"utilization, with at least {floor} kept at all times and each scheduled step held "
        f"at least {run}. Traffic: {style.escape(advice.source)}."
    )


def breakeven(advice: Advice, style: Style = PLAIN) -> str:
    """Where one replica starts to beat the API, or that it never does."""
    value = advice.economics.breakeven_utilization
    if value is None or advice.economics.api_per_million is None:
        none = style.figure("advice_replica", "", "breakeven_utilization", None, "n/a")
        return f"There is no API price for this traffic, so no break-even ({none})."
    shown = style.figure(
        "advice_replica", "", "breakeven_utilization", value, display(value, "ratio")
    )
    if (rounded(value, "ratio") or 0) > 1:
        return (
            f"Break-even utilization is {shown}: at the API's prices a replica could not beat "
            "the API even at full load."
        )
    return (
        f"Break-even utilization is {shown}: a replica busier than that on average serves "
        "tokens more cheaply than the API."
    )


def sensitivity_verdict(advice: Advice) -> str:
    """Whether the cheapest policy survives the moved assumptions, and where it does not."""
    names = {o.key: o.name for o in advice.outcomes}
    base = advice.cheapest
    changed = [c for c in advice.sensitivity if c.cheapest != base.key]
    if not changed:
        return f"The cheapest policy stays {lower(base.name)} in every case."
    cases = "; ".join(
        f"with {c.label} it would be {lower(names.get(c.cheapest, c.cheapest))}" for c in changed
    )
    return f"The cheapest policy changes with the assumptions: {cases}."
