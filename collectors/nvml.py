"""GPU state through NVML (`nvidia-ml-py`, imported as `pynvml`).

GPUs are keyed by UUID: NVML indices can change across reboots. Every NVML
call is blocking, so one collection runs in a worker thread of its own
(`WorkerThread`) and the event loop only awaits it. A feature a GPU does not
support (NOT_SUPPORTED) is remembered and never asked again; a GPU that fell
off the bus (GPU_IS_LOST) is retried with a growing back-off instead of on
every cycle.

Older drivers lack newer entry points, which pynvml reports as
FUNCTION_NOT_FOUND. Each reading lists its calls newest first (QUERIES): a
missing one is remembered for the driver, logged once, and the next one is
used; with none left the feature is unsupported, like NOT_SUPPORTED, and
never counted as a failing query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.readings import (
    FEATURES,
    GpuReading,
    GpuSnapshot,
    MigInstance,
)
from llm_cost_exporter.collectors.worker_thread import WorkerThread

log = logging.getLogger(__name__)

GPM_SM_UTIL = 2
GPM_SM_OCCUPANCY = 3
GPM_METRICS = (GPM_SM_UTIL, GPM_SM_OCCUPANCY)
"""The GPM metrics asked for, in the request's order."""
GPM_MIN_SAMPLE_GAP = 0.1
"""NVML wants GPM samples at least 100 ms apart."""


@dataclass(frozen=True)
class _Query:
    """One NVML entry point that answers a reading, and how pynvml calls it."""

    symbol: str
    """The C function pynvml looks up; a driver without it raises FUNCTION_NOT_FOUND."""
    call: Callable[[Any, Any], Any]
    """(pynvml, device handle) -> NVML's answer."""


