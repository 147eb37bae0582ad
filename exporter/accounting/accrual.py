"""Cost accrual: the node's spend over wall time, by component, by owner and by pod.

Spend accrues whether or not tokens flow: idle GPUs cost money. Each cycle the
elapsed time is priced through the pure cost model and split among the GPUs'
owners (the models their engines serve, or (unclaimed) idle capacity); the
current hourly rate is computed the same way, so the two always agree.

Where the kubelet says which pods hold the GPUs, each owner's share of a GPU is
split further among those pods, and the one split runs over (model, pod) pairs:
a model's spend is the sum of its pairs', so its pods' spend adds up to it.
Without pods the pairs are (model, None), and the split is the per-model one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_cost_exporter.accounting import costmodel, persisted
from llm_cost_exporter.accounting.costmodel import COST_COMPONENTS
from llm_cost_exporter.accounting.gpu_fleet import GpuFleet
from llm_cost_exporter.accounting.pod_attribution import UNALLOCATED_POD
from llm_cost_exporter.config import CostConfig

GpuOwners = Mapping[str, tuple[str, ...]]
"""GPU key -> the owners its cost is split evenly among."""
PodShares = Mapping[str, Mapping[tuple[str, str], float]]
"""GPU key -> the pods (namespace, pod) holding it and each one's share (summing to 1)."""
PodOwner = tuple[str, str, str]
"""(model, namespace, pod): an owner's spend on the GPUs one pod holds."""
PodOwners = Mapping[str, Mapping[tuple[str, str], tuple[str, ...]]]
"""GPU key -> each pod holding it -> the owners that pod's part is split evenly among:
for a GPU whose owners are known by pod (an engine pod holds it), instead of GpuOwners'."""
_NO_POD = {None: 1.0}


