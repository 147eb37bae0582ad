"""From hourly tables to the figures of a review. Pure: no I/O, no clock.

Each node-hour with a spend figure is an hour the data can see; everything
else is a gap, reported rather than filled. Sums are taken over seen hours
only, so a total never mixes measured and guessed money; the spend the gaps
probably hid is estimated separately from each node's last known hourly cost.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from llm_cost_exporter.accounting.costmodel import HOURS_PER_MONTH, MILLION, TOKEN_KINDS
from llm_cost_exporter.tools.report.fetch import NodeKey, Table
from llm_cost_exporter.tools.report.model import (
    HOURS_PER_WEEK,
    Coverage,
    Day,
    Event,
    Gap,
    ProjectionComparison,
    Totals,
    Variance,
)
from llm_cost_exporter.tools.report.period import HOUR, Period
from llm_cost_exporter.tools.report.variance import cost_bridge, savings_bridge

PROJECTED = "llmcost_projected_"
MIN_SAMPLES = 2  # scrapes in an hour for it to count as observed


@dataclass(slots=True)
class Cell:
    """What one hour added up to, for a node, a model or the whole selection."""

    spend: float = 0.0
    tokens: float = 0.0
    priced_spend: float = 0.0
    priced_tokens: float = 0.0
    api: float = 0.0
    capacity_tokens: float = 0.0  # capacity x 3600 over the parts with a known capacity
    tokens_with_capacity: float = 0.0


Cells = dict[int, Cell]


def node_name(key: NodeKey) -> str:
    labels = dict(key)
    name = labels.get("instance") or ",".join(f"{k}={v}" for k, v in key) or "(no labels)"
    return f"{name} ({labels['cluster']})" if "cluster" in labels else name


def unpriced_models(tables: dict[str, Table]) -> tuple[str, ...]:
    """Models flagged by the exporter as having no API price at any time in the period."""
    gauges = tables["model_gauges"]
    return tuple(
        sorted(
            {
                model
                for (_, (name, model, _)), hours in gauges.rows.items()
                if name == "llmcost_api_price_missing" and any(v >= 1 for v in hours.values())
            }
        )
    )


@dataclass
class Ledger:
    """Hourly cells of the selection, of each node and of each model."""

    fleet: Cells = field(default_factory=dict)
    nodes: dict[NodeKey, Cells] = field(default_factory=dict)
    models: dict[str, Cells] = field(default_factory=dict)
    tokens_by_kind: dict[str, float] = field(default_factory=dict)


def _cell(cells: Cells, hour: int) -> Cell:
    cell = cells.get(hour)
    if cell is None:
        cell = cells[hour] = Cell()
    return cell


def build_ledger(tables: dict[str, Table], unpriced: Iterable[str], by_model: bool) -> Ledger:
    """Spread every hourly figure over the node, model and selection it belongs to.

    A fleet's month is millions of values: each row finds its node's and model's
    cells once, and each value is added to its three cells in the order of the rows.
    """
    unpriced = set(unpriced)
    ledger = Ledger()
    for (node, (model,)), hours in tables["spend"].rows.items():
        priced = model not in unpriced
        maps = _cell_maps(ledger, node, model)
        for hour, value in hours.items():
            for cells in maps:
                cell = cells.get(hour) or _cell(cells, hour)
                cell.spend += value
                if priced:
                    cell.priced_spend += value
    covered = {node: set(cells) for node, cells in ledger.nodes.items()}
    by_kind = ledger.tokens_by_kind
    for (node, (model, kind)), hours in tables["tokens"].rows.items():
        priced = model not in unpriced
        seen = covered.get(node, set())
        maps = _cell_maps(ledger, node, model)
        for hour, value in hours.items():
            if hour not in seen:
                continue
            by_kind[kind] = by_kind.get(kind, 0.0) + value
            for cells in maps:
                cell = cells.get(hour) or _cell(cells, hour)
                cell.tokens += value
                if priced:
                    cell.priced_tokens += value
    for (node, (model,)), hours in tables["api_equivalent"].rows.items():
        if model in unpriced:
            continue
        seen = covered.get(node, set())
        maps = _cell_maps(ledger, node, model)
        for hour, value in hours.items():
            if hour in seen:
                for cells in maps:
                    (cells.get(hour) or _cell(cells, hour)).api += value
    _add_capacity(ledger, tables, by_model)
    return ledger


def _cell_maps(ledger: Ledger, node: NodeKey, model: str) -> tuple[Cells, Cells, Cells]:
    """The hourly cells a value of ``node`` and ``model`` adds to: the selection's, the
    node's and the model's."""
    return ledger.fleet, ledger.nodes.setdefault(node, {}), ledger.models.setdefault(model, {})


def _add_capacity(ledger: Ledger, tables: dict[str, Table], by_model: bool) -> None:
    """Capacity makes utilization: of a node as a whole, or of the selected models on it."""
    model_tokens: dict[tuple[NodeKey, str, int], float] = defaultdict(float)
    for (node, (model, _)), hours in tables["tokens"].rows.items():
        for hour, value in hours.items():
            model_tokens[(node, model, hour)] += value
    node_capacity: dict[tuple[NodeKey, int], float] = defaultdict(float)
    for (node, (model,)), hours in tables["model_capacity"].rows.items():
        cells = ledger.models.get(model, {})
        for hour, capacity in hours.items():
            if hour in ledger.nodes.get(node, {}) and hour in cells:
                cells[hour].capacity_tokens += capacity * HOUR
                cells[hour].tokens_with_capacity += model_tokens[(node, model, hour)]
                node_capacity[(node, hour)] += capacity
    if not by_model:
        node_capacity.clear()
        for (node, _), hours in tables["node_capacity"].rows.items():
            for hour, capacity in hours.items():
                node_capacity[(node, hour)] = capacity
    for (node, hour), capacity in node_capacity.items():
        cell = ledger.nodes.get(node, {}).get(hour)
        if cell is None:
            continue
        for target in (cell, ledger.fleet[hour]):
            target.capacity_tokens += capacity * HOUR
            target.tokens_with_capacity += cell.tokens


def totals_of(cells: Iterable[Cell], compare: bool) -> Totals:
    """Sum hourly cells; ``compare`` is False when nothing selected has an API price."""
    cells = list(cells)
    spend = math.fsum(c.spend for c in cells)
    tokens = math.fsum(c.tokens for c in cells)
    priced_spend = math.fsum(c.priced_spend for c in cells)
    priced_tokens = math.fsum(c.priced_tokens for c in cells)
    api = math.fsum(c.api for c in cells) if compare else None
    capacity = math.fsum(c.capacity_tokens for c in cells)
    compared = [c for c in cells if compare and _compared(c)]
    return Totals(
        spend=spend,
        tokens=tokens,
        covered_hours=float(len(cells)),
        cost_per_million_tokens=spend / tokens * MILLION if tokens > 0 else None,
        api_equivalent=api,
        api_equivalent_per_million_tokens=(
            api / priced_tokens * MILLION if api is not None and priced_tokens > 0 else None
        ),
        priced_spend=priced_spend,
        priced_tokens=priced_tokens,
        savings=api - priced_spend if api is not None else None,
        cost_ratio=priced_spend / api if api else None,
        average_hourly_cost=spend / len(cells) if cells else None,
        utilization=(
            math.fsum(c.tokens_with_capacity for c in cells) / capacity if capacity > 0 else None
        ),
        hours_below_breakeven=sum(1 for c in compared if c.priced_spend > c.api),
        hours_compared=len(compared),
    )


def _compared(cell: Cell) -> bool:
    """An hour with something to compare: spend on priced models or API-equivalent cost."""
    return cell.priced_spend > 0 or cell.api > 0


def hours_below_breakeven(cells: Cells, compare: bool) -> list[int]:
    """Hours that cost more than the API would have charged for their tokens."""
    if not compare:
        return []
    return [h for h, c in sorted(cells.items()) if _compared(c) and c.priced_spend > c.api]


def coverage_of(
    ledger: Ledger,
    tables: dict[str, Table],
    observed: dict[NodeKey, list[int]],
    period: Period,
    source: str,
) -> Coverage:
    """Each node is expected from its first to its last hour with data; holes are gaps.

    An hour has data when the exporter was scraped at least twice in it, the
    least an increase needs. This is read from the raw samples, aligned to the
    clock: an hourly rule's window that straddles an outage still yields a
    (partial) figure, which counts in the totals but does not hide the outage.
    """
    gaps: list[Gap] = []
    joined: list[tuple[str, datetime]] = []
    left: list[tuple[str, datetime]] = []
    expected = covered = unobserved = 0.0
    hourly_cost = _node_hourly_cost(tables)
    for node, hours in sorted(observed.items()):
        cells = ledger.nodes[node]
        first, last = hours[0], hours[-1]
        expected += last - first + 1
        covered += len(hours)
        name = node_name(node)
        if first > 0:
            joined.append((name, period.hour_start(first)))
        if last < period.hours - 1:
            left.append((name, period.hour_start(last + 1)))
        for gap_start, gap_end in _holes(hours):
            gaps.append(Gap(name, period.hour_start(gap_start), period.hour_start(gap_end)))
            rate = _last_known(hourly_cost.get(node, {}), gap_start - 1)
            if rate is None:
                rate = math.fsum(c.spend for c in cells.values()) / len(cells)
            unobserved += rate * (gap_end - gap_start)
    return Coverage(
        period_hours=float(period.hours),
        expected_node_hours=expected,
        covered_node_hours=covered,
        gaps=tuple(gaps),
        nodes_joined=tuple(joined),
        nodes_left=tuple(left),
        unobserved_spend_estimate=unobserved,
        source=source,
    )


def observed_hours(tables: dict[str, Table], ledger: Ledger) -> dict[NodeKey, list[int]]:
    """Each node's hours with at least two scrapes (its figure hours if the probe is absent)."""
    scraped = {node: hours for (node, _), hours in tables["samples"].rows.items()}
    out = {}
    for node, cells in ledger.nodes.items():
        counts = scraped.get(node, {})
        out[node] = sorted(h for h, n in counts.items() if n >= MIN_SAMPLES) or sorted(cells)
    return out


