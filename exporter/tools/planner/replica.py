"""A replica the user describes: GPUs, their price and what they serve.

The exporter's cost model applies: ``H = gpus x price x (1 + overhead) + fixed / 730``.
Without a description the planner's replica is one node as the exporter saw it.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_cost_exporter.accounting.costmodel import HOURS_PER_MONTH
from llm_cost_exporter.tools.report.units import display

DEFAULT_OVERHEAD = 0.3  # the exporter's default overhead ratio


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica: ``gpus`` GPUs named ``gpu`` at ``gpu_price`` an hour each."""

    gpu_price: float
    capacity: float  # tokens per second at 100% load
    gpus: int = 1
    gpu: str = "GPU"
    overhead: float = DEFAULT_OVERHEAD
    fixed_per_month: float = 0.0

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ValueError("--replica-gpus: must be 1 or more")
        if self.gpu_price < 0:
            raise ValueError("--replica-gpu-price: must be 0 or more")
        if not self.capacity > 0:
            raise ValueError("--capacity: must be a positive number of tokens per second")
        if self.overhead < 0:
            raise ValueError("--overhead: must be 0 or more")
        if self.fixed_per_month < 0:
            raise ValueError("--fixed-per-month: must be 0 or more")

    @property
    def hourly_cost(self) -> float:
        compute = self.gpus * self.gpu_price
        return compute * (1.0 + self.overhead) + self.fixed_per_month / HOURS_PER_MONTH

    def describe(self, currency: str) -> str:
        """``2 x L40S at $1.50/h each, 30% overhead``: what it is; its totals are shown apart."""
        each = " each" if self.gpus > 1 else ""
        price = display(self.gpu_price, "money", currency)
        parts = [f"{self.gpus} \u00d7 {self.gpu} at {price}/h{each}"]
        if self.overhead:
            parts.append(f"{self.overhead:.0%} overhead")
        if self.fixed_per_month:
            parts.append(f"{display(self.fixed_per_month, 'money', currency)} a month fixed")
        return ", ".join(parts)
