"""The fake libnvidia-ml answers the real pynvml bindings like NVML would."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pynvml
import pytest
from realparts.fake_nvml import (
    LIB_NAME,
    STATE_ENV,
    FakeGpu,
    FakeMig,
    FakeNvmlState,
    call_count,
    default_gpu_uuid,
    function_since,
    subprocess_env,
)

GiB = 1024**3


class Nvml:
    """The fake's state file for one test, plus the inits to undo afterwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inits = 0

    def write(self, state: FakeNvmlState) -> None:
        state.write(self.path)

    def start(self, state: FakeNvmlState) -> None:
        self.write(state)
        pynvml.nvmlInit()
        self.inits += 1

    def stop(self) -> None:
        pynvml.nvmlShutdown()
        self.inits -= 1


@pytest.fixture
def nvml(fake_lib: ctypes.CDLL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Nvml]:
    path = tmp_path / "nvml-state.txt"
    monkeypatch.setenv(STATE_ENV, str(path))
    session = Nvml(path)
    yield session
    for _ in range(session.inits):
        pynvml.nvmlShutdown()


def address(handle: object) -> int:
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


def h100(index: int, **fields: object) -> FakeGpu:
    return FakeGpu(uuid=f"GPU-{index:08d}-aaaa-bbbb-cccc-dddddddddddd", **fields)


def mig_gpu(index: int) -> FakeGpu:
    return h100(
        index,
        mig_mode=1,
        gpm_supported=True,
        migs=[
            FakeMig(
                f"MIG-{index}-0-uuid", gpu_instance_id=1, memory_total=40 * GiB, memory_used=GiB
            ),
            FakeMig(f"MIG-{index}-1-uuid", gpu_instance_id=5, memory_total=20 * GiB, memory_used=0),
        ],
    )


# ---- loading and init ----------------------------------------------------------------------


def test_pynvml_loads_the_preloaded_fake_by_soname(nvml: Nvml, fake_lib: ctypes.CDLL) -> None:
    nvml.start(FakeNvmlState([h100(0)]))
    assert pynvml.nvmlLib._handle == fake_lib._handle


def test_init_and_driver_version(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0)], driver_version="560.35.03"))
    assert pynvml.nvmlSystemGetDriverVersion() == "560.35.03"


def test_init_error_from_state(nvml: Nvml) -> None:
    nvml.write(FakeNvmlState([h100(0)], init_error=9))
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    nvml.write(FakeNvmlState([h100(0)], init_error=4))
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlInit()


def test_init_without_state_file(nvml: Nvml, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    monkeypatch.delenv(STATE_ENV)
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()


def test_calls_after_shutdown_are_uninitialized(nvml: Nvml, fake_lib: ctypes.CDLL) -> None:
    nvml.start(FakeNvmlState([h100(0)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    nvml.stop()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()
    count = ctypes.c_uint(77)
    assert fake_lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == pynvml.NVML_ERROR_UNINITIALIZED
    assert count.value == 77
    nvml.start(FakeNvmlState([h100(0)]))
    assert pynvml.nvmlDeviceGetCount() == 1


def test_init_is_reference_counted(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0)]))
    nvml.start(FakeNvmlState([h100(0)]))
    nvml.stop()
    assert pynvml.nvmlDeviceGetCount() == 1
    nvml.stop()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()


def test_error_strings(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0)]))
    assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU is lost"
    assert pynvml.nvmlErrorString(pynvml.NVML_ERROR_NOT_SUPPORTED) == "Not Supported"
    assert "version" in str(pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH))


# ---- identity ------------------------------------------------------------------------------