def _holes(hours: list[int]) -> Iterable[tuple[int, int]]:
    """Runs of missing hours between sorted present ones, as [start, end)."""
    for a, b in zip(hours, hours[1:], strict=False):
        if b > a + 1:
            yield a + 1, b


def _node_hourly_cost(tables: dict[str, Table]) -> dict[NodeKey, dict[int, float]]:
    """Each node's hourly cost, its components summed. A selection by model leaves it out
    (the series has no model label): a gap is then priced at the selection's mean."""
    return {
        node: dict(hours)
        for (node, (name, _, _)), hours in tables["model_gauges"].rows.items()
        if name == "llmcost_hourly_cost"
    }


def _last_known(values: dict[int, float], hour: int) -> float | None:
    earlier = [h for h in values if h <= hour]
    return values[max(earlier)] if earlier else None


def days_of(ledger: Ledger, period: Period, compare: bool) -> tuple[Day, ...]:
    """Every calendar day of the period, in the report's zone, seen or not."""
    by_day: dict[str, list[Cell]] = {}
    for hour in range(period.hours):
        cells = by_day.setdefault(f"{period.hour_start(hour):%Y-%m-%d}", [])
        if hour in ledger.fleet:
            cells.append(ledger.fleet[hour])
    days = []
    for date, cells in by_day.items():
        t = totals_of(cells, compare)
        days.append(
            Day(
                date=date,
                spend=t.spend,
                tokens=t.tokens,
                api_equivalent=t.api_equivalent,
                cost_per_million_tokens=t.cost_per_million_tokens,
                api_equivalent_per_million_tokens=t.api_equivalent_per_million_tokens,
                utilization=t.utilization,
                covered_hours=t.covered_hours,
                hours_below_breakeven=t.hours_below_breakeven,
            )
        )
    return tuple(days)


