"""Why realized cost differs from plan: two bridges whose lines add up exactly.

Self-hosted spend is paid by the hour, so cost per 1M tokens is the hourly
cost divided by the token rate. Changing one factor at a time from plan to
realized splits the gap: first the volume (utilization below or above plan,
at the plan's hourly cost), then the hourly cost itself (GPU prices,
overhead, fixed costs). The API-equivalent side moves only with the token
mix, priced at the realized API prices. Pure functions.
"""

from __future__ import annotations

from llm_cost_exporter.accounting.costmodel import MILLION
from llm_cost_exporter.tools.report.model import VarianceLine


def cost_bridge(
    planned_cost_per_million: float,
    planned_spend: float,
    realized_spend: float,
    realized_tokens: float,
) -> tuple[VarianceLine, ...]:
    """Planned to realized cost per 1M: utilization first, then hourly cost.

    ``planned_spend`` is what the plan's hourly cost comes to over the hours
    the realized figures cover.
    """
    if realized_tokens <= 0:
        return ()
    at_plan_hourly_cost = planned_spend / realized_tokens * MILLION
    realized = realized_spend / realized_tokens * MILLION
    utilization = at_plan_hourly_cost - planned_cost_per_million
    hourly = realized - at_plan_hourly_cost
    return (
        _line(
            "utilization",
            "Utilization below plan" if utilization >= 0 else "Utilization above plan",
            utilization,
            realized_tokens,
        ),
        _line(
            "hourly_cost",
            "Hourly cost above plan (GPU prices, overhead, fixed costs)"
            if hourly >= 0
            else "Hourly cost below plan (GPU prices, overhead, fixed costs)",
            hourly,
            realized_tokens,
        ),
    )


def savings_bridge(
    cost_lines: tuple[VarianceLine, ...],
    planned_api_per_million: float,
    realized_api_per_million: float,
    realized_tokens: float,
) -> tuple[VarianceLine, ...]:
    """Planned to realized savings per 1M: the cost lines with their sign turned, plus mix."""
    turned = tuple(
        _line(line.key, line.label, -line.per_million, realized_tokens) for line in cost_lines
    )
    mix = realized_api_per_million - planned_api_per_million
    return (
        *turned,
        _line(
            "token_mix",
            "Token mix worth more on the API than planned"
            if mix >= 0
            else "Token mix worth less on the API than planned",
            mix,
            realized_tokens,
        ),
    )


def _line(key: str, label: str, per_million: float, tokens: float) -> VarianceLine:
    return VarianceLine(key, label, per_million, per_million * tokens / MILLION)
