"""Each policy, costed hour by hour. Pure: no I/O, no clock.

Every self-hosted policy comes down to how many replicas it keeps in each
hour. A kept replica costs that hour's replica cost whether busy or not and
serves up to ``capacity x ceiling`` tokens an hour; what the kept replicas
cannot serve goes to the API at that hour's blended API price. Fixed and
scheduled fleets are sized so that nothing overflows; the hybrid policies
overflow on purpose where the API is cheaper than another replica.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llm_cost_exporter.accounting.costmodel import SECONDS_PER_HOUR
from llm_cost_exporter.tools.planner.model import (
    ALL_API,
    AS_RUN,
    Hour,
    Outcome,
    Traffic,
    replica_hours_capacity,
)
from llm_cost_exporter.tools.report.model import HOURS_PER_WEEK

# A token count this close above a multiple of a replica's share still fits: hourly
# figures are sums of floats, and a replica more for a rounding error would be wrong.
FIT_TOLERANCE = 1e-9


def tokens_per_replica(capacity: float, ceiling: float) -> float:
    """Tokens one replica serves in an hour without going above the ceiling."""
    return capacity * SECONDS_PER_HOUR * ceiling


def replicas_needed(tokens: float, per_replica: float) -> int:
    """The fewest replicas that serve ``tokens`` in an hour at the ceiling."""
    if tokens <= 0:
        return 0
    return max(1, math.ceil(tokens / per_replica * (1 - FIT_TOLERANCE)))


def hour_cost(hour: Hour, kept: int, per_replica: float) -> float:
    """An hour with ``kept`` replicas, the traffic above what they serve sent to the API."""
    overflow = max(0.0, hour.tokens - kept * per_replica)
    return kept * hour.replica_cost + overflow * hour.api_price_per_token


def cheapest_kept(hour: Hour, per_replica: float, floor: int, fleet: int) -> int:
    """The number of replicas, ``floor`` to ``fleet``, that makes this hour cheapest.

    Each replica up to the last one the traffic fills saves a full replica's
    tokens at the API price; the next saves what is left, and any further one
    saves nothing. The savings only shrink, so the hour's cost is convex in
    the replicas kept: keep every replica that saves more than it costs, then
    clamp to the allowed range. Ties keep fewer replicas.
    """
    price = hour.api_price_per_token
    full = int(hour.tokens // per_replica) if per_replica > 0 else 0
    kept = 0
    if per_replica * price > hour.replica_cost:
        kept = full
        if (hour.tokens - full * per_replica) * price > hour.replica_cost:
            kept += 1
    return min(max(kept, floor), fleet)


def week_slot_costs(
    hours: Sequence[Hour], counts: Sequence[int], per_replica: float
) -> list[list[float]]:
    """What each hour of the week costs over the period with each count of replicas kept.

    ``hour_cost`` summed over a slot's hours, for every count at once: with the
    slot's hours sorted busiest first, the hours that overflow ``k`` replicas
    are a prefix, so each count costs one step instead of a pass over the hours.
    """
    slots: list[list[Hour]] = [[] for _ in range(HOURS_PER_WEEK)]
    for hour in hours:
        slots[week_slot(hour)].append(hour)
    table = [[0.0] * HOURS_PER_WEEK for _ in counts]
    for slot, members in enumerate(slots):
        members.sort(key=lambda h: h.tokens, reverse=True)
        replica_cost = math.fsum(h.replica_cost for h in members)
        api = [0.0]  # API cost of the busiest j hours in full
        price = [0.0]  # their API prices per token, summed
        for h in members:
            api.append(api[-1] + h.api_cost)
            price.append(price[-1] + h.api_price_per_token)
        overflowing = len(members)
        for c, count in enumerate(counts):
            served = count * per_replica
            while overflowing and members[overflowing - 1].tokens <= served:
                overflowing -= 1
            table[c][slot] = count * replica_cost + api[overflowing] - served * price[overflowing]
    return table


def week_slot(hour: Hour) -> int:
    """Hour of the week, Monday 00:00 being 0, in the zone the hours are given in."""
    return hour.start.weekday() * 24 + hour.start.hour


def by_hour_of_week(hours: Sequence[Hour], values: Sequence[float]) -> tuple[float | None, ...]:
    """The average of ``values`` (one per hour) in each hour of the week."""
    sums = [0.0] * HOURS_PER_WEEK
    counts = [0] * HOURS_PER_WEEK
    for hour, value in zip(hours, values, strict=True):
        slot = week_slot(hour)
        sums[slot] += value
        counts[slot] += 1
    return tuple(s / n if n else None for s, n in zip(sums, counts, strict=True))


def kept_outcome(
    key: str,
    name: str,
    summary: str,
    traffic: Traffic,
    kept: Sequence[int],
    per_replica: float,
) -> Outcome:
    """A self-hosted policy from the replicas it keeps in each hour."""
    hours = traffic.hours
    costs, served, below = [], [], 0
    for hour, k in zip(hours, kept, strict=True):
        self_hosted = min(hour.tokens, k * per_replica)
        costs.append(hour_cost(hour, k, per_replica))
        served.append(self_hosted)
        if k > 0 and k * hour.replica_cost > self_hosted * hour.api_price_per_token:
            below += 1
    replica_hours = float(sum(kept))
    return Outcome(
        key=key,
        name=name,
        summary=summary,
        cost=math.fsum(costs),
        tokens=traffic.tokens,
        self_hosted_tokens=math.fsum(served),
        replica_hours=replica_hours,
        capacity_tokens=replica_hours_capacity(replica_hours, traffic.capacity),
        hours_below_breakeven=below,
        hours_self_hosted=sum(1 for k in kept if k > 0),
        replicas_by_hour_of_week=by_hour_of_week(hours, [float(k) for k in kept]),
    )


def as_run(traffic: Traffic) -> Outcome:
    """What the period really cost, the way it ran."""
    hours = traffic.hours
    on_api = traffic.on_api
    return Outcome(
        key=AS_RUN,
        name="As run",
        summary=(
            "all traffic on the API, as billed"
            if on_api
            else "the fleet as it ran, at the cost the exporter counted"
        ),
        cost=math.fsum(h.spend for h in hours),
        tokens=traffic.tokens,
        self_hosted_tokens=0.0 if on_api else traffic.tokens,
        replica_hours=math.fsum(h.replicas for h in hours),
        capacity_tokens=math.fsum(h.capacity_tokens for h in hours),
        hours_below_breakeven=None
        if on_api
        else sum(1 for h in hours if (h.spend > 0 or h.api_cost > 0) and h.spend > h.api_cost),
        hours_self_hosted=sum(1 for h in hours if h.replicas > 0),
        replicas_by_hour_of_week=by_hour_of_week(hours, [h.replicas for h in hours]),
    )


def all_api(traffic: Traffic) -> Outcome:
    """Every token at the API's prices, nothing self-hosted."""
    hours = traffic.hours
    return Outcome(
        key=ALL_API,
        name="All on the API",
        summary="every token at the API's list prices, no replica kept",
        cost=math.fsum(h.api_cost for h in hours),
        tokens=traffic.tokens,
        self_hosted_tokens=0.0,
        replica_hours=0.0,
        capacity_tokens=0.0,
        hours_below_breakeven=None,
        hours_self_hosted=0,
        replicas_by_hour_of_week=by_hour_of_week(hours, [0.0] * len(hours)),
    )