QUERIES: dict[str, tuple[_Query, ...]] = {
    "busy_utilization": (
        _Query("nvmlDeviceGetUtilizationRates", lambda n, h: n.nvmlDeviceGetUtilizationRates(h)),
    ),
    "memory": (
        _Query(
            "nvmlDeviceGetMemoryInfo_v2",
            lambda n, h: n.nvmlDeviceGetMemoryInfo(h, n.nvmlMemory_v2),
        ),
        # v1 (before R510): `used` includes the memory the driver reserves.
        _Query("nvmlDeviceGetMemoryInfo", lambda n, h: n.nvmlDeviceGetMemoryInfo(h)),
    ),
    "power": (_Query("nvmlDeviceGetPowerUsage", lambda n, h: n.nvmlDeviceGetPowerUsage(h)),),
    "energy": (
        _Query(
            "nvmlDeviceGetTotalEnergyConsumption",
            lambda n, h: n.nvmlDeviceGetTotalEnergyConsumption(h),
        ),
    ),
    "temperature": (
        _Query(
            "nvmlDeviceGetTemperatureV",
            lambda n, h: n.nvmlDeviceGetTemperatureV(h, n.NVML_TEMPERATURE_GPU),
        ),
        _Query(
            "nvmlDeviceGetTemperature",
            lambda n, h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        ),
    ),
    "sm_clock": (
        _Query("nvmlDeviceGetClockInfo", lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
    ),
    "clock_events": (
        _Query(
            "nvmlDeviceGetCurrentClocksEventReasons",
            lambda n, h: n.nvmlDeviceGetCurrentClocksEventReasons(h),
        ),
        # The same bits under their pre-R535 name.
        _Query(
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            lambda n, h: n.nvmlDeviceGetCurrentClocksThrottleReasons(h),
        ),
    ),
    "gpm": (_Query("nvmlGpmQueryDeviceSupport", lambda n, h: n.nvmlGpmQueryDeviceSupport(h)),),
    "mig": (_Query("nvmlDeviceGetMigMode", lambda n, h: n.nvmlDeviceGetMigMode(h)),),
}
"""Per feature, the NVML calls that read it, newest first."""

LOST_RETRY_FIRST = 1.0
LOST_RETRY_MAX = 60.0
UNAVAILABLE_RETRY = 60.0


class _GpuLost(Exception):
    pass


@dataclass
class _Device:
    """What we keep between cycles about one GPU."""

    index: int
    uuid: str
    name: str
    handle: Any
    unsupported: set[str] = field(default_factory=set)
    mig_enabled: bool | None = None
    gpm_samples: list[Any] | None = None
    gpm_taken_at: float | None = None
    gpm_last: tuple[float | None, float | None] | None = None
    """SM activity and occupancy of the last sample pair, for reads closer than 100 ms."""
    lost: bool = False
    failing: set[str] = field(default_factory=set)
    """Features whose query failed (other than NOT_SUPPORTED) at least once."""
    failed_this_cycle: bool = False
    retry_at: float = 0.0
    retry_delay: float = LOST_RETRY_FIRST


class NvmlCollector:
    """Reads every GPU of the node; `collect()` raises CollectorError when NVML is absent."""

    name = "nvml"
    target = "local"

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._worker = WorkerThread("nvml")
        self._nvml: Any = None
        self._devices: list[_Device] = []
        self._unidentified: dict[int, tuple[float, float]] = {}
        """NVML indices whose GPU could not be named: when to ask again, and the back-off."""
        self._driver_version = ""
        self._missing: set[str] = set()
        """Entry points this driver lacks (FUNCTION_NOT_FOUND): never asked again."""
        self._answering: dict[str, Callable[[Any, Any], Any]] = {}
        """Per feature, the call that answered it: asked straight away from then on."""
        self._listed = 0
        """How many GPUs NVML counted at start, those it could not identify included."""
        self._sm_activity_gaps: list[tuple[int, str, str]] = []
        self._unavailable_reason: str | None = None
        self._retry_init_at = 0.0
        self._metrics_request: Any = None
        self._started = False

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> str | None:
        """Initialize NVML and list the GPUs; returns why NVML is unavailable, if it is.

        Blocking: call it from the worker thread or before the event loop runs.
        """
        try:
            import pynvml
        except ImportError as error:
            return self._unavailable(f"nvidia-ml-py is not installed ({error})")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            return self._unavailable(f"NVML cannot initialize: {error}")
        self._nvml = pynvml
        try:
            self._driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError:
            self._driver_version = ""
        self._missing = set()
        self._answering = {}
        self._devices = self._discover()
        self._sm_activity_gaps = self._probe_sm_activity()
        self._started = True
        self._unavailable_reason = None
        self._metrics_request = None
        log.info(
            "NVML driver %s: %d GPU(s): %s",
            self._driver_version or "(unknown)",
            len(self._devices),
            ", ".join(f"{d.index}:{d.name}" for d in self._devices) or "none",
        )
        return None

    async def open(self) -> str | None:
        """`start()` on the NVML worker thread, so a slow driver never blocks the event loop."""
        return await self._worker.submit(self.start)

    def _unavailable(self, reason: str) -> str:
        self._unavailable_reason = reason
        self._retry_init_at = self._clock() + UNAVAILABLE_RETRY
        return reason

    def close(self) -> None:
        if self._nvml is not None:
            for device in self._devices:
                for sample in device.gpm_samples or ():
                    _quietly(self._nvml.nvmlGpmSampleFree, sample)
            _quietly(self._nvml.nvmlShutdown)
            self._nvml = None
        self._worker.close()

    @property
    def available(self) -> bool:
        """True once `start()` has listed the GPUs (never while it is still listing them)."""
        return self._nvml is not None and self._started

    @property
    def unavailable_reason(self) -> str | None:
        return self._unavailable_reason

    def _discover(self) -> list[_Device]:
        self._unidentified = {}
        devices = []
        now = self._clock()
        self._listed = self._nvml.nvmlDeviceGetCount()
        for index in range(self._listed):
            device = self._identify(index, now)
            if device is not None:
                devices.append(device)
        return devices

    def _identify(self, index: int, now: float) -> _Device | None:
        """The GPU at an NVML index; one NVML cannot name yet is retried with a back-off."""
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
        except nvml.NVMLError as error:
            if index in self._unidentified:
                delay = min(self._unidentified[index][1] * 2, LOST_RETRY_MAX)
            else:
                delay = LOST_RETRY_FIRST
                log.error("GPU %d cannot be identified through NVML: %s", index, error)
            self._unidentified[index] = (now + delay, delay)
            return None
        if index in self._unidentified:
            del self._unidentified[index]
            log.warning("GPU %d (%s, %s) can be identified again", index, uuid, name)
        return _Device(index, uuid, name, handle)

    def _identify_again(self, now: float) -> None:
        for index, (retry_at, _) in list(self._unidentified.items()):
            if now >= retry_at:
                device = self._identify(index, now)
                if device is not None:
                    self._devices.append(device)
                    self._devices.sort(key=lambda d: d.index)

    # --- collection -----------------------------------------------------------

    async def collect(self) -> GpuSnapshot:
        if self._worker.busy:
            raise CollectorError("timeout", "the previous NVML call has not returned yet")
        try:
            return await self._worker.call(self.read, self.timeout)
        except asyncio.TimeoutError:
            raise CollectorError(
                "timeout", f"NVML did not answer within {self.timeout:g}s"
            ) from None

    def read(self) -> GpuSnapshot:
        """One blocking collection of every GPU."""
        if self._nvml is None:
            if self._clock() >= self._retry_init_at and self.start() is None:
                log.info("NVML is available again")
            else:
                raise CollectorError("unavailable", self._unavailable_reason or "NVML unavailable")
        now = self._clock()
        if self._unidentified:
            self._identify_again(now)
        return GpuSnapshot(
            driver_version=self._driver_version,
            gpus=tuple(self._read_device(device, now) for device in self._devices),
        )

    def _read_device(self, device: _Device, now: float) -> GpuReading:
        nvml = self._nvml
        reading = GpuReading(device.index, device.uuid, device.name)
        if device.lost:
            if now < device.retry_at:
                return self._mark_lost(device, reading, now, first=False)
            try:
                device.handle = nvml.nvmlDeviceGetHandleByUUID(device.uuid)
            except nvml.NVMLError:
                return self._mark_lost(device, reading, now, first=False)
        device.failed_this_cycle = False
        try:
            self._read_into(device, reading, now)
        except _GpuLost:
            return self._mark_lost(device, reading, now, first=not device.lost)
        if device.failed_this_cycle:
            reading.error = "query_failed"
        if device.lost:
            device.lost = False
            device.retry_delay = LOST_RETRY_FIRST
            device.gpm_taken_at = None
            device.gpm_last = None
            log.warning("GPU %d (%s) answers again", device.index, device.uuid)
        reading.supported = {f: f not in device.unsupported for f in FEATURES}
        return reading

    def _mark_lost(
        self, device: _Device, reading: GpuReading, now: float, first: bool
    ) -> GpuReading:
        if first:
            log.error(
                "GPU %d (%s, %s) is lost: NVML reports it has fallen off the bus; "
                "it stays billed and is reported unhealthy",
                device.index,
                device.uuid,
                device.name,
            )
            device.retry_delay = LOST_RETRY_FIRST
        elif now >= device.retry_at:
            device.retry_delay = min(device.retry_delay * 2, LOST_RETRY_MAX)
        if now >= device.retry_at:
            device.retry_at = now + device.retry_delay
        device.lost = True
        reading.healthy = False
        reading.error = "gpu_lost"
        reading.supported = {f: f not in device.unsupported for f in FEATURES}
        return reading

    def _call(self, device: _Device, feature: str, function: Callable[..., Any], *args: Any):
        """One NVML query; None if unsupported (remembered) or failing for another reason."""
        if feature in device.unsupported:
            return None
        nvml = self._nvml
        try:
            return function(*args)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound):
            device.unsupported.add(feature)
            log.debug("GPU %d (%s): %s not supported", device.index, device.uuid, feature)
        except nvml.NVMLError_GpuIsLost:
            raise _GpuLost from None
        except nvml.NVMLError as error:
            device.failed_this_cycle = True
            level = logging.DEBUG if feature in device.failing else logging.WARNING
            device.failing.add(feature)
            log.log(
                level,
                "GPU %d (%s): reading %s failed: %s",
                device.index,
                device.uuid,
                feature,
                error,
            )
        return None

    def _query(self, device: _Device, feature: str) -> Any:
        """The feature's reading on the GPU through the newest call the driver has."""
        query = self._answering.get(feature)
        if query is not None:
            return self._call(device, feature, query, self._nvml, device.handle)
        return self._call(device, feature, self._newest, feature, device.handle)

    def _newest(self, feature: str, handle: Any) -> Any:
        """Ask the first of the feature's QUERIES the driver has; raises FUNCTION_NOT_FOUND
        when it has none of them."""
        nvml = self._nvml
        queries = QUERIES[feature]
        for position, query in enumerate(queries):
            if query.symbol in self._missing:
                continue
            try:
                answer = query.call(nvml, handle)
            except nvml.NVMLError_FunctionNotFound:
                self._missing.add(query.symbol)
                instead = next(
                    (q.symbol for q in queries[position + 1 :] if q.symbol not in self._missing),
                    None,
                )
                log.info(
                    "NVML driver %s lacks %s: %s",
                    self._driver_version or "(unknown version)",
                    query.symbol,
                    f"reading {feature} with {instead}" if instead else f"no {feature} reading",
                )
                continue
            self._answering[feature] = query.call
            return answer
        raise nvml.NVMLError(nvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def _read_into(self, device: _Device, reading: GpuReading, now: float) -> None:
        mig = self._query(device, "mig")
        if mig is not None:
            enabled = bool(mig[0])
            if device.mig_enabled is not None and enabled != device.mig_enabled:
                device.unsupported.clear()
                self._drop_gpm(device)
            device.mig_enabled = enabled
            reading.mig_enabled = enabled
        utilization = self._query(device, "busy_utilization")
        if utilization is not None:
            reading.busy_utilization = utilization.gpu / 100.0
        memory = self._query(device, "memory")
        if memory is not None:
            reading.memory_used_bytes = float(memory.used)
            reading.memory_total_bytes = float(memory.total)
        power = self._query(device, "power")
        if power is not None:
            reading.power_watts = power / 1000.0
        energy = self._query(device, "energy")
        if energy is not None:
            reading.energy_joules = energy / 1000.0
        temperature = self._query(device, "temperature")
        if temperature is not None:
            reading.temperature_celsius = float(temperature)
        clock = self._query(device, "sm_clock")
        if clock is not None:
            reading.sm_clock_hertz = clock * 1e6
        reading.clock_event_reasons = self._query(device, "clock_events")
        self._read_gpm(device, reading, now)
        if reading.mig_enabled:
            reading.mig_instances, reading.mig_slices = self._mig_instances(device)

    def _read_gpm(self, device: _Device, reading: GpuReading, now: float) -> None:
        """SM activity and occupancy between this cycle's GPM sample and the last one."""
        nvml = self._nvml
        if not self._has_gpm(device) or device.gpm_samples is None:
            return
        previous, current = device.gpm_samples
        if device.gpm_taken_at is not None and now - device.gpm_taken_at < GPM_MIN_SAMPLE_GAP:
            if device.gpm_last is not None:
                reading.sm_activity, reading.sm_occupancy = device.gpm_last
            return
        if self._call(device, "gpm", nvml.nvmlGpmSampleGet, device.handle, current) is None:
            device.gpm_taken_at = None
            return
        had_previous = device.gpm_taken_at is not None
        device.gpm_samples = [current, previous]
        device.gpm_taken_at = now
        if not had_previous:
            return
        request = self._gpm_request(previous, current)
        result = self._call(device, "gpm", nvml.nvmlGpmMetricsGet, request)
        if result is None:
            return
        for metric in result.metrics[: result.numMetrics]:
            if metric.nvmlReturn != 0:
                continue
            if metric.metricId == GPM_SM_UTIL:
                reading.sm_activity = metric.value / 100.0
            elif metric.metricId == GPM_SM_OCCUPANCY:
                reading.sm_occupancy = metric.value / 100.0
        device.gpm_last = (reading.sm_activity, reading.sm_occupancy)

    def _has_gpm(self, device: _Device) -> bool:
        """Whether the GPU gives GPM samples: asked once, its two sample buffers then kept."""
        if device.mig_enabled:
            # Device-level GPM samples are refused in MIG mode; per-instance GPM is not read.
            device.unsupported.add("gpm")
        if "gpm" in device.unsupported:
            return False
        if device.gpm_samples is not None:
            return True
        support = self._query(device, "gpm")
        if support is None or not support.isSupportedDevice:
            device.unsupported.add("gpm")
            return False
        samples = [self._call(device, "gpm", self._nvml.nvmlGpmSampleAlloc) for _ in range(2)]
        if None in samples:
            for sample in samples:
                if sample is not None:
                    _quietly(self._nvml.nvmlGpmSampleFree, sample)
            device.unsupported.add("gpm")
            return False
        device.gpm_samples = samples
        return True

    def _probe_sm_activity(self) -> list[tuple[int, str, str]]:
        """(index, name, why) of each GPU that cannot give SM activity, asked at start."""
        gaps = []
        for device in self._devices:
            try:
                mig = self._query(device, "mig")
                if mig is not None:
                    device.mig_enabled = bool(mig[0])
                if self._has_gpm(device):
                    continue
            except _GpuLost:
                continue  # read, and reported lost, by the first collection
            if "nvmlGpmQueryDeviceSupport" in self._missing:
                why = f"NVML driver {self._driver_version or '(unknown)'} has no GPM (R520+)"
            elif "gpm" in device.failing:
                why = "its GPM query failed"
            elif device.mig_enabled:
                why = "it runs in MIG mode, where NVML gives no device-wide SM activity"
            else:
                why = "NVML reports no GPM on it (Hopper or newer)"
            gaps.append((device.index, device.name, why))
        return gaps

    def _drop_gpm(self, device: _Device) -> None:
        for sample in device.gpm_samples or ():
            _quietly(self._nvml.nvmlGpmSampleFree, sample)
        device.gpm_samples = None
        device.gpm_taken_at = None
        device.gpm_last = None

    def _gpm_request(self, sample1: Any, sample2: Any) -> Any:
        """The metrics-get struct, built once: it holds several hundred metric slots, and
        pynvml's structs set and read each field through a Python call. What NVML only
        reads (the version, the metrics asked for) is set once; the samples every time."""
        request = self._metrics_request
        if request is None:
            nvml = self._nvml
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(GPM_METRICS)
            for slot, metric_id in enumerate(GPM_METRICS):
                request.metrics[slot].metricId = metric_id
            self._metrics_request = request
        request.sample1 = sample1
        request.sample2 = sample2
        return request

    def _mig_instances(self, device: _Device) -> tuple[tuple[MigInstance, ...], int | None]:
        """The GPU's MIG devices, and how many it can hold (its compute slices)."""
        nvml = self._nvml
        count = self._call(device, "mig", nvml.nvmlDeviceGetMaxMigDeviceCount, device.handle) or 0
        instances = []
        for slot in range(count):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(device.handle, slot)
            except nvml.NVMLError_GpuIsLost:
                raise _GpuLost from None
            except nvml.NVMLError:
                continue
            instances.append(self._mig_instance(handle))
        return tuple(instances), count or None

    def _mig_instance(self, handle: Any) -> MigInstance:
        nvml = self._nvml

        def ask(function: Callable[..., Any], *args: Any) -> Any:
            try:
                return function(handle, *args)
            except nvml.NVMLError_GpuIsLost:
                raise _GpuLost from None
            except nvml.NVMLError:
                return None

        memory = ask(lambda h: self._newest("memory", h))
        return MigInstance(
            uuid=_text(ask(nvml.nvmlDeviceGetUUID) or ""),
            gpu_instance_id=ask(nvml.nvmlDeviceGetGpuInstanceId),
            memory_used_bytes=float(memory.used) if memory is not None else None,
            memory_total_bytes=float(memory.total) if memory is not None else None,
        )

    # --- inventory ------------------------------------------------------------

    def inventory(self) -> list[tuple[int, str, str]]:
        """(index, UUID, name) of every GPU NVML listed at start."""
        return [(d.index, d.uuid, d.name) for d in self._devices]

    @property
    def listed(self) -> int:
        """How many GPUs NVML counted at start, those it could not identify included."""
        return self._listed

    @property
    def sm_activity_gaps(self) -> list[tuple[int, str, str]]:
        """(index, name, why) of each GPU on which NVML gave no SM activity at start."""
        return list(self._sm_activity_gaps)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quietly(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception:  # cleanup on shutdown must never raise
        log.debug("NVML cleanup call %s failed", getattr(function, "__name__", function))
