"""The live figures over a window, from the change of running totals.

The same computation serves the node and each model, so a model's break-even
means exactly what the node's does.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.history import Totals


@dataclass(frozen=True)
class WindowFigures:
    """The live figures over one window, all from counter deltas."""

    seconds: float
    tokens_per_second: float
    effective_cost_per_million: float
    energy_cost_per_million: float
    api_cost_per_million: float | None
    cost_ratio: float | None
    utilization: float | None
    breakeven_utilization: float | None


def window_figures(
    delta: Totals,
    capacity_tokens_per_second: float | None,
    fallback_api_cost_per_million: float | None,
) -> WindowFigures | None:
    """Figures for the change `delta` over a window.

    A window without traffic takes `fallback_api_cost_per_million` (the token
    mix seen so far) for its break-even, which is then defined even though
    its cost per 1M is +Inf. Break-even uses the window's own average hourly
    spend, so metered energy counts in it.
    """
    if delta.time <= 0:
        return None
    priced = delta.unpriced_tokens == 0
    if delta.tokens > 0:
        api_per_million = delta.api_equivalent / delta.tokens * costmodel.MILLION
    else:
        api_per_million = fallback_api_cost_per_million
    utilization = breakeven = None
    if capacity_tokens_per_second:
        utilization = costmodel.throughput_utilization(
            delta.tokens, delta.time, capacity_tokens_per_second
        )
        if priced and api_per_million is not None:
            hourly = delta.spend / delta.time * costmodel.SECONDS_PER_HOUR
            breakeven = costmodel.breakeven_utilization(
                hourly, capacity_tokens_per_second, api_per_million
            )
    return WindowFigures(
        seconds=delta.time,
        tokens_per_second=delta.tokens / delta.time,
        effective_cost_per_million=costmodel.cost_per_million(delta.spend, delta.tokens),
        energy_cost_per_million=costmodel.cost_per_million(delta.energy_spend, delta.tokens),
        api_cost_per_million=api_per_million if priced else None,
        cost_ratio=costmodel.cost_ratio(delta.spend, delta.api_equivalent) if priced else None,
        utilization=utilization,
        breakeven_utilization=breakeven,
    )


def blended_api_cost_per_million(totals: Totals | None) -> float | None:
    """API price per 1M of all traffic seen, for windows without any."""
    if totals is None or totals.tokens <= 0 or totals.unpriced_tokens > 0:
        return None
    return totals.api_equivalent / totals.tokens * costmodel.MILLION
