"""The planner's money math against hand computations, brute force and the seeds' figures."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from plan_traffic import b2b_month

from llm_cost_exporter.tools.planner.advise import PlanError, advise
from llm_cost_exporter.tools.planner.model import (
    ALL_API,
    AS_RUN,
    FIXED,
    HYBRID,
    HYBRID_SCHEDULE,
    POLICIES,
    SCHEDULED,
    Hour,
    Knobs,
    Traffic,
)
from llm_cost_exporter.tools.planner.policies import (
    cheapest_kept,
    hour_cost,
    tokens_per_replica,
    week_slot_costs,
)
from llm_cost_exporter.tools.planner.replica import ReplicaSpec
from llm_cost_exporter.tools.planner.schedules import (
    WindowSchedule,
    cheapest_window_schedule,
    with_minimum_runs,
)
from llm_cost_exporter.tools.report.figures import peak_to_trough
from llm_cost_exporter.tools.report.units import rounded

MONDAY = datetime(2026, 10, 5, tzinfo=timezone.utc)


def cents(value: float | None) -> float | None:
    return rounded(value, "money")


def traffic_of(
    tokens: list[float],
    *,
    capacity: float,
    replica_cost: float,
    price_per_million: float,
    replicas: float = 1.0,
    start: datetime = MONDAY,
) -> Traffic:
    hours = tuple(
        Hour(
            start=start + timedelta(hours=i),
            tokens=t,
            api_cost=t * price_per_million / 1e6,
            replica_cost=replica_cost,
            spend=replica_cost * replicas,
            replicas=replicas,
            capacity_tokens=capacity * 3600 * replicas,
        )
        for i, t in enumerate(tokens)
    )
    return Traffic(hours, capacity, "a test replica", "USD", "test")


# The seeds' worked figures ----------------------------------------------------------------


@pytest.mark.parametrize(("load", "per_million"), [(1.0, 0.45), (0.6, 0.75), (0.2, 2.25)])
def test_an_a100_at_3_20_an_hour_serving_1975_tokens_a_second(load, per_million) -> None:
    week = [1975 * 3600 * load] * 168
    advice = advise(
        traffic_of(week, capacity=1975, replica_cost=3.20, price_per_million=1.0),
        Knobs(ceiling=1.0),
    )
    fixed = advice.outcome(FIXED)
    assert advice.fleet_size == 1 and fixed.replica_hours == 168
    assert cents(fixed.cost_per_million_tokens) == per_million
    assert fixed.utilization == pytest.approx(load)
    assert cents(dict(advice.economics.cost_per_million_by_load)[load]) == per_million


@pytest.mark.parametrize(("overhead", "per_million"), [(0.0, 0.28), (0.3, 0.36)])
def test_an_l40s_at_1_50_an_hour_serving_1500_tokens_a_second(overhead, per_million) -> None:
    l40s = ReplicaSpec(gpu_price=1.50, capacity=1500, gpu="L40S", overhead=overhead)
    advice = advise(
        traffic_of(
            [1500 * 3600] * 24,
            capacity=l40s.capacity,
            replica_cost=l40s.hourly_cost,
            price_per_million=1.0,
        ),
        Knobs(ceiling=1.0),
    )
    assert cents(advice.outcome(FIXED).cost_per_million_tokens) == per_million
    assert l40s.describe("USD") == "1 \u00d7 L40S at $1.50/h" + (
        ", 30% overhead" if overhead else ""
    )
    assert l40s.hourly_cost == pytest.approx(1.95 if overhead else 1.50)


@pytest.mark.parametrize("peak_to_trough_ratio", [10, 12, 15, 20])
def test_a_b2b_month_on_one_a100_sized_for_its_peak_averages_8_to_15_percent(
    peak_to_trough_ratio,
) -> None:
    # 1,500 tokens/s at the weekday peak: one A100 (1,975 tokens/s) below the 0.8 ceiling.
    month = b2b_month(peak_to_trough_ratio, 1500, capacity=1975, replica_cost=3.20)
    advice = advise(month)
    assert advice.fleet_size == 1
    assert peak_to_trough(advice.week_tokens) == pytest.approx(peak_to_trough_ratio, rel=1e-3)
    assert 0.08 <= advice.outcome(FIXED).utilization <= 0.15
    assert advice.outcome(AS_RUN).utilization == advice.outcome(FIXED).utilization


# A small case computed by hand --------------------------------------------------------------

# One replica serves 1,000 tokens/s; at a 0.5 ceiling that is 1.8M tokens an hour. It costs
# $2/h; the API charges $2 per 1M tokens, so a full replica saves $3.60 an hour and pays.
HAND = dict(capacity=1000.0, replica_cost=2.0, price_per_million=2.0, replicas=3.0)
HAND_TOKENS = [0.9e6, 4.0e6, 1.8e6, 0.0]
HAND_KNOBS = Knobs(ceiling=0.5, floor=0, min_run=1)


def test_each_policy_costs_what_a_hand_computation_says() -> None:
    advice = advise(traffic_of(HAND_TOKENS, **HAND), HAND_KNOBS)
    costs = {o.key: cents(o.cost) for o in advice.outcomes}
    assert costs == {
        AS_RUN: 24.00,  # 3 replicas x $2 x 4 h, as the exporter counted
        ALL_API: 13.40,  # 6.7M tokens x $2 per 1M
        FIXED: 24.00,  # the 4.0M hour needs ceil(4.0 / 1.8) = 3 replicas, all 4 hours
        SCHEDULED: 10.00,  # 1 + 3 + 1 + 0 replica-hours
        # 0.9M: a replica ($2) costs more than 0.9M at the API ($1.80): none.
        # 4.0M: two full replicas, the last 0.4M ($0.80) to the API: $4.80.
        # 1.8M: one full replica, $2.00. Nothing: $0.
        HYBRID: 8.60,
        # One weekday window: 2 replicas 01:00-02:00, none otherwise: $1.80 + $4.80 + $3.60.
        HYBRID_SCHEDULE: 10.20,
    }
    assert advice.fleet_size == 3
    hybrid = advice.outcome(HYBRID)
    assert hybrid.self_hosted_tokens == 3.6e6 + 1.8e6
    assert hybrid.replica_hours == 3
    assert hybrid.utilization == pytest.approx(5.4e6 / (3 * 1000 * 3600))
    assert hybrid.hours_below_breakeven == 0
    assert advice.outcome(FIXED).hours_below_breakeven == 3  # all but the 4.0M hour
    assert advice.outcome(AS_RUN).hours_below_breakeven == 3
    assert advice.outcome(ALL_API).self_hosted_share == 0.0
    assert advice.cheapest.key == HYBRID
    assert cents(advice.saving_against(AS_RUN, hybrid)) == 15.40
    assert cents(advice.saving_against(ALL_API, hybrid)) == 4.80


def test_the_policies_never_leave_traffic_unserved_or_a_replica_over_the_ceiling() -> None:
    advice = advise(traffic_of(HAND_TOKENS, **HAND), HAND_KNOBS)
    for key in (FIXED, SCHEDULED):
        outcome = advice.outcome(key)
        assert outcome.self_hosted_share == 1.0
        assert outcome.utilization <= HAND_KNOBS.ceiling


# Hybrid routing: the per-hour optimum, proven by brute force ---------------------------------


def brute_force(hour: Hour, per_replica: float, floor: int, fleet: int) -> tuple[float, int]:
    """The cheapest (cost, replicas) over every allowed count, fewest replicas on a tie."""
    best = None
    for k in range(floor, fleet + 1):
        overflow = hour.tokens - min(hour.tokens, k * per_replica)
        cost = k * hour.replica_cost + overflow * (
            hour.api_cost / hour.tokens if hour.tokens else 0
        )
        if best is None or cost < best[0] - 1e-12:
            best = (cost, k)
    return best


def random_traffic(seed: int, hours: int = 24 * 14) -> Traffic:
    rng = random.Random(seed)
    capacity = rng.choice([800.0, 1975.0, 5000.0])
    out = []
    for i in range(hours):
        tokens = rng.choice([0.0, rng.uniform(0, 3), rng.uniform(0, 12)]) * capacity * 3600
        out.append(
            Hour(
                start=MONDAY + timedelta(hours=i),
                tokens=tokens,
                api_cost=tokens * rng.uniform(0.2, 6.0) / 1e6,
                replica_cost=rng.uniform(0.5, 12.0),
                spend=0.0,
            )
        )
    return Traffic(tuple(out), capacity, "random", "USD", f"seed {seed}")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("floor", [0, 1, 2])
def test_the_hourly_hybrid_optimum_is_the_brute_force_minimum_on_every_hour(seed, floor) -> None:
    traffic = random_traffic(seed)
    knobs = Knobs(ceiling=0.8, floor=floor, min_run=1)
    advice = advise(traffic, knobs)
    per_replica = tokens_per_replica(traffic.capacity, knobs.ceiling)
    fleet = advice.fleet_size
    total = []
    for hour in traffic.hours:
        cost, k = brute_force(hour, per_replica, floor, fleet)
        assert cheapest_kept(hour, per_replica, floor, fleet) == k
        total.append(cost)
    assert advice.outcome(HYBRID).cost == pytest.approx(math.fsum(total), rel=1e-12)
    # Nothing that keeps replicas hour by hour can beat it.
    for key in (FIXED, SCHEDULED, HYBRID_SCHEDULE):
        assert advice.outcome(key).cost >= advice.outcome(HYBRID).cost - 1e-9


# Schedules ---------------------------------------------------------------------------------


def circular_runs(levels: tuple[int, ...]) -> list[int]:
    n = len(levels)
    if len(set(levels)) == 1:
        return [n]
    origin = next(i for i in range(n) if levels[i] != levels[i - 1])
    lengths = []
    for step in range(n):
        i = (origin + step) % n
        if step and levels[i] == levels[i - 1]:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


@pytest.mark.parametrize(
    ("needed", "min_run", "expected"),
    [
        # A two-hour peak grows into the hour after it.
        ({10: 3, 11: 3}, 3, {10: 3, 11: 3, 12: 3}),
        # A one-hour dip is filled to its neighbours' level.
        ({h: 2 for h in range(168) if h != 30}, 3, {h: 2 for h in range(168)}),
        # Steps already long enough stay as they are.
        ({h: 2 for h in range(9, 17)}, 3, {h: 2 for h in range(9, 17)}),
        # A peak across the week's edge (Sunday 23:00, Monday 00:00) grows into Monday.
        ({167: 4, 0: 4}, 4, {167: 4, 0: 4, 1: 4, 2: 4}),
    ],
)
def test_minimum_runs_by_hand(needed, min_run, expected) -> None:
    week = [1] * 168
    for slot, level in needed.items():
        week[slot] = level
    want = [1] * 168
    for slot, level in expected.items():
        want[slot] = level
    assert list(with_minimum_runs(week, min_run)) == want


@pytest.mark.parametrize("seed", range(20))
def test_minimum_runs_always_serve_and_always_hold(seed) -> None:
    rng = random.Random(seed)
    needed = [rng.choice([0, 1, 1, 2, 3, 5]) for _ in range(168)]
    for min_run in (1, 2, 3, 6, 12):
        result = with_minimum_runs(needed, min_run)
        assert all(r >= n for r, n in zip(result, needed, strict=True))
        assert min(circular_runs(result)) >= min(min_run, 168)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_run", [1, 3, 8])
def test_the_window_schedule_is_the_cheapest_of_every_window(seed, min_run) -> None:
    rng = random.Random(seed)
    counts = [0, 1, 2, 3]
    table = {(d, h, c): rng.uniform(0, 10) for d in range(7) for h in range(24) for c in counts}

    def cost(day: int, hour: int, count: int) -> float:
        return table[(day, hour, count)]

    def total(schedule: WindowSchedule) -> float:
        return math.fsum(cost(d, h, schedule.replicas(d, h)) for d in range(7) for h in range(24))

    chosen = cheapest_window_schedule(cost, counts, min_run)
    candidates = [WindowSchedule(0, 0, c, c) for c in counts]
    for start, end in itertools.combinations(range(25), 2):
        length = end - start
        if length >= min_run and (length == 24 or 24 - length >= min_run):
            for day, other in itertools.product(counts, counts):
                candidates.append(WindowSchedule(start, end, day, other))
    assert total(chosen) == pytest.approx(min(total(c) for c in candidates), rel=1e-12)


# Sensitivity and errors --------------------------------------------------------------------


def test_sensitivity_rows_are_the_advice_recomputed_with_one_assumption_moved() -> None:
    month = b2b_month(15, 9000, capacity=1975, replica_cost=3.20, days=14)
    knobs = Knobs()
    advice = advise(month, knobs)
    assert [s.label for s in advice.sensitivity] == [
        "capacity -20%",
        "capacity +20%",
        "ceiling 60%",
        "ceiling 70%",
        "ceiling 90%",
        "ceiling 100%",
    ]
    for row in advice.sensitivity:
        again = advise(replace(month, capacity=row.capacity), replace(knobs, ceiling=row.ceiling))
        assert row.costs == {o.key: o.cost for o in again.outcomes}
        assert row.cheapest == again.cheapest.key
    by_label = {s.label: s for s in advice.sensitivity}
    # Fewer tokens per replica never makes a self-hosted policy cheaper.
    for key in (FIXED, SCHEDULED, HYBRID):
        assert by_label["capacity -20%"].costs[key] >= advice.outcome(key).cost
        assert by_label["capacity +20%"].costs[key] <= advice.outcome(key).cost
    assert set(advice.sensitivity[0].costs) == set(POLICIES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(hours=()), "no hour with traffic data in the period"),
        (dict(capacity=0.0), "capacity per replica: must be a positive number"),
    ],
)
def test_traffic_that_cannot_be_planned_says_why(change, message) -> None:
    traffic = replace(traffic_of(HAND_TOKENS, **HAND), **change)
    with pytest.raises(PlanError, match=message):
        advise(traffic)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (Knobs(ceiling=0.0), "ceiling"),
        (Knobs(ceiling=1.5), "ceiling"),
        (Knobs(floor=-1), "floor"),
        (Knobs(min_run=0), "minimum run"),
    ],
)
def test_bad_knobs_are_refused(knobs, message) -> None:
    with pytest.raises(PlanError, match=message):
        advise(traffic_of(HAND_TOKENS, **HAND), knobs)


@pytest.mark.parametrize("seed", range(3))
def test_week_slot_costs_add_up_each_hours_cost(seed) -> None:
    traffic = random_traffic(seed, hours=24 * 21)
    per_replica = tokens_per_replica(traffic.capacity, 0.8)
    counts = [0, 1, 2, 5, 9]
    table = week_slot_costs(traffic.hours, counts, per_replica)
    naive = [[0.0] * 168 for _ in counts]
    for hour in traffic.hours:
        slot = hour.start.weekday() * 24 + hour.start.hour
        for c, count in enumerate(counts):
            naive[c][slot] += hour_cost(hour, count, per_replica)
    for c in range(len(counts)):
        assert table[c] == pytest.approx(naive[c], rel=1e-9, abs=1e-9)
