"""The planner on the synthetic month whose truth is known, read from a real Prometheus
and from a real VictoriaMetrics.

The October of the review's tests (an exporter restart, an outage, a GPU price
cut mid-month) is planned from raw counters and from the hourly recording
rules, on both stores; every policy's cost must equal a
computation made here from the month's truth, hour by hour, to the cent. The
hybrid optimum is found here by brute force over every replica count.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from realparts.synthetic_month import HOUR, Truth

from llm_cost_exporter.tools.planner.model import (
    ALL_API,
    AS_RUN,
    FIXED,
    HYBRID,
    HYBRID_SCHEDULE,
    SCHEDULED,
    Advice,
    Knobs,
)
from llm_cost_exporter.tools.planner.replica import ReplicaSpec
from llm_cost_exporter.tools.report.build import Planning, build_report
from llm_cost_exporter.tools.report.period import parse_period
from llm_cost_exporter.tools.report.prometheus_api import Credentials, PrometheusClient
from llm_cost_exporter.tools.report.selection import Selection
from llm_cost_exporter.tools.report.units import rounded

pytestmark = pytest.mark.realparts

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
# Two GPUs of the node at $2.00/h with its 30% overhead, serving a quarter of its capacity.
QUARTER_NODE = ReplicaSpec(gpu_price=2.00, capacity=5000.0, gpus=2, gpu="H100", overhead=0.3)


def plan(url: str, planning: Planning, source: str = "raw") -> Advice:
    period = parse_period("2026-10", None, None, "UTC", NOW)
    report = build_report(
        PrometheusClient(url, Credentials()),
        Selection.parse([]),
        period,
        source=source,
        now=NOW,
        planning=planning,
    )
    assert report.advice is not None, report.advice_missing
    return report.advice


class HandPlan:
    """Every policy computed from the truth's observed hours, the simplest way there is."""

    def __init__(self, truth: Truth, replica_cost, capacity: float, knobs: Knobs) -> None:
        self.hours = [h for h in truth.hourly if h.observed]
        self.cost = {id(h): replica_cost(h) for h in self.hours}
        self.per_replica = capacity * HOUR * knobs.ceiling
        self.knobs = knobs
        need = [math.ceil(h.tokens_total / self.per_replica) for h in self.hours]
        self.fleet = max([knobs.floor, *need])
        self.counts = range(knobs.floor, self.fleet + 1)

    def when(self, h) -> datetime:
        return datetime.fromtimestamp(h.start, timezone.utc)

    def hour(self, h, kept: int) -> float:
        """Kept replicas at this hour's replica cost, the rest at the API's price."""
        served = min(h.tokens_total, kept * self.per_replica)
        price = h.api_equivalent_total / h.tokens_total if h.tokens_total else 0.0
        return kept * self.cost[id(h)] + (h.tokens_total - served) * price

    def as_run(self) -> float:
        return math.fsum(h.spend for h in self.hours)

    def all_api(self) -> float:
        return math.fsum(h.api_equivalent_total for h in self.hours)

    def fixed(self) -> float:
        return math.fsum(self.hour(h, self.fleet) for h in self.hours)

    def scheduled(self) -> float:
        """With one-hour steps: each hour of the week keeps what its busiest week needed."""
        slot: dict[tuple[int, int], int] = {}
        for h in self.hours:
            key = (self.when(h).weekday(), self.when(h).hour)
            need = max(self.knobs.floor, math.ceil(h.tokens_total / self.per_replica))
            slot[key] = max(slot.get(key, 0), need)
        return math.fsum(
            self.hour(h, slot[(self.when(h).weekday(), self.when(h).hour)]) for h in self.hours
        )

    def hybrid(self) -> float:
        return math.fsum(min(self.hour(h, k) for k in self.counts) for h in self.hours)

    def hybrid_schedule(self) -> float:
        """Every weekday window and every pair of counts, tried."""
        by_slot = {(k, d, hr): 0.0 for k in self.counts for d in range(7) for hr in range(24)}
        for h in self.hours:
            for k in self.counts:
                by_slot[(k, self.when(h).weekday(), self.when(h).hour)] += self.hour(h, k)

        def total(start: int, end: int, day: int, other: int) -> float:
            return math.fsum(
                by_slot[(day if d < 5 and start <= hr < end else other, d, hr)]
                for d in range(7)
                for hr in range(24)
            )

        best = min(total(0, 0, k, k) for k in self.counts)
        run = self.knobs.min_run
        for start, end in itertools.combinations(range(25), 2):
            if end - start >= run and (end - start == 24 or 24 - (end - start) >= run):
                for day, other in itertools.product(self.counts, self.counts):
                    best = min(best, total(start, end, day, other))
        return best


def cents(value: float) -> Any:
    return rounded(value, "money")


@pytest.mark.parametrize(
    ("planning", "replica_cost", "capacity"),
    [
        # The node as it ran: each hour's replica costs what the exporter counted (the GPU
        # price falls mid-month); floor 0 lets the hybrid policies close it at night.
        (Planning(knobs=Knobs(floor=0, min_run=1)), lambda h: h.spend, 20000.0),
        # A quarter of the node as the replica: three of them serve the busiest hour.
        (
            Planning(knobs=Knobs(floor=1, min_run=1), replica=QUARTER_NODE),
            lambda h: QUARTER_NODE.hourly_cost,
            QUARTER_NODE.capacity,
        ),
    ],
    ids=["node-as-run", "quarter-node"],
)
@pytest.mark.parametrize("source", ["raw", "rules"])
def test_every_policy_costs_what_the_truth_says_to_the_cent(
    backend, store, planning, replica_cost, capacity, source
) -> None:
    """From raw counters, or from the hourly rules where vmalert's replay evaluated them
    on the hour (promtool evaluates a group minutes past it: its windows are not the
    clock hours)."""
    if source == "rules" and store == "backfilled_month":
        pytest.skip("Prometheus's rule windows are not clock hours")
    server, truth = backend
    advice = plan(server.url, planning, source)
    hand = HandPlan(truth, replica_cost, capacity, planning.knobs)
    assert advice.hours == len(hand.hours) == truth.observable_hours
    assert advice.fleet_size == hand.fleet
    assert {o.key: cents(o.cost) for o in advice.outcomes} == {
        AS_RUN: cents(hand.as_run()),
        ALL_API: cents(hand.all_api()),
        FIXED: cents(hand.fixed()),
        SCHEDULED: cents(hand.scheduled()),
        HYBRID: cents(hand.hybrid()),
        HYBRID_SCHEDULE: cents(hand.hybrid_schedule()),
    }
    assert advice.capacity == capacity
    assert advice.zone == "UTC"  # the review's zone: the week's hours are read in it
    assert advice.outcome(AS_RUN).tokens == truth.observable.tokens_total


def test_the_quarter_node_plan_is_a_real_choice(backend) -> None:
    """On this month the answer is not trivial: three replicas at the peak, one at night."""
    server, _ = backend
    advice = plan(server.url, Planning(knobs=Knobs(), replica=QUARTER_NODE))
    assert advice.fleet_size == 3
    assert min(advice.scheduled_replicas) == 1 and max(advice.scheduled_replicas) == 3
    scheduled, fixed = advice.outcome(SCHEDULED), advice.outcome(FIXED)
    assert scheduled.cost < fixed.cost < advice.outcome(AS_RUN).cost
    assert advice.outcome(HYBRID).cost <= advice.outcome(HYBRID_SCHEDULE).cost
    assert advice.outcome(HYBRID).cost <= scheduled.cost
