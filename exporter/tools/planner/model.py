"""What the planner reads and what it says, as plain data.

A :class:`Traffic` is the period hour by hour: the tokens served, what the API
would have charged for them, what each hour really cost and how many replicas
ran it. A *replica* is the unit that scales: by default one node as the
exporter saw it (its GPUs plus its shares of node, overhead and fixed costs),
or whatever GPU, count and price the user describes. An :class:`Advice` is
every policy costed over those same hours; the review, ``plan`` and their
writers all render it, so their figures cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from llm_cost_exporter.accounting.costmodel import MILLION, SECONDS_PER_HOUR

AS_RUN = "as_run"
ALL_API = "all_api"
FIXED = "fixed"
SCHEDULED = "scheduled"
HYBRID = "hybrid"
HYBRID_SCHEDULE = "hybrid_schedule"
POLICIES = (AS_RUN, ALL_API, FIXED, SCHEDULED, HYBRID, HYBRID_SCHEDULE)
# Which policy wins a tie to the cent: the one that changes least, then the one an
# operator can configure (a schedule) over the per-hour optimum nobody can run ahead.
PREFERENCE = (AS_RUN, ALL_API, FIXED, SCHEDULED, HYBRID_SCHEDULE, HYBRID)


@dataclass(frozen=True)
class Hour:
    """One hour of the period: its traffic, its API price and what it really cost."""

    start: datetime  # in the zone hours of the week are read in
    tokens: float  # every token served; capacity is measured in the same tokens
    api_cost: float  # those tokens at the API's prices
    replica_cost: float  # the hourly cost of one replica in this hour
    spend: float  # what the hour really cost (the API bill for a team on the API)
    replicas: float = 0.0  # replicas that ran it; 0 for a team on the API
    capacity_tokens: float = 0.0  # what those replicas could serve in the hour at 100% load
    tokens_by_kind: Mapping[str, float] = field(default_factory=dict)

    @property
    def api_price_per_token(self) -> float:
        """The blended API price of this hour's token mix (0 for an hour without tokens)."""
        return self.api_cost / self.tokens if self.tokens > 0 else 0.0


@dataclass(frozen=True)
class Traffic:
    """A period's hours, with the replica every policy is built from."""

    hours: tuple[Hour, ...]
    capacity: float  # tokens per second one replica serves at 100% load
    replica: str  # what one replica is, in words
    currency: str
    source: str  # where the hours come from, in words
    on_api: bool = False  # as run means on the API: the team has not self-hosted yet
    tokens_by_model: Mapping[str, float] = field(default_factory=dict)
    zone: str = ""  # the time zone the hours of the week are read in, e.g. Europe/Berlin

    @property
    def tokens(self) -> float:
        return math.fsum(h.tokens for h in self.hours)


@dataclass(frozen=True)
class Knobs:
    """The operator's choices every policy is built with."""

    ceiling: float = 0.8  # highest planned utilization of a kept replica: latency headroom
    floor: int = 1  # replicas always kept by the self-hosted policies
    min_run: int = 3  # hours a scheduled scale step lasts at least


@dataclass(frozen=True)
class Outcome:
    """One policy, costed over every hour of the period."""

    key: str
    name: str
    summary: str  # what the policy does, in words an operator configures
    cost: float
    tokens: float
    self_hosted_tokens: float
    replica_hours: float
    capacity_tokens: float  # what the kept replicas could serve at 100% load
    hours_below_breakeven: int | None  # hours whose kept replicas cost more than the API
    hours_self_hosted: int  # hours with a replica kept
    replicas_by_hour_of_week: tuple[float | None, ...]  # average replicas kept, Monday 00:00 first

    @property
    def cost_per_million_tokens(self) -> float | None:
        return self.cost / self.tokens * MILLION if self.tokens > 0 else None

    @property
    def self_hosted_share(self) -> float | None:
        return self.self_hosted_tokens / self.tokens if self.tokens > 0 else None

    @property
    def utilization(self) -> float | None:
        """Self-hosted tokens over what the kept replicas could serve: None when none is kept."""
        return self.self_hosted_tokens / self.capacity_tokens if self.capacity_tokens > 0 else None


@dataclass(frozen=True)
class Sensitivity:
    """Every policy's cost again with one assumption moved."""

    key: str  # "capacity" | "ceiling"
    label: str  # "capacity -20%", "ceiling 0.6"
    capacity: float
    ceiling: float
    costs: Mapping[str, float]
    cheapest: str


@dataclass(frozen=True)
class ReplicaEconomics:
    """What one replica costs per 1M tokens at a few loads, and where it beats the API."""

    hourly_cost: float  # averaged over the period's hours
    capacity: float
    cost_per_million_by_load: tuple[tuple[float, float], ...]  # (load, cost per 1M)
    api_per_million: float | None  # the period's blended API price
    breakeven_utilization: float | None  # above 1: a replica can never beat the API


@dataclass(frozen=True)
class Advice:
    """What would have been cheaper: every policy over the same hours, and how sure it is."""

    knobs: Knobs
    currency: str
    source: str
    replica: str
    capacity: float
    hours: int
    tokens: float
    fleet_size: int  # the right-sized fixed fleet: what the hybrid policies keep at most
    outcomes: tuple[Outcome, ...]  # in POLICIES order
    economics: ReplicaEconomics
    sensitivity: tuple[Sensitivity, ...]
    week_tokens: tuple[float | None, ...]  # average tokens per hour of the week
    scheduled_replicas: tuple[int, ...]  # the scheduled scaling policy's week, Monday 00:00 first
    hybrid_schedule_replicas: tuple[int, ...]  # the operator's hybrid schedule, the same way
    on_api: bool = False
    zone: str = ""  # the time zone of the week's hours (the traffic's)

    def outcome(self, key: str) -> Outcome:
        return next(o for o in self.outcomes if o.key == key)

    @property
    def cheapest(self) -> Outcome:
        return cheapest_of(self.outcomes)

    def saving_against(self, key: str, outcome: Outcome) -> float:
        """How much ``outcome`` would have saved against policy ``key`` (negative: cost more)."""
        return self.outcome(key).cost - outcome.cost


def cheapest_of(outcomes: tuple[Outcome, ...]) -> Outcome:
    """The cheapest policy to the cent; ties go by :data:`PREFERENCE`."""
    return min(outcomes, key=lambda o: (round(o.cost, 2), PREFERENCE.index(o.key)))


def replica_hours_capacity(replicas: float, capacity: float) -> float:
    """Tokens ``replicas`` replicas serve in an hour at 100% load."""
    return replicas * capacity * SECONDS_PER_HOUR