@dataclass(frozen=True)
class Downtime:
    """When the exporter last saved its state, and the hourly rates it saw then: its
    downtime until the first cycle after a restart is billed at those rates."""

    saved_at: float
    hourly: Mapping[str, float]
    owner_hourly: Mapping[str, float]
    pod_hourly: Mapping[PodOwner, float] = field(default_factory=dict)

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
        self.pod_spend: dict[PodOwner, float] = {}
        self.pod_hourly: dict[PodOwner, float] = {}
        """Owners' spend and hourly cost by pod: empty while no pod holds GPUs."""

    @property
    def spend_total(self) -> float:
        return sum(self.spend.values())

    @property
    def hourly_total(self) -> float:
        return sum(self.hourly.values())

    def advance(
        self,
        seconds: float,
        gpu_owners: GpuOwners,
        idle_owners: Iterable[str],
        pods: PodShares | None = None,
        pod_owners: PodOwners | None = None,
    ) -> None:
        """Accrue `seconds` of spend and recompute the hourly rate.

        `idle_owners` take the node's cost when it has no GPU to split it by.
        `pods` splits each GPU's cost among the pods holding it (a GPU it leaves out
        is (unallocated)); None where nothing says which pods hold the GPUs.
        `pod_owners` names the owners of each pod's part of the GPUs it covers.
        """
        idle = tuple(idle_owners)
        energy_spent, energy_hourly = self._energy_costs()
        shares = self._shares(seconds, energy_spent, gpu_owners, idle, pods, pod_owners)
        for (owner, pod), parts in shares.items():
            for component in self.components:
                self.spend[component] += parts[component]
            cost = sum(parts.values())
            self.owner_spend[owner] = self.owner_spend.get(owner, 0.0) + cost
            if pod is not None:
                key = (owner, *pod)
                self.pod_spend[key] = self.pod_spend.get(key, 0.0) + cost
        self.reprice(gpu_owners, idle, energy_hourly, pods, pod_owners)

    def reprice(
        self,
        gpu_owners: GpuOwners,
        idle_owners: Iterable[str],
        energy_hourly: Mapping[str, float] | None = None,
        pods: PodShares | None = None,
        pod_owners: PodOwners | None = None,
    ) -> None:
        """Recompute the current hourly rate, energy at `energy_hourly` per GPU."""
        idle = tuple(idle_owners)
        self.hourly = dict.fromkeys(self.components, 0.0)
        self.owner_hourly = {}
        self.pod_hourly = {}
        hourly = self._shares(
            costmodel.SECONDS_PER_HOUR, energy_hourly or {}, gpu_owners, idle, pods, pod_owners
        )
        for (owner, pod), parts in hourly.items():
            for component in self.components:
                self.hourly[component] += parts[component]
            cost = sum(parts.values())
            self.owner_hourly[owner] = self.owner_hourly.get(owner, 0.0) + cost
            if pod is not None:
                key = (owner, *pod)
                self.pod_hourly[key] = self.pod_hourly.get(key, 0.0) + cost

    def forget_pods(self, owners: Iterable[PodOwner]) -> None:
        """Stop keeping the spend of pods gone for good (their series end)."""
        for owner in owners:
            self.pod_spend.pop(owner, None)

    def bill_downtime(
        self,
        seconds: float,
        hourly: Mapping[str, float],
        owner_hourly: Mapping[str, float],
        pod_hourly: Mapping[PodOwner, float] | None = None,
    ) -> float:
        """Accrue `seconds` the exporter was down at the hourly rates it last saw; the cost.

        A component the node no longer has (energy after a switch to rented GPUs)
        is left out, and the owners' shares shrink with it, so per-owner spend
        still sums to the node's; the pods' shares shrink alike.
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
        for pod, cost in costmodel.downtime_cost(pod_hourly or {}, seconds).items():
            self.pod_spend[pod] = self.pod_spend.get(pod, 0.0) + cost * scale
        return billed

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "spend": dict(self.spend),
            "owner_spend": dict(self.owner_spend),
            "hourly": dict(self.hourly),
            "owner_hourly": dict(self.owner_hourly),
        }
        if self.pod_spend or self.pod_hourly:
            state["pod_spend"] = _pod_amounts(self.pod_spend)
            state["pod_hourly"] = _pod_amounts(self.pod_hourly)
        return state

    def restore(self, data: Any) -> None:
        """Resume the spend of `to_state`'s output; nothing changes if it is malformed.

        A component the node no longer has is dropped (its series ends); the
        saved hourly rates are the caller's, to bill the downtime with.
        """
        spend = persisted.amounts(persisted.mapping(data).get("spend"), "spend")
        owner_spend = persisted.amounts(data.get("owner_spend"), "owner_spend")
        pod_spend = parse_pod_amounts(data.get("pod_spend", []), "pod_spend")
        self.spend = {c: spend.get(c, 0.0) for c in self.components}
        self.owner_spend = owner_spend
        self.pod_spend = pod_spend

    def _shares(
        self,
        seconds: float,
        energy_by_gpu: Mapping[str, float],
        gpu_owners: GpuOwners,
        idle_owners: tuple[str, ...],
        pods: PodShares | None,
        pod_owners: PodOwners | None = None,
    ) -> dict[tuple[str, tuple[str, str] | None], dict[str, float]]:
        """The node's cost over `seconds` by (owner, pod) and component; pod None
        where nothing says which pods hold the GPUs."""
        gpu_hourly: dict[tuple[str, tuple[str, str] | None], float] = {}
        energy: dict[tuple[str, tuple[str, str] | None], float] = {}
        unallocated = {UNALLOCATED_POD: 1.0}
        for key, owners in gpu_owners.items():
            held = _NO_POD if pods is None else pods.get(key, unallocated)
            by_pod = (pod_owners or {}).get(key)
            for pod, pod_share in held.items():
                pod_part = owners if by_pod is None or pod is None else by_pod[pod]
                share = 1.0 / len(pod_part)
                for owner in pod_part:
                    pair = (owner, pod)
                    gpu_hourly[pair] = (
                        gpu_hourly.get(pair, 0.0)
                        + self.fleet.gpus[key].gpu.hourly * share * pod_share
                    )
                    energy[pair] = (
                        energy.get(pair, 0.0) + energy_by_gpu.get(key, 0.0) * share * pod_share
                    )
        if not gpu_hourly:
            idle_pod = None if pods is None else UNALLOCATED_POD
            gpu_hourly = {(owner, idle_pod): 0.0 for owner in idle_owners}
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


def _pod_amounts(amounts: Mapping[PodOwner, float]) -> list[dict[str, Any]]:
    return [
        {"model": model, "namespace": namespace, "pod": pod, "amount": amount}
        for (model, namespace, pod), amount in amounts.items()
    ]


def parse_pod_amounts(data: Any, where: str) -> dict[PodOwner, float]:
    """`_pod_amounts`' output read back (absent from state files of earlier versions)."""
    if not isinstance(data, list):
        raise persisted.StateError(f"{where}: expected a list")
    parsed = {}
    for entry in data:
        entry = persisted.mapping(entry)
        model, namespace, pod = (
            persisted.text(entry.get(k), f"{where}.{k}") for k in ("model", "namespace", "pod")
        )
        parsed[(model, namespace, pod)] = persisted.amount(entry.get("amount"), f"{where}.amount")
    return parsed
