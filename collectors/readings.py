"""What collectors hand to the accounting: engine readings and GPU snapshots.

Every engine collector returns EngineReadings, whatever the engine calls its
counters; every GPU collector returns a GpuSnapshot. None means a value the
source does not give or could not be read, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class EngineReading:
    """One engine process (one data-parallel rank) serving one model, as read from it."""

    model: str
    engine: str
    prompt_tokens: float
    """All prompt tokens this engine served, those from its prefix cache included (a
    counter, as every token count here)."""
    cached_prompt_tokens: float
    generation_tokens: float
    running: float | None
    waiting: float | None
    kv_usage_ratio: float | None
    kv_capacity_tokens: float | None
    kv_tokens: float | None
    started_at: float | None
    """The counters' `_created` time; it changes when the engine restarts."""
    requests: float | None = None
    """Requests the engine finished (a counter), where it counts them. Only the token
    counters decide whether the engine restarted; this one follows their verdict."""
    preemptions: float | None = None
    """Requests preempted and later recomputed (a counter): work done twice."""
    transferred_prompt_tokens: float | None = None
    """Prompt tokens whose KV cache arrived from another engine (disaggregated prefill:
    a prefill engine computed them and sent their KV here), a raw counter. They are
    included in prompt_tokens and cached_prompt_tokens as the engine counts them; the
    accounting takes them out of both, since they were computed, and are counted and
    priced, on the prefill engine. The engine may count them at a different moment
    than its prompt tokens (vLLM: at admission, before the prefill), so this counter
    may briefly run ahead of them."""

    def __init__(
        self,
        model: str,
        engine: str,
        prompt_tokens: float,
        cached_prompt_tokens: float,
        generation_tokens: float,
        running: float | None,
        waiting: float | None,
        kv_usage_ratio: float | None,
        kv_capacity_tokens: float | None,
        kv_tokens: float | None,
        started_at: float | None,
        requests: float | None = None,
        preemptions: float | None = None,
        transferred_prompt_tokens: float | None = None,
    ) -> None:
        # The fields in one step: the generated frozen __init__ sets them one call at a
        # time, a tenth of parsing a small engine page. Same fields, order and defaults.
        self.__dict__.update(
            model=model,
            engine=engine,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached_prompt_tokens,
            generation_tokens=generation_tokens,
            running=running,
            waiting=waiting,
            kv_usage_ratio=kv_usage_ratio,
            kv_capacity_tokens=kv_capacity_tokens,
            kv_tokens=kv_tokens,
            started_at=started_at,
            requests=requests,
            preemptions=preemptions,
            transferred_prompt_tokens=transferred_prompt_tokens,
        )


REJECT_REASONS = ("non_finite", "negative", "out_of_range", "malformed", "duplicate")
"""Why a series of an otherwise sound page was left out: a value that is NaN or
infinite, below zero, beyond what the quantity can be (a count above 2**53, a
ratio above 1), a number label that is not a number, or a repeat of an earlier
series."""
_REJECT_REASONS = frozenset(REJECT_REASONS)


class EngineReadings(list[EngineReading]):
    """One collect's readings, and the series of the page that were left out of them.

    A series whose value cannot be used is rejected alone: a gauge is then
    unknown, and a token counter keeps its model and rank out of this cycle
    (its tokens are counted on the next sound read, from the last good value).
    """

    def __init__(
        self,
        readings: Iterable[EngineReading] = (),
        rejected: Mapping[str, int] | None = None,
        first_rejected: str = "",
    ) -> None:
        super().__init__(readings)
        self.rejected = {reason: n for reason, n in rejected.items() if n} if rejected else {}
        """Rejected series by reason (REJECT_REASONS)."""
        self.first_rejected = first_rejected
        """The first rejected series and why, for the log."""
        if not _REJECT_REASONS.issuperset(self.rejected):
            unknown = set(self.rejected) - _REJECT_REASONS
            raise ValueError(f"unknown series reject reasons {sorted(unknown)}")


