"""Simulated GPUs: the physical side of a simulated engine.

Each GPU carries one simulated engine and follows its load, the served token
rate over its capacity: busy time saturates at the first running request (it
reads near 100% with one SM of 108 busy), SM activity grows in proportion,
power goes from idle to its cap, energy is the integral of that power over
wall time, and memory holds the model's weights plus the KV cache the engine
reports in use. No GPU, driver or NVML is involved.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from .engine import MAX_STEP_SECONDS, SimulatedEngine

MIB = 1024 * 1024
GIB = 1024 * MIB
BUSY_SATURATION_LOAD = 0.05
"""Load at which busy time reaches 63% (1 - 1/e): a handful of running requests keep a
kernel running almost all the time."""
SM_ACTIVITY_AT_CAPACITY = 0.85
"""Share of SMs busy at full load: decoding is bound by memory bandwidth, not compute."""
AMBIENT_CELSIUS = 30.0
CELSIUS_PER_WATT = 0.1
_UUID_NAMESPACE = uuid.UUID("6b1d2f0e-3c43-4f5e-9a57-2f8b8f0c1a10")


@dataclass(frozen=True)
class GpuSpec:
    """A GPU model as NVML would name and measure it."""

    name: str
    memory_total_bytes: int
    idle_watts: float
    max_watts: float
    """The power cap, drawn at full load."""
    idle_clock_hertz: float
    boost_clock_hertz: float


A100_80GB = GpuSpec(
    name="NVIDIA A100-SXM4-80GB",
    memory_total_bytes=81_920 * MIB,
    idle_watts=60.0,
    max_watts=400.0,
    idle_clock_hertz=210e6,
    boost_clock_hertz=1_410e6,
)


@dataclass(frozen=True)
class ModelFootprint:
    """What a served model keeps in GPU memory."""

    weights_bytes: int
    kv_bytes_per_token: int
    """2 (keys and values) x layers x KV heads x head size x bytes per value."""
    runtime_bytes: int = 2 * GIB
    """CUDA context, activations and graphs: in use before the first request."""


LLAMA_3_1_8B = ModelFootprint(weights_bytes=16_060_000_000, kv_bytes_per_token=2 * 32 * 8 * 128 * 2)
QWEN_2_5_7B = ModelFootprint(weights_bytes=15_230_000_000, kv_bytes_per_token=2 * 28 * 4 * 128 * 2)


@dataclass(frozen=True)
class GpuState:
    """One GPU at one moment, in base units (ratios in 0-1)."""

    index: int
    uuid: str
    name: str
    load: float
    busy_utilization: float
    sm_activity: float
    memory_used_bytes: int
    memory_total_bytes: int
    power_watts: float
    energy_joules: float
    """Drawn since the simulated driver loaded (when the GPU was created)."""
    temperature_celsius: float
    sm_clock_hertz: float

    @property
    def idle(self) -> bool:
        return self.load == 0.0


def busy_utilization(load: float) -> float:
    """Share of time at least one kernel ran, at `load` (0-1)."""
    return 1.0 - math.exp(-_bounded(load) / BUSY_SATURATION_LOAD)


def sm_activity(load: float) -> float:
    """Share of SMs busy at `load` (0-1)."""
    return SM_ACTIVITY_AT_CAPACITY * _bounded(load)


def power_watts(spec: GpuSpec, load: float) -> float:
    """Power drawn at `load` (0-1): idle power plus a share of the headroom to the cap."""
    return spec.idle_watts + (spec.max_watts - spec.idle_watts) * _bounded(load)


def gpu_uuid(index: int) -> str:
    """A UUID shaped like NVML's, the same for the same index on every run."""
    return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'simulated-gpu-{index}')}"


def _bounded(load: float) -> float:
    return min(max(load, 0.0), 1.0)


class SimulatedGpu:
    """GPU `index`, running `engine` serving a model of `footprint`."""

    def __init__(
        self,
        index: int,
        engine: SimulatedEngine,
        footprint: ModelFootprint,
        spec: GpuSpec = A100_80GB,
    ) -> None:
        self.index = index
        self.uuid = gpu_uuid(index)
        self.engine = engine
        self.footprint = footprint
        self.spec = spec
        self._sim_time = engine.sim_time
        """Simulated time up to which energy has been integrated."""
        self._energy_joules = 0.0

    def load(self, t: float) -> float:
        """The engine's served token rate over its capacity at simulated time `t`."""
        return self.engine.served_rate(t) / self.engine.capacity

    def _integrate_energy(self, end: float) -> None:
        """Energy drawn up to simulated time `end`, midpoint rule on the engine's steps."""
        start = self._sim_time
        if end <= start:
            return
        steps = max(1, math.ceil((end - start) / MAX_STEP_SECONDS))
        h = (end - start) / steps
        watts = math.fsum(
            power_watts(self.spec, self.load(start + (i + 0.5) * h)) for i in range(steps)
        )
        # Simulated seconds run `acceleration` times faster than the wall clock.
        self._energy_joules += watts * h / self.engine.acceleration
        self._sim_time = end

    def read(self) -> GpuState:
        """Advance the engine to now and read the GPU as it stands."""
        page = self.engine.page_state()
        now = self.engine.sim_time
        self._integrate_energy(now)
        load = self.load(now)
        kv_tokens = page.used_blocks * page.block_size
        memory = (
            self.footprint.runtime_bytes
            + self.footprint.weights_bytes
            + kv_tokens * self.footprint.kv_bytes_per_token
        )
        power = power_watts(self.spec, load)
        clock = self.spec.boost_clock_hertz if load > 0 else self.spec.idle_clock_hertz
        return GpuState(
            index=self.index,
            uuid=self.uuid,
            name=self.spec.name,
            load=load,
            busy_utilization=busy_utilization(load),
            sm_activity=sm_activity(load),
            memory_used_bytes=min(memory, self.spec.memory_total_bytes),
            memory_total_bytes=self.spec.memory_total_bytes,
            power_watts=power,
            energy_joules=self._energy_joules,
            temperature_celsius=AMBIENT_CELSIUS + CELSIUS_PER_WATT * power,
            sm_clock_hertz=clock,
        )
