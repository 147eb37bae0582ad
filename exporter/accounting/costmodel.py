"""The cost model: pure functions of prices, token counts and elapsed time.

No I/O and no clock: every figure the exporter shows is one of these
functions applied to counter deltas, so the money math can be tested against
hand calculations and published figures on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MILLION = 1_000_000
SECONDS_PER_HOUR = 3600.0
HOURS_PER_MONTH = 730.0

TOKEN_KINDS = ("prompt", "cached_prompt", "generation")
"""Disjoint kinds: `prompt` is prompt tokens computed (not served from the
prefix cache), `cached_prompt` those served from it. Their sum with
`generation` is every token the node served."""

COST_COMPONENTS = ("gpu", "energy", "node_extra", "overhead", "fixed")
"""`gpu` is rental or amortized purchase; `energy` is metered, owned hardware only."""

JOULES_PER_KWH = 3_600_000.0


@dataclass(frozen=True)
class ApiPrices:
    """What the API the team would otherwise use charges, per 1M tokens."""

    input: float
    cached_input: float
    output: float

    def for_kind(self, kind: str) -> float:
        return {"prompt": self.input, "cached_prompt": self.cached_input}.get(kind, self.output)


def amortized_hourly_cost(purchase_price: float, months: float) -> float:
    """A bought GPU's cost per hour: its price spread evenly over its service life."""
    return purchase_price / (months * HOURS_PER_MONTH)


def energy_cost(joules: float, price_per_kwh: float, pue: float) -> float:
    """Electricity for `joules` drawn by the GPUs, with the facility's PUE on top."""
    return joules / JOULES_PER_KWH * price_per_kwh * pue


def allocate_cost(
    seconds: float,
    gpu_hourly_by_owner: Mapping[str, float],
    energy_cost_by_owner: Mapping[str, float],
    node_extra_per_hour: float,
    overhead_ratio: float,
    fixed_per_month: float,
) -> dict[str, dict[str, float]]:
    """Split one period's node cost by owner (a served model, or idle capacity).

    Each owner pays for its own GPUs and their energy; the node's shared costs
    (extra node cost, fixed monthly cost) are split in proportion to the GPU
    cost each owner holds, evenly if no owner holds any; overhead is the ratio
    on each owner's compute cost. Summed over owners this is exactly the
    node's H = H_c·(1+o) + F/730 for the period, so per-model spend adds up
    to the node's.
    """
    owners = list(gpu_hourly_by_owner)
    total_weight = sum(gpu_hourly_by_owner.values())
    result = {}
    for owner in owners:
        share = gpu_hourly_by_owner[owner] / total_weight if total_weight > 0 else 1.0 / len(owners)
        gpu = accrued_cost(gpu_hourly_by_owner[owner], seconds)
        energy = energy_cost_by_owner.get(owner, 0.0)
        node_extra = accrued_cost(node_extra_per_hour, seconds) * share
        result[owner] = {
            "gpu": gpu,
            "energy": energy,
            "node_extra": node_extra,
            "overhead": (gpu + energy + node_extra) * overhead_ratio,
            "fixed": accrued_cost(fixed_per_month / HOURS_PER_MONTH, seconds) * share,
        }
    return result


def accrued_cost(hourly_cost: float, seconds: float) -> float:
    """Spend over wall time: idle GPUs cost the same as busy ones."""
    return hourly_cost * seconds / SECONDS_PER_HOUR


def downtime_seconds(saved_at: float, now: float, max_gap: float) -> float:
    """Seconds of downtime to bill: from the last save to now, at most `max_gap`, and
    nothing when the clock went back."""
    return min(max(now - saved_at, 0.0), max_gap)


def downtime_cost(hourly: Mapping[str, float], seconds: float) -> dict[str, float]:
    """The cost of `seconds` of downtime at each of the hourly rates last seen."""
    return {key: accrued_cost(rate, seconds) for key, rate in hourly.items()}


def api_equivalent_cost(tokens_by_kind: Mapping[str, float], prices: ApiPrices) -> float:
    """What the same tokens would have cost on the API."""
    return sum(count * prices.for_kind(kind) for kind, count in tokens_by_kind.items()) / MILLION


def cost_per_million(cost: float, tokens: float) -> float:
    """Cost per 1M tokens; +Inf when money was spent and no token was served."""
    if tokens > 0:
        return cost / tokens * MILLION
    return math.inf if cost > 0 else math.nan


def cost_ratio(spend: float, api_equivalent: float) -> float:
    """Self-hosted spend over API-equivalent cost: below 1 self-hosting wins."""
    if api_equivalent > 0:
        return spend / api_equivalent
    return math.inf if spend > 0 else math.nan


def throughput_utilization(
    tokens: float, seconds: float, capacity_tokens_per_second: float
) -> float:
    """Tokens served per second against what the node serves at 100% load."""
    if seconds <= 0 or capacity_tokens_per_second <= 0:
        return math.nan
    return tokens / seconds / capacity_tokens_per_second


def breakeven_utilization(
    hourly_cost: float, capacity_tokens_per_second: float, api_cost_per_million: float
) -> float:
    """Utilization at which the node's spend equals the API bill for the same traffic.

    Spend is fixed per hour while the API bill scales with traffic, so
    u* = H / (capacity·3600·p̄/1e6) where p̄ is the blended API price of the
    observed token mix. This equals u × cost ratio for any window with
    traffic, and stays defined for a window without any. Above 1 the node
    can never beat the API.
    """
    api_per_hour_at_full_load = (
        capacity_tokens_per_second * SECONDS_PER_HOUR * api_cost_per_million / MILLION
    )
    if api_per_hour_at_full_load <= 0:
        return math.inf if hourly_cost > 0 else math.nan
    return hourly_cost / api_per_hour_at_full_load


def cost_per_million_at_utilization(
    hourly_cost: float, capacity_tokens_per_second: float, utilization: float
) -> float:
    """Cost per 1M tokens if the node ran at `utilization` of its capacity."""
    tokens_per_hour = capacity_tokens_per_second * utilization * SECONDS_PER_HOUR
    return cost_per_million(hourly_cost, tokens_per_hour)