def test_count_handles_name_uuid_index(nvml: Nvml) -> None:
    gpus = [h100(0), FakeGpu(name="NVIDIA A100-SXM4-80GB"), h100(2)]
    nvml.start(FakeNvmlState(gpus))
    assert pynvml.nvmlDeviceGetCount() == 3
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
    assert len({address(h) for h in handles}) == 3
    assert [pynvml.nvmlDeviceGetIndex(h) for h in handles] == [0, 1, 2]
    assert pynvml.nvmlDeviceGetName(handles[1]) == "NVIDIA A100-SXM4-80GB"
    assert pynvml.nvmlDeviceGetName(handles[0]) == "NVIDIA H100 80GB HBM3"
    assert pynvml.nvmlDeviceGetUUID(handles[1]) == default_gpu_uuid(1)
    assert pynvml.nvmlDeviceGetUUID(handles[2]) == "GPU-00000002-aaaa-bbbb-cccc-dddddddddddd"
    by_uuid = pynvml.nvmlDeviceGetHandleByUUID(default_gpu_uuid(1))
    assert address(by_uuid) == address(handles[1])
    assert address(pynvml.nvmlDeviceGetHandleByIndex(1)) == address(handles[1])
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByUUID("GPU-nope")
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(3)


def test_handle_beyond_device_count_after_reload(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0), h100(1)]))
    second = pynvml.nvmlDeviceGetHandleByIndex(1)
    nvml.write(FakeNvmlState([h100(0)]))
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetPowerUsage(second)
    assert pynvml.nvmlDeviceGetCount() == 1


def test_insufficient_buffer(nvml: Nvml, fake_lib: ctypes.CDLL) -> None:
    nvml.start(FakeNvmlState([h100(0)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    small = ctypes.create_string_buffer(8)
    rc = fake_lib.nvmlDeviceGetName(handle, small, ctypes.c_uint(8))
    assert rc == pynvml.NVML_ERROR_INSUFFICIENT_SIZE


# ---- readings ------------------------------------------------------------------------------


def test_utilization(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0, util_gpu=87, util_memory=41)]))
    util = pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(0))
    assert (util.gpu, util.memory) == (87, 41)