def week_profile(
    ledger: Ledger, period: Period
) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """Utilization and average tokens per hour for each hour of the week (Monday 00:00 first)."""
    slots: list[list[Cell]] = [[] for _ in range(HOURS_PER_WEEK)]
    for hour, cell in ledger.fleet.items():
        when = period.hour_start(hour)
        slots[when.weekday() * 24 + when.hour].append(cell)
    utilization: list[float | None] = []
    tokens: list[float | None] = []
    for cells in slots:
        capacity = math.fsum(c.capacity_tokens for c in cells)
        used = math.fsum(c.tokens_with_capacity for c in cells)
        utilization.append(used / capacity if capacity > 0 else None)
        tokens.append(math.fsum(c.tokens for c in cells) / len(cells) if cells else None)
    return tuple(utilization), tuple(tokens)


def peak_to_trough(profile: tuple[float | None, ...]) -> float | None:
    values = [v for v in profile if v is not None]
    if not values or min(values) <= 0:
        return None
    return max(values) / min(values)


def events_of(tables: dict[str, Table], period: Period, seen: Ledger) -> tuple[Event, ...]:
    """Exporter restarts (counter resets) and engine restarts, hour by hour."""
    events = []
    for figure, kind in (
        ("exporter_restarts", "exporter_restart"),
        ("engine_restarts", "engine_restart"),
    ):
        for (node, _), hours in tables[figure].rows.items():
            if node not in seen.nodes:
                continue
            for hour, value in sorted(hours.items()):
                count = round(value)
                if count >= 1:
                    events.append(Event(node_name(node), period.hour_start(hour), kind, count))
    return tuple(sorted(events, key=lambda e: (e.hour, e.node, e.kind)))


