"""The traffic model from the monthly review's hourly figures. Pure: no I/O, no clock.

The review has already read the period from Prometheus, with its coverage
rules (only observed node-hours count; gaps are never filled). The planner
takes the same hours: each one's tokens, API-equivalent cost and spend, and
the nodes that ran it. A replica is one of those nodes, costing what the
exporter counted for it in that hour, unless the user describes another.
"""

from __future__ import annotations

import math
from collections import defaultdict

from llm_cost_exporter.accounting.costmodel import SECONDS_PER_HOUR
from llm_cost_exporter.tools.planner.advise import PlanError
from llm_cost_exporter.tools.planner.model import Hour, Traffic
from llm_cost_exporter.tools.planner.replica import ReplicaSpec
from llm_cost_exporter.tools.report.fetch import Table
from llm_cost_exporter.tools.report.figures import Ledger
from llm_cost_exporter.tools.report.period import Period


def traffic_from_review(
    ledger: Ledger,
    tables: dict[str, Table],
    period: Period,
    unpriced: tuple[str, ...],
    *,
    currency: str,
    source: str,
    replica: ReplicaSpec | None = None,
    capacity: float | None = None,
) -> Traffic:
    """Each observed hour of the selection, with the replica every policy is built from.

    ``capacity`` overrides what the exporters report; ``replica`` replaces
    the node as run altogether (its own price and capacity).
    """
    if unpriced:
        raise PlanError(
            "models without an API price ("
            + ", ".join(unpriced)
            + ") cannot be sent to the API; select the priced ones with --match model=..."
        )
    replicas: dict[int, int] = defaultdict(int)
    for cells in ledger.nodes.values():
        for hour in cells:
            replicas[hour] += 1
    by_kind: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (node, (_, kind)), values in tables["tokens"].rows.items():
        seen = ledger.nodes.get(node, {})
        for hour, value in values.items():
            if hour in seen:
                by_kind[hour][kind] += value
    hours = tuple(
        Hour(
            start=period.hour_start(hour),
            tokens=cell.tokens,
            api_cost=cell.api,
            replica_cost=replica.hourly_cost if replica else cell.spend / replicas[hour],
            spend=cell.spend,
            replicas=float(replicas[hour]),
            capacity_tokens=cell.capacity_tokens,
            tokens_by_kind=dict(by_kind[hour]),
        )
        for hour, cell in sorted(ledger.fleet.items())
    )
    if replica is not None:
        capacity, what = replica.capacity, replica.describe(currency)
    else:
        learned = _capacity_as_run(hours)
        capacity = capacity or learned
        if capacity is None:
            raise PlanError(
                "no capacity per replica: the exporters report none (configure or learn "
                "capacity) and --capacity was not given"
            )
        what = "one node as run"
    tokens_by_model = {
        model: math.fsum(c.tokens for c in cells.values()) for model, cells in ledger.models.items()
    }
    return Traffic(
        hours=hours,
        capacity=capacity,
        replica=what,
        currency=currency,
        source=source,
        tokens_by_model=tokens_by_model,
        zone=period.zone_name,
    )


def _capacity_as_run(hours: tuple[Hour, ...]) -> float | None:
    """The average node's capacity, over the node-hours that report one."""
    with_capacity = [h for h in hours if h.capacity_tokens > 0]
    node_hours = math.fsum(h.replicas for h in with_capacity)
    if not node_hours:
        return None
    return math.fsum(h.capacity_tokens for h in with_capacity) / node_hours / SECONDS_PER_HOUR