def test_memory_v2_and_v1(nvml: Nvml) -> None:
    gpu = h100(0, memory_total=80 * GiB, memory_used=30 * GiB, memory_reserved=GiB // 2)
    nvml.start(FakeNvmlState([gpu]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    v2 = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert v2.version == pynvml.nvmlMemory_v2
    assert (v2.total, v2.used, v2.reserved) == (80 * GiB, 30 * GiB, GiB // 2)
    assert v2.free == v2.total - v2.used - v2.reserved == 80 * GiB - 30 * GiB - GiB // 2
    v1 = pynvml.nvmlDeviceGetMemoryInfo(handle)
    assert v1.total == 80 * GiB
    assert v1.used == v2.used + v2.reserved
    assert v1.free == v2.free
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        pynvml.nvmlDeviceGetMemoryInfo(handle, version=0x01000028)


def test_power_energy_temperature_clocks(nvml: Nvml) -> None:
    gpu = h100(
        0,
        power_mw=612_345,
        energy_mj=2**40 + 7,
        temperature=71,
        sm_clock_mhz=1755,
        clock_event_reasons=0x8000000000000004,
    )
    nvml.start(FakeNvmlState([gpu]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 612_345
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 2**40 + 7
    assert pynvml.nvmlDeviceGetTemperatureV(handle, pynvml.NVML_TEMPERATURE_GPU) == 71
    assert pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU) == 71
    assert pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM) == 1755
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle) == 0x8000000000000004
    assert pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle) == 0x8000000000000004
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)


def test_negative_temperature(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0, temperature=-5)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetTemperatureV(handle, pynvml.NVML_TEMPERATURE_GPU) == -5


# ---- GPM -----------------------------------------------------------------------------------


def metrics_request(
    sample1: object, sample2: object, metric_ids: list[int]
) -> pynvml.c_nvmlGpmMetricsGet_t:
    request = pynvml.c_nvmlGpmMetricsGet_t()
    request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = len(metric_ids)
    request.sample1 = sample1
    request.sample2 = sample2
    for i, metric_id in enumerate(metric_ids):
        request.metrics[i].metricId = metric_id
    return request


def test_gpm_metrics(nvml: Nvml) -> None:
    first = h100(0, gpm_supported=True, sm_activity=10.0, sm_occupancy=5.0, util_gpu=20)
    nvml.start(FakeNvmlState([first]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 1
    sample1 = pynvml.nvmlGpmSampleAlloc()
    sample2 = pynvml.nvmlGpmSampleAlloc()
    try:
        pynvml.nvmlGpmSampleGet(handle, sample1)
        second = h100(
            0,
            gpm_supported=True,
            util_gpu=93,
            sm_activity=72.5,
            sm_occupancy=33.25,
            tensor_activity=48.125,
        )
        nvml.write(FakeNvmlState([second]))
        pynvml.nvmlGpmSampleGet(handle, sample2)
        ids = [
            pynvml.NVML_GPM_METRIC_SM_UTIL,
            pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
            pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
            pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
            pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
        ]
        request = metrics_request(sample1, sample2, ids[:2])
        request.metrics[2].value = -1.0
        pynvml.nvmlGpmMetricsGet(request)
        sm, occupancy = request.metrics[0], request.metrics[1]
        assert (sm.metricId, sm.nvmlReturn, sm.value) == (ids[0], 0, 72.5)
        assert (occupancy.metricId, occupancy.nvmlReturn, occupancy.value) == (ids[1], 0, 33.25)
        assert sm.metricInfo.unit == b"%"
        assert sm.metricInfo.shortName
        assert request.metrics[2].value == -1.0

        request = metrics_request(sample1, sample2, ids)
        pynvml.nvmlGpmMetricsGet(request)
        values = [(m.nvmlReturn, m.value) for m in request.metrics[:5]]
        assert values == [(0, 72.5), (0, 33.25), (0, 48.125), (0, 93.0), (3, 0.0)]
    finally:
        pynvml.nvmlGpmSampleFree(sample1)
        pynvml.nvmlGpmSampleFree(sample2)


def test_gpm_request_errors(nvml: Nvml) -> None:
    gpus = [h100(0, gpm_supported=True), h100(1, gpm_supported=True)]
    nvml.start(FakeNvmlState(gpus))
    first, second = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(2))
    samples = [pynvml.nvmlGpmSampleAlloc() for _ in range(3)]
    try:
        pynvml.nvmlGpmSampleGet(first, samples[0])
        pynvml.nvmlGpmSampleGet(second, samples[1])
        sm_util = [pynvml.NVML_GPM_METRIC_SM_UTIL]
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlGpmMetricsGet(metrics_request(samples[0], samples[1], sm_util))
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlGpmMetricsGet(metrics_request(samples[0], samples[2], sm_util))
        request = metrics_request(samples[0], samples[0], sm_util)
        request.version = 2
        with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
            pynvml.nvmlGpmMetricsGet(request)
        support = pynvml.c_nvmlGpmSupport_t(version=7)
        fn = pynvml._nvmlGetFunctionPointer("nvmlGpmQueryDeviceSupport")
        assert fn(first, ctypes.byref(support)) == pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlGpmMigSampleGet(first, 1, samples[2])
    finally:
        for sample in samples:
            pynvml.nvmlGpmSampleFree(sample)


def test_gpm_unsupported_gpu(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0, gpm_supported=False)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 0
    sample = pynvml.nvmlGpmSampleAlloc()
    try:
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlGpmSampleGet(handle, sample)
    finally:
        pynvml.nvmlGpmSampleFree(sample)


# ---- MIG -----------------------------------------------------------------------------------


def test_mig_devices(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([mig_gpu(0), h100(1)]))
    parent = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetMigMode(parent) == [1, 1]
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
    assert pynvml.nvmlDeviceIsMigDeviceHandle(parent).value == 0
    migs = [pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, j) for j in range(2)]
    for j in range(2, 7):
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, j)
    assert [pynvml.nvmlDeviceIsMigDeviceHandle(m).value for m in migs] == [1, 1]
    assert [pynvml.nvmlDeviceGetGpuInstanceId(m) for m in migs] == [1, 5]
    assert [pynvml.nvmlDeviceGetUUID(m) for m in migs] == ["MIG-0-0-uuid", "MIG-0-1-uuid"]
    assert address(pynvml.nvmlDeviceGetHandleByUUID("MIG-0-1-uuid")) == address(migs[1])

    memory = pynvml.nvmlDeviceGetMemoryInfo(migs[0], version=pynvml.nvmlMemory_v2)
    assert (memory.total, memory.used, memory.free) == (40 * GiB, GiB, 39 * GiB)
    assert pynvml.nvmlDeviceGetMemoryInfo(migs[1]).total == 20 * GiB

    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetUtilizationRates(parent)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetUtilizationRates(migs[0])
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetPowerUsage(migs[0])
    assert pynvml.nvmlDeviceGetPowerUsage(parent) == 100_000
    assert pynvml.nvmlDeviceGetTemperatureV(parent, pynvml.NVML_TEMPERATURE_GPU) == 40
    sample = pynvml.nvmlGpmSampleAlloc()
    try:
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlGpmSampleGet(parent, sample)
    finally:
        pynvml.nvmlGpmSampleFree(sample)

    full = pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetMigMode(full) == [0, 0]
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(full) == 0
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(full, 0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetGpuInstanceId(full)


def test_mig_handle_gone_after_reload(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([mig_gpu(0)]))
    parent = pynvml.nvmlDeviceGetHandleByIndex(0)
    second = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1)
    shrunk = mig_gpu(0)
    shrunk.migs = shrunk.migs[:1]
    nvml.write(FakeNvmlState([shrunk]))
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetUUID(second)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByUUID("MIG-0-1-uuid")


