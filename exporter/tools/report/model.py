"""What a review says, as plain data: the one structure every output renders.

The HTML, CSV and JSON outputs are all drawn from a :class:`Report`, which
holds full-precision figures; every output rounds them with
:func:`exporter.report.units.rounded`, so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from llm_cost_exporter.accounting.costmodel import SECONDS_PER_HOUR

if TYPE_CHECKING:
    from llm_cost_exporter.tools.planner.model import Advice

HOURS_PER_WEEK = 168
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hour_of_week_label(index: int) -> str:
    """``Mon 00:00`` for cell 0 of a week profile, ``Sun 23:00`` for cell 167."""
    return f"{WEEKDAYS[index // 24]} {index % 24:02d}:00"


@dataclass(frozen=True)
class Gap:
    """Hours without data for one node, between its first and last appearance."""

    node: str
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / SECONDS_PER_HOUR


@dataclass(frozen=True)
class Event:
    """Something that happened to a node: an exporter restart, an engine restart."""

    node: str
    hour: datetime  # start of the hour in which it was seen
    kind: str  # "exporter_restart" | "engine_restart"
    count: int = 1


@dataclass(frozen=True)
class Coverage:
    """How much of the period the data can see; totals cover only what it sees."""

    period_hours: float
    expected_node_hours: float  # each node from its first to its last hour with data
    covered_node_hours: float
    gaps: tuple[Gap, ...]
    nodes_joined: tuple[tuple[str, datetime], ...]  # first data after the period began
    nodes_left: tuple[tuple[str, datetime], ...]  # last data before the period ended
    unobserved_spend_estimate: float  # the gaps at each node's last known hourly cost
    source: str  # "recording rules" or "raw counters"

    @property
    def ratio(self) -> float:
        if self.expected_node_hours <= 0:
            return 0.0
        return self.covered_node_hours / self.expected_node_hours

    @property
    def missing_node_hours(self) -> float:
        return self.expected_node_hours - self.covered_node_hours


@dataclass(frozen=True)
class Totals:
    """Realized figures over the covered hours of a selection (fleet, node or model).

    API comparisons (``api_equivalent``, ``savings``, ``cost_ratio``) cover only
    models with an API price: ``priced_spend`` and ``priced_tokens`` are their
    share. They are None when no model in the selection has a price.
    """

    spend: float
    tokens: float
    covered_hours: float
    cost_per_million_tokens: float | None  # None without tokens
    api_equivalent: float | None
    api_equivalent_per_million_tokens: float | None
    priced_spend: float
    priced_tokens: float
    savings: float | None  # api_equivalent - priced_spend; negative is overspend
    cost_ratio: float | None  # priced_spend / api_equivalent; above 1 the API was cheaper
    average_hourly_cost: float | None
    utilization: float | None  # tokens over capacity x covered time; None without capacity
    hours_below_breakeven: int
    hours_compared: int  # covered hours with an API comparison

    @property
    def share_below_breakeven(self) -> float | None:
        return self.hours_below_breakeven / self.hours_compared if self.hours_compared else None


@dataclass(frozen=True)
class Row:
    """One node or one model in the breakdown tables."""

    name: str
    totals: Totals
    coverage: float | None = None  # nodes only
    first_seen: datetime | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True)
class Day:
    """One calendar day of the period (in the report's time zone)."""

    date: str  # YYYY-MM-DD
    spend: float
    tokens: float
    api_equivalent: float | None
    cost_per_million_tokens: float | None
    api_equivalent_per_million_tokens: float | None
    utilization: float | None
    covered_hours: float
    hours_below_breakeven: int


@dataclass(frozen=True)
class ProjectionComparison:
    """The plan the self-hosting decision was based on, against what happened.

    Planned figures are the ``llmcost_projected_*`` series as they stood during
    the period (averaged over the covered hours, summed over nodes), scaled to
    the covered hours so both sides describe the same time.
    """

    utilization: float | None
    tokens: float | None  # planned tokens for the covered hours
    cost_per_million_tokens: float | None
    hourly_cost: float | None  # implied by the plan: cost per 1M x planned token rate
    spend: float | None  # planned spend for the covered hours
    api_equivalent_per_million_tokens: float | None  # planned token mix at realized API prices
    token_mix: dict[str, float] = field(default_factory=dict)  # planned share by kind


@dataclass(frozen=True)
class VarianceLine:
    """One cause of the gap between planned and realized figures.

    ``per_million`` is its effect on cost per 1M tokens (or on savings per 1M,
    for the savings bridge); ``amount`` is that effect over the realized tokens.
    The lines of a bridge add up exactly to the gap.
    """

    key: str  # "utilization" | "hourly_cost" | "token_mix"
    label: str
    per_million: float
    amount: float


@dataclass(frozen=True)
class Variance:
    """Two bridges: planned to realized cost per 1M, and planned to realized savings per 1M."""

    cost_per_million: tuple[VarianceLine, ...]
    savings_per_million: tuple[VarianceLine, ...]
    planned_savings_per_million: float | None
    realized_savings_per_million: float | None


@dataclass(frozen=True)
class Report:
    """Everything a monthly review says."""

    title: str
    period_start: datetime
    period_end: datetime
    timezone: str
    generated_at: datetime
    prometheus_url: str  # without credentials
    selection: tuple[str, ...]  # the label matchers, as given
    currency: str
    coverage: Coverage
    totals: Totals
    spend_by_component: dict[str, float]  # empty when models are selected
    tokens_by_kind: dict[str, float]
    unpriced_models: tuple[str, ...]
    projection: ProjectionComparison | None
    variance: Variance | None
    hour_of_week_utilization: tuple[float | None, ...]  # 168 cells, Monday 00:00 first
    hour_of_week_tokens: tuple[float | None, ...]  # average tokens per hour, 168 cells
    peak_to_trough: float | None  # busiest over quietest hour of the week profile
    nodes: tuple[Row, ...]
    models: tuple[Row, ...]
    days: tuple[Day, ...]
    events: tuple[Event, ...]
    findings: tuple[str, ...]
    advice: Advice | None = None  # what would have been cheaper
    advice_missing: str = ""  # why there is no advice, when there is none