def realized_api_prices(tables: dict[str, Table], unpriced: Iterable[str]) -> dict[str, float]:
    """API price per 1M of each kind, weighted by the tokens served at each price."""
    unpriced = set(unpriced)
    prices: dict[tuple[NodeKey, str, str], dict[int, float]] = {}
    for (node, (name, model, kind)), hours in tables["model_gauges"].rows.items():
        if name == "llmcost_api_price_per_million_tokens" and model not in unpriced:
            prices[(node, model, kind)] = hours
    weighted: dict[str, float] = defaultdict(float)
    served: dict[str, float] = defaultdict(float)
    for (node, (model, kind)), hours in tables["tokens"].rows.items():
        price = prices.get((node, model, kind), {})
        for hour, tokens in hours.items():
            if hour in price:
                weighted[kind] += tokens * price[hour]
                served[kind] += tokens
    out = {kind: weighted[kind] / served[kind] for kind in served if served[kind] > 0}
    for (_, _, kind), hours in prices.items():
        if kind not in out and hours:
            out[kind] = math.fsum(hours.values()) / len(hours)
    return out


def projection_of(
    tables: dict[str, Table],
    ledger: Ledger,
    api_prices: dict[str, float],
) -> ProjectionComparison | None:
    """The plan as the ``llmcost_projected_*`` series stood over each node's seen hours."""
    if "projection" not in tables or not tables["projection"].rows:
        return None
    plans: dict[NodeKey, dict[str, float]] = defaultdict(dict)
    for (node, (name, kind)), hours in tables["projection"].rows.items():
        cells = ledger.nodes.get(node, {})
        seen = [v for h, v in hours.items() if h in cells] or list(hours.values())
        key = name[len(PROJECTED) :] + (f":{kind}" if kind else "")
        plans[node][key] = math.fsum(seen) / len(seen)
    planned_tokens = planned_spend = 0.0
    utilization_weight = utilization_sum = 0.0
    mix_weight: dict[str, float] = defaultdict(float)
    mix_total = 0.0
    cost_only: list[tuple[float, float]] = []
    for node, plan in plans.items():
        cells = ledger.nodes.get(node, {})
        hours = len(cells)
        tokens_plan = plan.get("tokens_per_month")
        cpm = plan.get("cost_per_million_tokens")
        if tokens_plan is not None:
            node_tokens = tokens_plan * hours / HOURS_PER_MONTH
            planned_tokens += node_tokens
            if cpm is not None:
                planned_spend += cpm * node_tokens / MILLION
            shares = {
                k: plan[f"token_share:{k}"] for k in TOKEN_KINDS if f"token_share:{k}" in plan
            }
            if shares:
                mix_total += node_tokens
                for kind, share in shares.items():
                    mix_weight[kind] += share * node_tokens
        elif cpm is not None:
            cost_only.append((cpm, math.fsum(c.tokens for c in cells.values())))
        if "utilization_ratio" in plan:
            weight = math.fsum(c.capacity_tokens for c in cells.values()) or float(hours)
            utilization_sum += plan["utilization_ratio"] * weight
            utilization_weight += weight
    cost_per_million = planned_spend / planned_tokens * MILLION if planned_tokens > 0 else None
    if cost_per_million is None and cost_only:
        weight = math.fsum(w for _, w in cost_only)
        cost_per_million = (
            math.fsum(c * w for c, w in cost_only) / weight
            if weight > 0
            else math.fsum(c for c, _ in cost_only) / len(cost_only)
        )
    mix = {k: mix_weight[k] / mix_total for k in TOKEN_KINDS if mix_total > 0}
    api_per_million = None
    if mix and all(kind in api_prices for kind, share in mix.items() if share > 0):
        api_per_million = math.fsum(share * api_prices.get(k, 0.0) for k, share in mix.items())
    seen_hours = len(ledger.fleet)
    has_spend = planned_tokens > 0 and cost_per_million is not None
    return ProjectionComparison(
        utilization=utilization_sum / utilization_weight if utilization_weight > 0 else None,
        tokens=planned_tokens if planned_tokens > 0 else None,
        cost_per_million_tokens=cost_per_million,
        hourly_cost=planned_spend / seen_hours if has_spend and seen_hours else None,
        spend=planned_spend if has_spend else None,
        api_equivalent_per_million_tokens=api_per_million,
        token_mix=mix,
    )


