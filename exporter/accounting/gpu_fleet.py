"""The node's GPUs between cycles: what each costs, its last reading, its energy.

Billing follows the inventory, not the readings: a GPU that fails or falls
off the bus keeps its row and keeps being billed; it is only marked
unhealthy. Energy is kept as a monotonic counter across driver reloads, which
zero NVML's own counter, and across exporter restarts (the state file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_cost_exporter.accounting import persisted
from llm_cost_exporter.accounting.counters import RawCounter
from llm_cost_exporter.accounting.gpu_inventory import (
    BilledGpu,
    build_inventory,
    match_gpu_price_key,
)
from llm_cost_exporter.collectors.readings import GPU_ERROR_REASONS, GpuReading

log = logging.getLogger(__name__)


@dataclass
class GpuStatus:
    gpu: BilledGpu
    reading: GpuReading | None = None
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GPU_ERROR_REASONS, 0))
    energy_joules_total: float | None = None
    """Exported counter: NVML's value at first sight, then only increases."""
    energy_joules_unbilled: float = 0.0
    """Energy drawn since the last cost accrual."""
    _energy_raw: RawCounter = field(default_factory=RawCounter)
    _power_at: float | None = None

    @property
    def healthy(self) -> bool | None:
        """None while the GPU has never been read (declared, NVML unavailable)."""
        return None if self.reading is None else self.reading.healthy

    def observe(self, reading: GpuReading, now: float) -> None:
        self.reading = reading
        if reading.error:
            self.errors[reading.error] = self.errors.get(reading.error, 0) + 1
        if reading.energy_joules is not None:
            first = self._energy_raw.last is None
            added = self._energy_raw.increase(reading.energy_joules)
            if first:
                # NVML's value at first sight, unless resumed from the state file.
                if self.energy_joules_total is None:
                    self.energy_joules_total = reading.energy_joules
            else:
                self.energy_joules_total = (self.energy_joules_total or 0.0) + added
                self.energy_joules_unbilled += added
            self._power_at = now
        elif reading.power_watts is not None:
            # No energy counter on this GPU: integrate its power draw instead.
            if self._power_at is not None:
                added = reading.power_watts * max(now - self._power_at, 0.0)
                self.energy_joules_total = (self.energy_joules_total or 0.0) + added
                self.energy_joules_unbilled += added
            self._power_at = now
        elif reading.healthy:
            self._power_at = None

    def take_unbilled_energy(self) -> float:
        joules, self.energy_joules_unbilled = self.energy_joules_unbilled, 0.0
        return joules

    def to_state(self) -> dict[str, Any]:
        return {"errors": dict(self.errors), "energy_joules_total": self.energy_joules_total}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Resume the exported counters; NVML's next reading is a new energy baseline
        (the downtime's energy is billed at the last hourly rate instead)."""
        for reason, count in data["errors"].items():
            self.errors[reason] = count
        self.energy_joules_total = data["energy_joules_total"]


def parse_gpu_state(data: Any) -> dict[str, dict[str, Any]]:
    """Validated `GpuFleet.to_state` output, by GPU key."""
    parsed = {}
    for key, entry in persisted.mapping(data).items():
        where = f"gpus.{persisted.text(key, 'gpus')}"
        errors = persisted.amounts(persisted.mapping(entry).get("errors"), f"{where}.errors")
        parsed[key] = {
            "errors": {reason: persisted.whole(count, where) for reason, count in errors.items()},
            "energy_joules_total": persisted.optional_amount(
                entry.get("energy_joules_total"), f"{where}.energy_joules_total"
            ),
        }
    return parsed


class GpuFleet:
    """Every GPU the node pays for, keyed like the inventory (UUID for NVML GPUs)."""

    def __init__(
        self,
        inventory: Iterable[BilledGpu],
        hourly_by_key: Mapping[str, float],
        declared: Iterable[tuple[str, int]],
    ) -> None:
        self.gpus: dict[str, GpuStatus] = {g.key: GpuStatus(g) for g in inventory}
        self._hourly_by_key = dict(hourly_by_key)
        self._declared = list(declared)
        self.unpriced: dict[str, GpuReading] = {}
        """GPUs NVML listed after start whose model has no price."""
        self._resumed: dict[str, dict[str, Any]] = {}
        """Saved counters of GPUs not billed yet, applied when NVML lists them."""

    def to_state(self) -> dict[str, Any]:
        saved = {key: dict(entry) for key, entry in self._resumed.items()}
        saved.update({key: status.to_state() for key, status in self.gpus.items()})
        return saved

    def restore(self, parsed: Mapping[str, dict[str, Any]]) -> None:
        """Resume the counters of `parse_gpu_state`'s output, now or when the GPU appears."""
        self._resumed = dict(parsed)
        for key, status in self.gpus.items():
            self._resume(key, status)

    def _resume(self, key: str, status: GpuStatus) -> GpuStatus:
        saved = self._resumed.pop(key, None)
        if saved is not None:
            status.restore(saved)
        return status

    def observe(self, readings: Iterable[GpuReading], now: float) -> bool:
        """Record one NVML snapshot; True if the inventory changed."""
        changed = False
        for reading in readings:
            status = self.gpus.get(reading.uuid)
            if status is None:
                changed |= self._add(reading)
                status = self.gpus.get(reading.uuid)
                if status is None:
                    continue
            status.observe(reading, now)
        return changed

    def _add(self, reading: GpuReading) -> bool:
        """A GPU NVML lists that we do not bill yet (NVML appeared after start)."""
        if match_gpu_price_key(reading.name, self._hourly_by_key) is None:
            if reading.uuid not in self.unpriced:
                log.error(
                    "GPU %d (%s) is a %r and no price key matches it: it is not billed; "
                    "add its model to the GPU prices",
                    reading.index,
                    reading.uuid,
                    reading.name,
                )
            self.unpriced[reading.uuid] = reading
            return False
        known = [
            (s.gpu.index, s.gpu.uuid, s.gpu.name)
            for s in self.gpus.values()
            if s.gpu.source == "nvml"
        ]
        inventory = build_inventory(
            [*known, (reading.index, reading.uuid, reading.name)],
            self._declared,
            self._hourly_by_key,
            nvml_available=True,
        )
        previous = self.gpus
        self.gpus = {
            g.key: previous.get(g.key) or self._resume(g.key, GpuStatus(g)) for g in inventory
        }
        log.info(
            "now billing GPU %d (%s, %s) seen through NVML",
            reading.index,
            reading.uuid,
            reading.name,
        )
        return True

    def inventory(self) -> list[BilledGpu]:
        return [s.gpu for s in self.gpus.values()]