# ---- failures ------------------------------------------------------------------------------

PER_DEVICE_CALLS: list[Callable[[object], object]] = [
    pynvml.nvmlDeviceGetName,
    pynvml.nvmlDeviceGetUUID,
    pynvml.nvmlDeviceGetIndex,
    pynvml.nvmlDeviceGetUtilizationRates,
    pynvml.nvmlDeviceGetMemoryInfo,
    lambda h: pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2),
    pynvml.nvmlDeviceGetPowerUsage,
    pynvml.nvmlDeviceGetTotalEnergyConsumption,
    lambda h: pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU),
    lambda h: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
    pynvml.nvmlDeviceGetCurrentClocksEventReasons,
    pynvml.nvmlDeviceGetMigMode,
    pynvml.nvmlDeviceGetMaxMigDeviceCount,
    lambda h: pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0),
    pynvml.nvmlDeviceIsMigDeviceHandle,
    pynvml.nvmlDeviceGetGpuInstanceId,
    pynvml.nvmlGpmQueryDeviceSupport,
]


def test_lost_gpu_and_recovery(nvml: Nvml) -> None:
    healthy = [h100(0, power_mw=250_000), h100(1, power_mw=300_000, gpm_supported=True)]
    nvml.start(FakeNvmlState(healthy))
    lost_handle = pynvml.nvmlDeviceGetHandleByIndex(1)
    broken = [h100(0, power_mw=250_000), h100(1, power_mw=300_000, lost=True)]
    nvml.write(FakeNvmlState(broken))

    for call in PER_DEVICE_CALLS:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call(lost_handle)
    sample = pynvml.nvmlGpmSampleAlloc()
    try:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlGpmSampleGet(lost_handle, sample)
    finally:
        pynvml.nvmlGpmSampleFree(sample)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByUUID(broken[1].uuid)
    assert pynvml.nvmlDeviceGetCount() == 2
    assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(0)) == 250_000

    nvml.write(FakeNvmlState(healthy))
    assert pynvml.nvmlDeviceGetPowerUsage(lost_handle) == 300_000
    assert address(pynvml.nvmlDeviceGetHandleByIndex(1)) == address(lost_handle)


def test_lost_mig_parent(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([mig_gpu(0)]))
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(0), 0)
    lost = mig_gpu(0)
    lost.lost = True
    nvml.write(FakeNvmlState([lost]))
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetMemoryInfo(mig)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByUUID("MIG-0-0-uuid")


def test_not_supported_list(nvml: Nvml) -> None:
    disabled = ("nvmlDeviceGetPowerUsage", "nvmlDeviceGetMemoryInfo_v2", "nvmlNoSuchFunction")
    nvml.start(FakeNvmlState([h100(0, not_supported=disabled), h100(1)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert pynvml.nvmlDeviceGetMemoryInfo(handle).total == 80 * GiB
    assert pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) == 0
    assert pynvml.nvmlDeviceGetPowerUsage(pynvml.nvmlDeviceGetHandleByIndex(1)) == 100_000


# ---- reloads, counters, child processes ----------------------------------------------------


def test_state_file_is_reread_when_it_changes(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0, util_gpu=10)]))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == 10
    for util in (11, 12, 13, 99):
        nvml.write(FakeNvmlState([h100(0, util_gpu=util)]))
        assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == util