UTILIZATION_SOURCES = ("busy_time", "sm_activity")
"""`busy_time`: share of time at least one kernel ran (`utilization.gpu`), which
reads 100% with one SM of 132 busy. `sm_activity`: share of SMs busy (GPM)."""

GPU_ERROR_REASONS = ("gpu_lost", "query_failed")
"""Why a GPU's reading of one cycle is missing or incomplete (see GpuReading.error)."""

CLOCK_EVENT_REASONS = {
    "gpu_idle": 0x1,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}

FEATURES = (
    "busy_utilization",
    "memory",
    "power",
    "energy",
    "temperature",
    "sm_clock",
    "clock_events",
    "gpm",
    "mig",
)


@dataclass(frozen=True)
class MigInstance:
    uuid: str
    gpu_instance_id: int | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None


@dataclass
class GpuReading:
    """One GPU in one collection; None means not supported or not readable."""

    index: int
    uuid: str
    name: str
    healthy: bool = True
    error: str | None = None
    """Why this cycle's reading is incomplete: `gpu_lost` (nothing read, unhealthy)
    or `query_failed` (a query other than an unsupported one failed)."""
    busy_utilization: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    temperature_celsius: float | None = None
    sm_clock_hertz: float | None = None
    clock_event_reasons: int | None = None
    sm_activity: float | None = None
    sm_occupancy: float | None = None
    mig_enabled: bool | None = None
    mig_instances: tuple[MigInstance, ...] = ()
    mig_slices: int | None = None
    """MIG devices the GPU can hold at most (NVML's max MIG device count): its compute
    slices, 7 on A100 and H100, 4 on A30. None outside MIG mode."""
    supported: dict[str, bool] = field(default_factory=dict)

    def utilization(self, preferred: str) -> tuple[float, str] | None:
        """The utilization figure to alert on, and its source.

        `auto` takes SM activity where the GPU reports it, busy time otherwise.
        `sm_activity` takes busy time only on a GPU without GPM, so that choosing
        it never leaves a GPU without the figure its alert reads.
        """
        if preferred in ("auto", "sm_activity") and self.sm_activity is not None:
            return self.sm_activity, "sm_activity"
        without_gpm = self.supported.get("gpm") is False
        if preferred == "sm_activity" and not without_gpm:
            return None
        if self.busy_utilization is not None:
            return self.busy_utilization, "busy_time"
        return None


@dataclass(frozen=True)
class GpuSnapshot:
    """Every GPU of the node in one collection."""

    driver_version: str
    gpus: tuple[GpuReading, ...]


@dataclass(frozen=True)
class PodHolder:
    """A container the kubelet assigned a device to."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class DeviceHold:
    """One device assignment, as the kubelet's pod-resources API lists it."""

    device: str
    """The GPU or MIG device: its UUID (`GPU-...`, `MIG-...`), or its NVML index
    (`0`, or `0:1` for a MIG device) under the device plugin's index strategy;
    without the `::N` a shared (time-sliced) device's replicas carry."""
    replica: str
    """The device ID as assigned: one holder per replica of a shared device."""
    slices: int | None
    """Compute slices of the MIG profile the resource names (`nvidia.com/mig-3g.40gb`:
    3); None for a whole GPU, or a MIG device under the single strategy (`nvidia.com/gpu`)."""
    holder: PodHolder


@dataclass(frozen=True)
class PodDevices:
    """Who holds the node's GPUs at one time, from the kubelet: device -> its holds."""

    holds: Mapping[str, tuple[DeviceHold, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def of(cls, holds: Iterable[DeviceHold]) -> PodDevices:
        by_device: dict[str, list[DeviceHold]] = {}
        for hold in holds:
            by_device.setdefault(hold.device, []).append(hold)
        return cls(MappingProxyType({d: tuple(h) for d, h in by_device.items()}))
