"""Which unit each measure is rounded and shown in, shared by every output.

The HTML marks its figures with ``data-figure="<section>.<item>.<measure>"``
and the CSV and JSON writers name their columns by measure; looking the unit
up here keeps all three rounding the same figure the same way.
"""

from __future__ import annotations

from llm_cost_exporter.tools.planner.model import POLICIES
from llm_cost_exporter.tools.report.units import Unit

MEASURE_UNITS: dict[str, Unit] = {
    "spend": "money",
    "priced_spend": "money",
    "api_equivalent": "money",
    "savings": "money",
    "average_hourly_cost": "money",
    "hourly_cost": "money",
    "unobserved_spend_estimate": "money",
    "amount": "money",
    "cost_per_million_tokens": "money_per_million",
    "api_equivalent_per_million_tokens": "money_per_million",
    "savings_per_million_tokens": "money_per_million",
    "per_million": "money_per_million",
    "tokens": "tokens",
    "priced_tokens": "tokens",
    "utilization": "ratio",
    "ratio": "ratio",
    "coverage": "ratio",
    "share_below_breakeven": "ratio",
    "token_share": "ratio",
    "cost_ratio": "factor",
    "peak_to_trough": "factor",
    "covered_hours": "hours",
    "missing_node_hours": "hours",
    "period_hours": "hours",
    "expected_node_hours": "hours",
    "covered_node_hours": "hours",
    "hours_below_breakeven": "count",
    "hours_compared": "count",
    "count": "count",
    # The advice: what each policy would have cost, and what it assumes.
    "cost": "money",
    "saving_vs_as_run": "money",
    "saving_vs_all_api": "money",
    "self_hosted_share": "ratio",
    "replica_hours": "hours",
    "capacity": "tokens",  # tokens per second one replica serves at 100% load
    "ceiling": "ratio",
    "floor": "count",
    "min_run": "hours",
    "fleet_size": "count",
    "breakeven_utilization": "ratio",
    "scheduled_replicas": "count",
    "hybrid_schedule_replicas": "count",
    **{f"{policy}_cost": "money" for policy in POLICIES},
}

# Measures whose unit reads differently from their unit's usual label.
MEASURE_LABELS: dict[str, str] = {"capacity": "tokens per second"}


def unit_of(measure: str) -> Unit:
    """The unit of a measure; an unknown measure is a bug, so it fails loudly."""
    try:
        return MEASURE_UNITS[measure]
    except KeyError:
        raise KeyError(f"no unit defined for measure {measure!r}") from None
