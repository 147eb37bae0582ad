"""Cost accrual: the node's spend over wall time, by component and by owner.

Spend accrues whether or not tokens flow: idle GPUs cost money. Each cycle the
elapsed time is priced through the pure cost model and split among the GPUs'
owners (the models their engines serve, or (unclaimed) idle capacity); the
current hourly rate is computed the same way, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_cost_exporter.accounting import costmodel, persisted
from llm_cost_exporter.accounting.costmodel import COST_COMPONENTS
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.config import CostConfig

GpuOwners = Mapping[str, tuple[str, ...]]
"""GPU key -> the owners its cost is split evenly among."""


@dataclass(frozen=True)
class Downtime:
    """When the exporter last saved its state, and the hourly rates it saw then: its
    downtime until the first cycle after a restart is billed at those rates."""

    saved_at: float
    hourly: Mapping[str, float]
    owner_hourly: Mapping[str, float]

    @property
    def hourly_total(self) -> float:
        return sum(self.hourly.values())


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

    def bill_downtime(
        self, seconds: float, hourly: Mapping[str, float], owner_hourly: Mapping[str, float]
    ) -> float:
        """Accrue `seconds` the exporter was down at the hourly rates it last saw; the cost.

        A component the node no longer has (energy after a switch to rented GPUs)
        is left out, and the owners' shares shrink with it, so per-owner spend
        still sums to the node's.
        """
        by_component = costmodel.downtime_cost(
            {c: rate for c, rate in hourly.items() if c in self.spend}, seconds
        )
        billed = sum(by_component.values())
        by_owner = costmodel.downtime_cost(owner_hourly, seconds)
        owners_total = sum(by_owner.values())
        scale = billed / owners_total if owners_total > 0 else 0.0
        for component, cost in by_component.items():
            self.spend[component] += cost
        for owner, cost in by_owner.items():
            self.owner_spend[owner] = self.owner_spend.get(owner, 0.0) + cost * scale
        return billed

    def to_state(self) -> dict[str, Any]:
        return {
            "spend": dict(self.spend),
            "owner_spend": dict(self.owner_spend),
            "hourly": dict(self.hourly),
            "owner_hourly": dict(self.owner_hourly),
        }

    def restore(self, data: Any) -> None:
        """Resume the spend of `to_state`'s output; nothing changes if it is malformed.

        A component the node no longer has is dropped (its series ends); the
        saved hourly rates are the caller's, to bill the downtime with.
        """
        spend = persisted.amounts(persisted.mapping(data).get("spend"), "spend")
        owner_spend = persisted.amounts(data.get("owner_spend"), "owner_spend")
        self.spend = {c: spend.get(c, 0.0) for c in self.components}
        self.owner_spend = owner_spend

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