def test_state_file_gone_after_init_keeps_last_state(nvml: Nvml) -> None:
    nvml.start(FakeNvmlState([h100(0, util_gpu=64)]))
    nvml.path.unlink()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert pynvml.nvmlDeviceGetUtilizationRates(handle).gpu == 64


def test_hand_written_state_file(nvml: Nvml) -> None:
    nvml.path.write_text(
        "# comment\n\n"
        "device_count = 1\n"
        "unknown_key = 5\n"
        "  gpu.0.name =  Tesla T4  \n"
        "gpu.0.uuid = GPU-hand\n"
        "gpu.0.clock_event_reasons = 0x10\n"
        "gpu.0.memory_total = 16106127360\n"
        "gpu.0.mig.9.uuid = ignored\n"
        "gpu.99.name = ignored\n",
        encoding="utf-8",
    )
    pynvml.nvmlInit()
    nvml.inits += 1
    handle = pynvml.nvmlDeviceGetHandleByUUID("GPU-hand")
    assert pynvml.nvmlDeviceGetName(handle) == "Tesla T4"
    assert pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle) == 16
    assert pynvml.nvmlDeviceGetMemoryInfo(handle).total == 16106127360
    assert pynvml.nvmlSystemGetDriverVersion() == ""


def test_sixteen_gpus_with_seven_migs(nvml: Nvml) -> None:
    gpus = [
        h100(
            i,
            mig_mode=1,
            migs=[FakeMig(f"MIG-{i}-{j}", j + 1, (j + 1) * GiB, j) for j in range(7)],
        )
        for i in range(16)
    ]
    nvml.start(FakeNvmlState(gpus))
    assert pynvml.nvmlDeviceGetCount() == 16
    last = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(15), 6)
    assert pynvml.nvmlDeviceGetUUID(last) == "MIG-15-6"
    assert pynvml.nvmlDeviceGetGpuInstanceId(last) == 7
    assert pynvml.nvmlDeviceGetMemoryInfo(last).total == 7 * GiB
    with pytest.raises(ValueError):
        FakeNvmlState([h100(i) for i in range(17)]).render()


def test_call_counters(nvml: Nvml, fake_lib: ctypes.CDLL) -> None:
    nvml.start(FakeNvmlState([h100(0), h100(1, lost=True)]))
    fake_lib.fakeNvmlResetCallCounts()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    for _ in range(3):
        pynvml.nvmlDeviceGetPowerUsage(handle)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(1)
    assert call_count(fake_lib, "nvmlDeviceGetPowerUsage") == 3
    assert call_count(fake_lib, "nvmlDeviceGetHandleByIndex_v2") == 2
    assert call_count(fake_lib, "nvmlDeviceGetName") == 0
    assert call_count(fake_lib, "nvmlNoSuchFunction") == 0
    fake_lib.fakeNvmlResetCallCounts()
    assert call_count(fake_lib, "nvmlDeviceGetPowerUsage") == 0


CHILD = """
import json, pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
print(json.dumps({
    "count": pynvml.nvmlDeviceGetCount(),
    "name": pynvml.nvmlDeviceGetName(handle),
    "power": pynvml.nvmlDeviceGetPowerUsage(handle),
}))
pynvml.nvmlShutdown()
"""


