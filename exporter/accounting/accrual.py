"""Cost accrual: the node's spend over wall time, by component and by owner.

Spend accrues whether or not tokens flow: idle GPUs cost money. Each cycle the
elapsed time is priced through the pure cost model and split among the GPUs'
owners (the models their engines serve, or (unclaimed) idle capacity); the
current hourly rate is computed the same way, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from llm_cost_exporter.accounting import costmodel
from llm_cost_exporter.accounting.costmodel import COST_COMPONENTS
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.config import CostConfig

GpuOwners = Mapping[str, tuple[str, ...]]
"""GPU key -> the owners its cost is split evenly among."""


class CostAccrual:
    """Running spend and the current hourly cost, per component and per owner."""

    def __init__(self, cost: CostConfig, fleet: GpuFleet) -> None:
        self.cost = cost
        self.fleet = fleet
        self.components = tuple(
            c for c in COST_COMPONENTS if c != "energy" or cost.owned is not None
        )
        self.spend = dict.fromkeys(self.components, 0.0)
        self.hourly = dict.fromkeys(self.components, 0.0)
        self.owner_spend: dict[str, float] = {}
        self.owner_hourly: dict[str, float] = {}

    @property
    def spend_total(self) -> float:
        return sum(self.spend.values())

    @property
    def hourly_total(self) -> float:
        return sum(self.hourly.values())

    def advance(self, seconds: float, gpu_owners: GpuOwners, idle_owners: Iterable[str]) -> None:
        """Accrue `seconds` of spend and recompute the hourly rate.

        `idle_owners` take the node's cost when it has no GPU to split it by.
        """
        idle = tuple(idle_owners)
        energy_spent, energy_hourly = self._energy_costs()
        for owner, parts in self._shares(seconds, energy_spent, gpu_owners, idle).items():
            for component in self.components:
                self.spend[component] += parts[component]
            self.owner_spend[owner] = self.owner_spend.get(owner, 0.0) + sum(parts.values())
        self.reprice(gpu_owners, idle, energy_hourly)

    def reprice(
        self,
        gpu_owners: GpuOwners,
        idle_owners: Iterable[str],
        energy_hourly: Mapping[str, float] | None = None,
    ) -> None:
        """Recompute the current hourly rate, energy at `energy_hourly` per GPU."""
        idle = tuple(idle_owners)
        self.hourly = dict.fromkeys(self.components, 0.0)
        self.owner_hourly = {}
        hourly = self._shares(costmodel.SECONDS_PER_HOUR, energy_hourly or {}, gpu_owners, idle)
        for owner, parts in hourly.items():
            for component in self.components:
                self.hourly[component] += parts[component]
            self.owner_hourly[owner] = sum(parts.values())

    def _shares(
        self,
        seconds: float,
        energy_by_gpu: Mapping[str, float],
        gpu_owners: GpuOwners,
        idle_owners: tuple[str, ...],
    ) -> dict[str, dict[str, float]]:
        """The node's cost over `seconds` by owner and component."""
        gpu_hourly: dict[str, float] = {}
        energy: dict[str, float] = {}
        for key, owners in gpu_owners.items():
            share = 1.0 / len(owners)
            for owner in owners:
                gpu_hourly[owner] = (
                    gpu_hourly.get(owner, 0.0) + self.fleet.gpus[key].gpu.hourly * share
                )
                energy[owner] = energy.get(owner, 0.0) + energy_by_gpu.get(key, 0.0) * share
        if not gpu_hourly:
            gpu_hourly = dict.fromkeys(idle_owners, 0.0)
        cost = self.cost
        return costmodel.allocate_cost(
            seconds,
            gpu_hourly,
            energy,
            cost.node_extra_per_hour,
            cost.overhead_ratio,
            cost.fixed_per_month,
        )

    def _energy_costs(self) -> tuple[dict[str, float], dict[str, float]]:
        """Energy cost per GPU since the last accrual, and its current hourly rate."""
        owned = self.cost.owned
        spent: dict[str, float] = {}
        hourly: dict[str, float] = {}
        for key, status in self.fleet.gpus.items():
            joules = status.take_unbilled_energy()
            if owned is None:
                continue
            spent[key] = costmodel.energy_cost(joules, owned.energy_price_per_kwh, owned.pue)
            power = status.reading.power_watts if status.reading is not None else None
            if power is not None and status.healthy:
                hourly[key] = costmodel.energy_cost(
                    power * costmodel.SECONDS_PER_HOUR, owned.energy_price_per_kwh, owned.pue
                )
        return spent, hourly
