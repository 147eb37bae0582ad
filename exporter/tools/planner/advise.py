"""What would have been cheaper: every policy over the same hours. Pure: no I/O, no clock.

The planner answers from the team's own traffic, hour by hour, never from an
average: an idle night costs as much as a busy afternoon, and that spread is
what right-sizing, scheduled scaling and hybrid routing work on. Capacity per
replica is the one number every policy scales on, so the advice is computed
again with it 20% lower and higher, and with other utilization ceilings.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import NamedTuple

from llm_cost_exporter.accounting.costmodel import (
    MILLION,
    breakeven_utilization,
    cost_per_million_at_utilization,
)
from llm_cost_exporter.tools.planner.model import (
    FIXED,
    HYBRID,
    HYBRID_SCHEDULE,
    SCHEDULED,
    Advice,
    Knobs,
    Outcome,
    ReplicaEconomics,
    Sensitivity,
    Traffic,
    cheapest_of,
)
from llm_cost_exporter.tools.planner.policies import (
    all_api,
    as_run,
    by_hour_of_week,
    cheapest_kept,
    kept_outcome,
    replicas_needed,
    tokens_per_replica,
    week_slot,
    week_slot_costs,
)
from llm_cost_exporter.tools.planner.schedules import (
    WindowSchedule,
    cheapest_window_schedule,
    with_minimum_runs,
)
from llm_cost_exporter.tools.report.model import HOURS_PER_WEEK, WEEKDAYS

CAPACITY_FACTORS = (0.8, 1.2)
CEILINGS = (0.6, 0.7, 0.8, 0.9, 1.0)
LOADS = (1.0, 0.6, 0.2)


class PlanError(ValueError):
    """The traffic or the knobs cannot give an answer (no hours, no capacity, bad knob)."""


def check(traffic: Traffic, knobs: Knobs) -> None:
    """Refuse, in one line, what no policy could be costed with."""
    if not traffic.hours:
        raise PlanError("no hour with traffic data in the period")
    if not traffic.capacity > 0:
        raise PlanError("capacity per replica: must be a positive number of tokens per second")
    if not 0 < knobs.ceiling <= 1:
        raise PlanError("ceiling: must be above 0 and at most 1")
    if knobs.floor < 0:
        raise PlanError("floor: must be 0 or more replicas")
    if not 1 <= knobs.min_run <= HOURS_PER_WEEK:
        raise PlanError(f"minimum run: must be 1 to {HOURS_PER_WEEK} hours")


def replicas(count: int) -> str:
    """``1 replica``, ``3 replicas``."""
    return f"{count} replica" + ("" if count == 1 else "s")


def _clock(hour: int) -> str:
    return f"{hour:02d}:00"


def describe_window(schedule: WindowSchedule) -> str:
    """The hybrid schedule as an operator would configure it."""
    if schedule.start == schedule.end:
        return f"keep {replicas(schedule.other)} at all times; traffic above them goes to the API"
    window = (
        "on weekdays"
        if (schedule.start, schedule.end) == (0, 24)
        else f"{_clock(schedule.start)}-{_clock(schedule.end)} on weekdays"
    )
    rest = "weekends" if (schedule.start, schedule.end) == (0, 24) else "nights and weekends"
    return (
        f"keep {replicas(schedule.day)} {window} and {replicas(schedule.other)} "
        f"at {rest}; traffic above them goes to the API"
    )


def describe_week(levels: tuple[int, ...]) -> str:
    """A scaling week in words: its range and how often it steps."""
    low, high = min(levels), max(levels)
    if low == high:
        return f"{replicas(low)} all week"
    steps = sum(1 for i in range(len(levels)) if levels[i] != levels[i - 1])
    busiest = max(range(len(levels)), key=lambda i: (levels[i], -i))
    return (
        f"{low} to {replicas(high)} by hour of the week, {steps} scale steps a week "
        f"(the peak of {high} first at {WEEKDAYS[busiest // 24]} {_clock(busiest % 24)})"
    )


class _Policies(NamedTuple):
    outcomes: tuple[Outcome, ...]  # in POLICIES order
    fleet: int
    scheduled_week: tuple[int, ...]
    hybrid_week: tuple[int, ...]


def _policies(traffic: Traffic, knobs: Knobs) -> _Policies:
    hours = traffic.hours
    per_replica = tokens_per_replica(traffic.capacity, knobs.ceiling)
    needed = [replicas_needed(h.tokens, per_replica) for h in hours]
    fleet = max([knobs.floor, *needed])
    fixed = kept_outcome(
        FIXED,
        "Right-sized fixed fleet",
        f"{replicas(fleet)} throughout, enough for the busiest hour at "
        f"{knobs.ceiling:.0%} utilization",
        traffic,
        [fleet] * len(hours),
        per_replica,
    )
    slot_need = [knobs.floor] * HOURS_PER_WEEK
    for hour, need in zip(hours, needed, strict=True):
        slot = week_slot(hour)
        slot_need[slot] = max(slot_need[slot], need)
    week = with_minimum_runs(slot_need, knobs.min_run)
    scheduled = kept_outcome(
        SCHEDULED,
        "Scheduled scaling",
        describe_week(week)
        + f", each step held {knobs.min_run} h or more, at most {knobs.ceiling:.0%} utilization",
        traffic,
        [week[week_slot(h)] for h in hours],
        per_replica,
    )
    optimal = [cheapest_kept(h, per_replica, knobs.floor, fleet) for h in hours]
    hybrid = kept_outcome(
        HYBRID,
        "Hybrid routing, hour by hour",
        f"each hour keep the cheapest number of replicas ({knobs.floor} to {fleet}) "
        "and send the rest to the API: the best any schedule could do",
        traffic,
        optimal,
        per_replica,
    )
    counts = list(range(knobs.floor, fleet + 1))
    slot_cost = week_slot_costs(hours, counts, per_replica)
    schedule = cheapest_window_schedule(
        lambda day, hour, count: slot_cost[count - knobs.floor][day * 24 + hour],
        counts,
        knobs.min_run,
    )
    simple = kept_outcome(
        HYBRID_SCHEDULE,
        "Hybrid routing, on a schedule",
        describe_window(schedule),
        traffic,
        [schedule.replicas(h.start.weekday(), h.start.hour) for h in hours],
        per_replica,
    )
    outcomes = (as_run(traffic), all_api(traffic), fixed, scheduled, hybrid, simple)
    return _Policies(outcomes, fleet, week, schedule.week())


def _economics(traffic: Traffic) -> ReplicaEconomics:
    hours = traffic.hours
    hourly = math.fsum(h.replica_cost for h in hours) / len(hours)
    tokens = traffic.tokens
    api = math.fsum(h.api_cost for h in hours)
    api_per_million = api / tokens * MILLION if tokens > 0 else None
    return ReplicaEconomics(
        hourly_cost=hourly,
        capacity=traffic.capacity,
        cost_per_million_by_load=tuple(
            (load, cost_per_million_at_utilization(hourly, traffic.capacity, load))
            for load in LOADS
        ),
        api_per_million=api_per_million,
        breakeven_utilization=(
            breakeven_utilization(hourly, traffic.capacity, api_per_million)
            if api_per_million
            else None
        ),
    )


def _sensitivity(traffic: Traffic, knobs: Knobs) -> tuple[Sensitivity, ...]:
    rows = []
    for factor in CAPACITY_FACTORS:
        moved = replace(traffic, capacity=traffic.capacity * factor)
        outcomes = _policies(moved, knobs).outcomes
        rows.append(
            Sensitivity(
                "capacity",
                f"capacity {factor - 1:+.0%}",
                moved.capacity,
                knobs.ceiling,
                {o.key: o.cost for o in outcomes},
                cheapest_of(outcomes).key,
            )
        )
    for ceiling in CEILINGS:
        if math.isclose(ceiling, knobs.ceiling):
            continue
        outcomes = _policies(traffic, replace(knobs, ceiling=ceiling)).outcomes
        rows.append(
            Sensitivity(
                "ceiling",
                f"ceiling {ceiling:.0%}",
                traffic.capacity,
                ceiling,
                {o.key: o.cost for o in outcomes},
                cheapest_of(outcomes).key,
            )
        )
    return tuple(rows)


def advise(traffic: Traffic, knobs: Knobs | None = None) -> Advice:
    """Every policy over the traffic's hours, the replica's economics and the sensitivities."""
    knobs = knobs or Knobs()
    check(traffic, knobs)
    plans = _policies(traffic, knobs)
    return Advice(
        knobs=knobs,
        currency=traffic.currency,
        source=traffic.source,
        replica=traffic.replica,
        capacity=traffic.capacity,
        hours=len(traffic.hours),
        tokens=traffic.tokens,
        fleet_size=plans.fleet,
        outcomes=plans.outcomes,
        economics=_economics(traffic),
        sensitivity=_sensitivity(traffic, knobs),
        week_tokens=by_hour_of_week(traffic.hours, [h.tokens for h in traffic.hours]),
        scheduled_replicas=plans.scheduled_week,
        hybrid_schedule_replicas=plans.hybrid_week,
        on_api=traffic.on_api,
        zone=traffic.zone,
    )