def test_child_process_finds_fake_through_ld_library_path(lib_dir: Path, tmp_path: Path) -> None:
    state_path = tmp_path / "state.txt"
    FakeNvmlState([h100(0, power_mw=432_100), h100(1)]).write(state_path)
    env = {**os.environ, **subprocess_env(lib_dir, state_path)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == {"count": 2, "name": "NVIDIA H100 80GB HBM3", "power": 432_100}
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(lib_dir)


# ---- older drivers -------------------------------------------------------------------------

R470_LACKS = {
    "nvmlDeviceGetMemoryInfo_v2": 510,
    "nvmlGpmQueryDeviceSupport": 520,
    "nvmlGpmSampleAlloc": 520,
    "nvmlGpmSampleFree": 520,
    "nvmlGpmSampleGet": 520,
    "nvmlGpmMigSampleGet": 520,
    "nvmlGpmMetricsGet": 520,
    "nvmlDeviceGetCurrentClocksEventReasons": 535,
    "nvmlDeviceGetTemperatureV": 570,
}
"""What an R470 driver lacks, and the branch whose nvml.h first declares it."""

R470_HAS = (
    "nvmlInitWithFlags",
    "nvmlSystemGetDriverVersion",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetTotalEnergyConsumption",
)

SYMBOLS_CHILD = """
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
print(json.dumps({name: hasattr(lib, name) for name in sys.argv[2:]}))
"""


def test_each_newer_entry_point_names_its_driver_branch(fake_lib: ctypes.CDLL) -> None:
    for name, branch in R470_LACKS.items():
        assert function_since(fake_lib, name) == branch, name
    for name in R470_HAS:
        assert function_since(fake_lib, name) == 0, name
    assert function_since(fake_lib, "nvmlNoSuchFunction") == -1


def test_an_old_driver_build_lacks_the_newer_symbols(old_driver_lib_dir: Path) -> None:
    """The R470 build exports what R470 has and nothing newer; the full build exports all."""
    names = [*R470_LACKS, *R470_HAS]
    out = subprocess.run(
        [sys.executable, "-c", SYMBOLS_CHILD, str(old_driver_lib_dir / LIB_NAME), *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == {name: name not in R470_LACKS for name in names}


OLD_DRIVER_CHILD = """
import json, pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
result = {"driver": pynvml.nvmlSystemGetDriverVersion()}
calls = {
    "memory_v2": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle, pynvml.nvmlMemory_v2),
    "gpm": lambda: pynvml.nvmlGpmQueryDeviceSupport(handle),
    "events": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
    "temperature_v": lambda: pynvml.nvmlDeviceGetTemperatureV(handle, 0),
}
for key, call in calls.items():
    try:
        call()
        result[key] = "answered"
    except pynvml.NVMLError_FunctionNotFound as error:
        result[key] = str(error)
v1 = pynvml.nvmlDeviceGetMemoryInfo(handle)
result["v1"] = [v1.total, v1.used, v1.free]
result["throttle"] = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
result["temperature"] = pynvml.nvmlDeviceGetTemperature(handle, 0)
print(json.dumps(result))
pynvml.nvmlShutdown()
"""


def test_pynvml_over_an_old_driver_build_finds_no_function(
    old_driver_lib_dir: Path, tmp_path: Path
) -> None:
    """pynvml's own symbol lookup fails and raises FUNCTION_NOT_FOUND; v1 calls answer."""
    state_path = tmp_path / "state.txt"
    gpu = h100(0, memory_used=30 * GiB, memory_reserved=GiB, clock_event_reasons=0x4)
    FakeNvmlState([gpu], driver_version="470.256.02").write(state_path)
    env = {**os.environ, **subprocess_env(old_driver_lib_dir, state_path)}
    out = subprocess.run(
        [sys.executable, "-c", OLD_DRIVER_CHILD], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result == {
        "driver": "470.256.02",
        "memory_v2": "Function Not Found",
        "gpm": "Function Not Found",
        "events": "Function Not Found",
        "temperature_v": "Function Not Found",
        "v1": [80 * GiB, 31 * GiB, 49 * GiB],
        "throttle": 0x4,
        "temperature": 40,
    }


def test_a_state_driver_branch_answers_function_not_found(nvml: Nvml) -> None:
    """In this process the full fake stands in for an old driver: the same entry points
    answer FUNCTION_NOT_FOUND, the rest answer as usual."""
    nvml.start(FakeNvmlState([h100(0, gpm_supported=True)], driver_branch=470))
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetMemoryInfo(handle, pynvml.nvmlMemory_v2)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlGpmQueryDeviceSupport(handle)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetTemperatureV(handle, pynvml.NVML_TEMPERATURE_GPU)
    assert pynvml.nvmlDeviceGetMemoryInfo(handle).total == 80 * GiB
    assert pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU) == 40
    nvml.write(FakeNvmlState([h100(0, gpm_supported=True)], driver_branch=520))
    assert pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 1
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