def variance_of(
    projection: ProjectionComparison | None, totals: Totals, unpriced: tuple[str, ...]
) -> Variance | None:
    """Bridges from plan to realized; the savings one only when every model has an API price."""
    if (
        projection is None
        or projection.cost_per_million_tokens is None
        or projection.spend is None
        or totals.tokens <= 0
    ):
        return None
    cost_lines = cost_bridge(
        projection.cost_per_million_tokens, projection.spend, totals.spend, totals.tokens
    )
    savings_lines: tuple = ()
    planned_savings = realized_savings = None
    if (
        not unpriced
        and projection.api_equivalent_per_million_tokens is not None
        and totals.api_equivalent_per_million_tokens is not None
        and totals.cost_per_million_tokens is not None
    ):
        savings_lines = savings_bridge(
            cost_lines,
            projection.api_equivalent_per_million_tokens,
            totals.api_equivalent_per_million_tokens,
            totals.tokens,
        )
        planned_savings = (
            projection.api_equivalent_per_million_tokens - projection.cost_per_million_tokens
        )
        realized_savings = totals.api_equivalent_per_million_tokens - totals.cost_per_million_tokens
    return Variance(cost_lines, savings_lines, planned_savings, realized_savings)


def spend_by_component(tables: dict[str, Table], ledger: Ledger) -> dict[str, float]:
    """Node spend by component over the seen hours (not available per model)."""
    if "components" not in tables:
        return {}
    out: dict[str, list[float]] = defaultdict(list)
    for (node, (component,)), hours in tables["components"].rows.items():
        cells = ledger.nodes.get(node, {})
        out[component].extend(v for h, v in hours.items() if h in cells)
    return {k: math.fsum(v) for k, v in sorted(out.items())}
