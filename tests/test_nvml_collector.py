"""NvmlCollector driven through the real pynvml bindings over the fake libnvidia-ml.

Nothing in pynvml is patched: the fake answers with NVML's structs and return codes,
so these tests check the collector's unit conversions, its NOT_SUPPORTED memory, its
lost-GPU back-off and its init retries the way they run against a real driver.
Time is an injected clock, so back-offs and GPM sample gaps are exact.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from realparts.fake_nvml import (
    MAX_MIGS,
    STATE_ENV,
    FakeGpu,
    FakeMig,
    FakeNvmlState,
    call_count,
)

from llm_cost_exporter.accounting.gpu_fleet import GpuStatus
from llm_cost_exporter.accounting.gpu_inventory import BilledGpu
from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.nvml import NvmlCollector
from llm_cost_exporter.collectors.readings import GpuReading, GpuSnapshot, MigInstance

GiB = 1024**3
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
EVENT_MASKS = (0x0, 0x1, 0x4, 0x8, 0x20, 0x40, 0x80, 0x4 | 0x40)


class FakeClock:
    """The collector's monotonic clock, moved only by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Rig:
    """One test's fake state file, clock and collectors (closed at teardown)."""

    def __init__(self, path: Path, lib: ctypes.CDLL) -> None:
        self.path = path
        self.lib = lib
        self.clock = FakeClock()
        self.collectors: list[NvmlCollector] = []

    def write(self, gpus: list[FakeGpu], init_error: int = 0) -> list[FakeGpu]:
        """Write the state; returns the GPUs with their default UUIDs filled in."""
        state = FakeNvmlState(gpus, init_error=init_error)
        state.write(self.path)
        return state.gpus

    def collector(self) -> NvmlCollector:
        collector = NvmlCollector(timeout=5.0, clock=self.clock)
        self.collectors.append(collector)
        return collector

    def started(self, gpus: list[FakeGpu]) -> tuple[NvmlCollector, list[FakeGpu]]:
        gpus = self.write(gpus)
        collector = self.collector()
        assert collector.start() is None
        return collector, gpus

    def count(self, function: str) -> int:
        return call_count(self.lib, function)

    def reset_counts(self) -> None:
        self.lib.fakeNvmlResetCallCounts()


@pytest.fixture
def rig(fake_lib: ctypes.CDLL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "nvml-state.txt"))
    session = Rig(tmp_path / "nvml-state.txt", fake_lib)
    yield session
    for collector in session.collectors:
        collector.close()


def fleet(sm_base: float = 20.0) -> list[FakeGpu]:
    """4 H100s with GPM and 4 A100s without, every value distinct per GPU."""
    return [
        FakeGpu(
            name=H100 if i < 4 else A100,
            util_gpu=13 + i * 11,
            memory_total=80 * GiB,
            memory_used=(i + 1) * GiB + 4096 * i,
            memory_reserved=GiB // 2,  # v1 would add it to `used`; v2 does not
            power_mw=212_345 + i * 10_001,
            energy_mj=1_234_567_890 + i * 1_001,
            temperature=35 + i,
            sm_clock_mhz=1410 + i * 15,
            clock_event_reasons=EVENT_MASKS[i],
            gpm_supported=i < 4,
            sm_activity=sm_base + i * 7.5,
            sm_occupancy=sm_base / 2 + i * 3.25,
        )
        for i in range(8)
    ]


def assert_matches(reading: GpuReading, gpu: FakeGpu, index: int) -> None:
    """The reading carries the fake's values, converted to base units."""
    assert (reading.index, reading.uuid, reading.name) == (index, gpu.uuid, gpu.name)
    assert (reading.healthy, reading.error) == (True, None)
    assert reading.busy_utilization == gpu.util_gpu / 100
    assert reading.memory_used_bytes == float(gpu.memory_used)
    assert reading.memory_total_bytes == float(gpu.memory_total)
    assert reading.power_watts == gpu.power_mw / 1000
    assert reading.energy_joules == gpu.energy_mj / 1000
    assert reading.temperature_celsius == float(gpu.temperature)
    assert reading.sm_clock_hertz == gpu.sm_clock_mhz * 1_000_000
    assert reading.clock_event_reasons == gpu.clock_event_reasons


def warnings_or_worse(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_eight_gpus_of_two_models(rig: Rig) -> None:
    """Inventory and every per-GPU value, with units converted from NVML's."""
    collector, gpus = rig.started(fleet())
    assert collector.available and collector.unavailable_reason is None
    assert collector.inventory() == [(i, g.uuid, g.name) for i, g in enumerate(gpus)]
    assert [name for _, _, name in collector.inventory()] == [H100] * 4 + [A100] * 4

    snapshot = collector.read()
    assert snapshot.driver_version == "550.54.15"
    assert len(snapshot.gpus) == 8
    for index, (reading, gpu) in enumerate(zip(snapshot.gpus, gpus, strict=True)):
        assert_matches(reading, gpu, index)
        assert (reading.mig_enabled, reading.mig_instances) == (False, ())
    first = snapshot.gpus[0]
    assert first.power_watts == 212.345
    assert first.energy_joules == 1_234_567.89
    assert first.busy_utilization == 0.13
    assert first.memory_used_bytes == 1 * GiB
    assert first.sm_clock_hertz == 1.41e9
    assert snapshot.gpus[7].clock_event_reasons == 0x44


def test_gpm_needs_two_samples_apart(rig: Rig) -> None:
    """SM activity comes from two GPM samples >= 0.1 s apart, only on GPUs with GPM."""
    rig.reset_counts()
    collector, gpus = rig.started(fleet(sm_base=20.0))
    assert rig.count("nvmlGpmQueryDeviceSupport") == 8, "support is asked at start"
    assert collector.sm_activity_gaps == [
        (i, A100, "NVML reports no GPM on it (Hopper or newer)") for i in range(4, 8)
    ]
    rig.reset_counts()
    first = collector.read()
    assert all(r.sm_activity is None and r.sm_occupancy is None for r in first.gpus)
    assert [r.supported["gpm"] for r in first.gpus] == [True] * 4 + [False] * 4
    assert first.gpus[0].utilization("auto") == (gpus[0].util_gpu / 100, "busy_time")
    assert first.gpus[0].utilization("sm_activity") is None, "one GPM sample: no figure yet"
    assert rig.count("nvmlGpmSampleGet") == 4
    assert rig.count("nvmlGpmMetricsGet") == 0, "one sample holds no metrics yet"

    gpus = rig.write(fleet(sm_base=60.0))
    rig.clock.advance(0.1)
    second = collector.read()
    assert rig.count("nvmlGpmSampleGet") == 8
    for reading, gpu in zip(second.gpus[:4], gpus[:4], strict=True):
        assert reading.sm_activity == gpu.sm_activity / 100
        assert reading.sm_occupancy == gpu.sm_occupancy / 100
        assert reading.supported["gpm"] is True
        assert reading.utilization("auto") == (gpu.sm_activity / 100, "sm_activity")
        assert reading.utilization("busy_time") == (gpu.util_gpu / 100, "busy_time")
    assert second.gpus[1].sm_activity == 0.675
    for reading, gpu in zip(second.gpus[4:], gpus[4:], strict=True):
        assert (reading.sm_activity, reading.sm_occupancy) == (None, None)
        assert reading.supported["gpm"] is False
        assert reading.utilization("auto") == (gpu.util_gpu / 100, "busy_time")
        assert reading.utilization("sm_activity") == (gpu.util_gpu / 100, "busy_time")

    rig.clock.advance(0.05)
    close = collector.read()
    assert rig.count("nvmlGpmSampleGet") == 8, "a sample < 0.1 s after the last one"
    assert close.gpus[1].sm_activity == 0.675, "the last pair's figure stands in the meantime"
    rig.clock.advance(0.06)
    collector.read()
    assert rig.count("nvmlGpmSampleGet") == 12
    assert rig.count("nvmlGpmQueryDeviceSupport") == 0, "support is asked once per GPU"

    collector.close()
    assert rig.count("nvmlGpmSampleFree") == 8
    assert rig.count("nvmlShutdown") == 1


def test_not_supported_is_asked_once_and_quietly(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing power sensor is an ordinary GPU: no retry per cycle, no warning."""
    caplog.set_level(logging.DEBUG, logger="llm_cost_exporter.collectors.nvml")
    collector, gpus = rig.started(
        [FakeGpu(not_supported=("nvmlDeviceGetPowerUsage",)), FakeGpu(power_mw=300_000)]
    )
    rig.reset_counts()
    for _ in range(5):
        snapshot = collector.read()
        rig.clock.advance(1.0)
    quiet, normal = snapshot.gpus
    assert quiet.power_watts is None
    assert quiet.supported["power"] is False
    assert quiet.energy_joules == 0.0 and quiet.supported["energy"] is True
    assert quiet.temperature_celsius == 40.0
    assert normal.power_watts == 300.0 and normal.supported["power"] is True
    assert rig.count("nvmlDeviceGetPowerUsage") == 5 + 1
    assert warnings_or_worse(caplog) == []


def test_a_failing_query_is_counted_each_cycle_and_logged_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected NVML error is not NOT_SUPPORTED: it is asked again and counted."""
    caplog.set_level(logging.DEBUG, logger="llm_cost_exporter.collectors.nvml")
    collector, _ = rig.started([FakeGpu(failing=("nvmlDeviceGetTemperatureV",)), FakeGpu()])
    rig.reset_counts()
    snapshots = []
    for _ in range(3):
        snapshots.append(collector.read())
        rig.clock.advance(1.0)
    assert [s.gpus[0].error for s in snapshots] == ["query_failed"] * 3
    assert all(s.gpus[0].healthy and s.gpus[0].temperature_celsius is None for s in snapshots)
    assert snapshots[-1].gpus[0].supported["temperature"] is True
    assert snapshots[-1].gpus[0].power_watts == 100.0
    assert snapshots[-1].gpus[1].error is None
    assert rig.count("nvmlDeviceGetTemperatureV") == 3 * 2
    assert len(warnings_or_worse(caplog)) == 1


def test_mig_gpu(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A MIG GPU lists its instances; device-wide busy time and GPM are off, quietly."""
    caplog.set_level(logging.DEBUG, logger="llm_cost_exporter.collectors.nvml")
    migs = [
        FakeMig("MIG-aaaa-0001", gpu_instance_id=1, memory_total=40 * GiB, memory_used=3 * GiB),
        FakeMig("MIG-aaaa-0002", gpu_instance_id=5, memory_total=20 * GiB, memory_used=0),
    ]
    gpu = FakeGpu(
        mig_mode=1,
        migs=migs,
        gpm_supported=True,
        util_gpu=50,
        memory_used=7 * GiB,
        power_mw=345_600,
        energy_mj=9_000,
    )
    collector, _ = rig.started([gpu])
    rig.reset_counts()
    for _ in range(4):
        (reading,) = collector.read().gpus
        rig.clock.advance(1.0)
    assert reading.mig_enabled is True
    assert reading.mig_instances == (
        MigInstance("MIG-aaaa-0001", 1, float(3 * GiB), float(40 * GiB)),
        MigInstance("MIG-aaaa-0002", 5, 0.0, float(20 * GiB)),
    )
    assert reading.mig_slices == MAX_MIGS  # the fake's max MIG device count, as an H100's
    assert (reading.busy_utilization, reading.sm_activity, reading.sm_occupancy) == (
        None,
        None,
        None,
    )
    assert reading.supported["busy_utilization"] is False
    assert reading.supported["gpm"] is False
    assert reading.supported["mig"] is True
    assert reading.power_watts == 345.6
    assert reading.energy_joules == 9.0
    assert (reading.memory_used_bytes, reading.memory_total_bytes) == (7 * GiB, 80 * GiB)
    assert reading.utilization("auto") is None
    assert rig.count("nvmlDeviceGetUtilizationRates") <= 1
    assert rig.count("nvmlGpmSampleGet") == 0
    assert warnings_or_worse(caplog) == []


def test_lost_gpu_backs_off_and_recovers(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """A GPU off the bus is reported once, left alone during its back-off, then re-found."""
    gpus = [FakeGpu(power_mw=200_000 + i * 1_000, energy_mj=i * 5_000) for i in range(4)]
    collector, gpus = rig.started(gpus)
    assert all(r.healthy for r in collector.read().gpus)
    t0 = rig.clock.now + 100.0

    def at(seconds: float) -> None:
        rig.clock.now = t0 + seconds

    at(0.0)

    lost_state = rig.write([FakeGpu(**{**vars(g), "lost": i == 2}) for i, g in enumerate(gpus)])
    rig.reset_counts()

    def read_lost() -> GpuSnapshot:
        snapshot = collector.read()
        lost = snapshot.gpus[2]
        assert (lost.index, lost.uuid, lost.name) == (2, gpus[2].uuid, gpus[2].name)
        assert (lost.healthy, lost.error, lost.power_watts) == (False, "gpu_lost", None)
        for index in (0, 1, 3):
            assert_matches(snapshot.gpus[index], lost_state[index], index)
        return snapshot

    read_lost()
    rig.reset_counts()
    for seconds in (0.5, 0.999):
        at(seconds)
        read_lost()
    assert rig.count("nvmlDeviceGetHandleByUUID") == 0
    assert rig.count("nvmlDeviceGetPowerUsage") == 2 * 3, "no call on the lost GPU"

    at(1.0)  # first retry, 1 s after the loss: next in 2 s
    read_lost()
    assert rig.count("nvmlDeviceGetHandleByUUID") == 1
    for seconds in (2.0, 2.999):
        at(seconds)
        read_lost()
    assert rig.count("nvmlDeviceGetHandleByUUID") == 1
    at(3.0)  # second retry: next in 4 s
    read_lost()
    assert rig.count("nvmlDeviceGetHandleByUUID") == 2

    rig.write(gpus)
    at(6.999)
    read_lost()  # back on the bus, but still inside the back-off
    assert rig.count("nvmlDeviceGetHandleByUUID") == 2
    at(7.0)
    back = collector.read()
    assert rig.count("nvmlDeviceGetHandleByUUID") == 3
    for index, (reading, gpu) in enumerate(zip(back.gpus, gpus, strict=True)):
        assert_matches(reading, gpu, index)
    assert back.gpus[2].power_watts == 202.0
    for seconds in (7.0, 8.0):
        at(seconds)
        assert collector.read().gpus[2].healthy
    assert rig.count("nvmlDeviceGetHandleByUUID") == 3, "a recovered GPU is read normally"
    recovered = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(recovered) == 1 and gpus[2].uuid in recovered[0]

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert gpus[2].uuid in errors[0].getMessage()


def test_lost_gpu_backoff_doubles_up_to_a_minute(rig: Rig) -> None:
    """Retries of a GPU that stays lost thin out to one a minute, never fewer."""
    collector, _ = rig.started([FakeGpu()])
    rig.write([FakeGpu(lost=True)])
    rig.reset_counts()
    t0 = rig.clock.now
    collector.read()
    retry_at = t0
    for retries, gap in enumerate((1, 2, 4, 8, 16, 32, 60, 60), start=1):
        retry_at += gap
        rig.clock.now = retry_at - 0.001
        assert not collector.read().gpus[0].healthy
        assert rig.count("nvmlDeviceGetHandleByUUID") == retries - 1
        rig.clock.now = retry_at
        assert collector.read().gpus[0].error == "gpu_lost"
        assert rig.count("nvmlDeviceGetHandleByUUID") == retries


def test_mig_toggle_keeps_gpm_samples_balanced(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Leaving and re-entering MIG mode must neither leak GPM samples nor misuse them."""
    caplog.set_level(logging.DEBUG, logger="llm_cost_exporter.collectors.nvml")
    rig.reset_counts()
    collector, _ = rig.started([FakeGpu(gpm_supported=True, sm_activity=50.0)])
    activity = []
    for mig_mode in (0, 0, 1, 0, 0):
        rig.write([FakeGpu(gpm_supported=True, sm_activity=50.0, mig_mode=mig_mode)])
        rig.clock.advance(1.0)
        activity.append(collector.read().gpus[0].sm_activity)
    collector.close()
    assert activity == [None, 0.5, None, None, 0.5]
    assert not [r for r in caplog.records if "gpm failed" in r.getMessage()]
    assert rig.count("nvmlGpmSampleFree") == rig.count("nvmlGpmSampleAlloc")


def test_init_failure_is_retried_after_a_minute(rig: Rig) -> None:
    """No driver: start() says why, read() fails as `unavailable` until the retry."""
    gpus = [FakeGpu(), FakeGpu(name=A100)]
    rig.write(gpus, init_error=9)
    collector = rig.collector()
    reason = collector.start()
    assert reason is not None and "driver" in reason.lower()
    assert collector.unavailable_reason == reason
    assert not collector.available and collector.inventory() == []
    with pytest.raises(CollectorError) as failure:
        collector.read()
    assert failure.value.reason == "unavailable"

    gpus = rig.write(gpus)
    rig.reset_counts()
    rig.clock.advance(59.0)
    with pytest.raises(CollectorError):
        collector.read()
    assert rig.count("nvmlInitWithFlags") + rig.count("nvmlInit_v2") == 0
    rig.clock.advance(2.0)
    snapshot = collector.read()
    assert collector.available and collector.unavailable_reason is None
    assert [(r.uuid, r.name) for r in snapshot.gpus] == [(g.uuid, g.name) for g in gpus]
    assert all(r.healthy and r.power_watts == 100.0 for r in snapshot.gpus)


@pytest.mark.parametrize("state_file", ["missing.txt", None])
def test_no_state_file_means_no_driver(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_file: str | None
) -> None:
    """Without the file (or the variable) the fake has no driver: start() says so."""
    if state_file is None:
        monkeypatch.delenv(STATE_ENV)
    else:
        monkeypatch.setenv(STATE_ENV, str(tmp_path / state_file))
    reason = rig.collector().start()
    assert reason is not None and "driver" in reason.lower()


async def test_collect_runs_in_the_worker(rig: Rig) -> None:
    """The async entry point returns the same snapshot a blocking read would."""
    collector, gpus = rig.started([FakeGpu(power_mw=123_000), FakeGpu(name=A100)])
    snapshot = await collector.collect()
    assert isinstance(snapshot, GpuSnapshot)
    assert [(r.index, r.uuid, r.power_watts) for r in snapshot.gpus] == [
        (0, gpus[0].uuid, 123.0),
        (1, gpus[1].uuid, 100.0),
    ]


def test_energy_survives_a_driver_reload(rig: Rig) -> None:
    """NVML's energy counter restarts low after a reload; the exported total never drops."""
    gpus = rig.write([FakeGpu(energy_mj=1_000_000)])
    collector = rig.collector()
    assert collector.start() is None
    index, uuid, name = collector.inventory()[0]
    status = GpuStatus(BilledGpu(uuid, index, uuid, name, "H100", 3.0, source="nvml"))

    totals, unbilled = [], []
    for energy_mj in (1_000_000, 1_500_000, 200_000, 260_000):
        rig.write([FakeGpu(**{**vars(gpus[0]), "energy_mj": energy_mj})])
        rig.clock.advance(15.0)
        (reading,) = collector.read().gpus
        assert reading.energy_joules == energy_mj / 1000
        status.observe(reading, rig.clock())
        totals.append(status.energy_joules_total)
        unbilled.append(status.take_unbilled_energy())
    assert totals == [1000.0, 1500.0, 1700.0, 1760.0]
    assert unbilled == [0.0, 500.0, 200.0, 60.0]
    assert sum(unbilled) == 760.0


# --- older drivers ------------------------------------------------------------------------

# Per driver branch: the memory call's `used` (v2 leaves the reserved memory out), whether
# GPM answers, and the calls asked once and then never again because the driver lacks them.
DRIVERS = [
    (470, "v1", False, {"nvmlDeviceGetMemoryInfo_v2", "nvmlGpmQueryDeviceSupport",
                        "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV"}),
    (510, "v2", False, {"nvmlGpmQueryDeviceSupport", "nvmlDeviceGetCurrentClocksEventReasons",
                        "nvmlDeviceGetTemperatureV"}),
    (520, "v2", True, {"nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetTemperatureV"}),
    (535, "v2", True, {"nvmlDeviceGetTemperatureV"}),
    (570, "v2", True, set()),
]  # fmt: skip
LACKED = {
    "nvmlDeviceGetMemoryInfo_v2": ("memory", "nvmlDeviceGetMemoryInfo"),
    "nvmlDeviceGetCurrentClocksEventReasons": (
        "clock_events",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
    ),
    "nvmlDeviceGetTemperatureV": ("temperature", "nvmlDeviceGetTemperature"),
    "nvmlGpmQueryDeviceSupport": ("gpm", None),
}
"""What each newer call reads, and the older call that reads it instead."""


@pytest.mark.parametrize(("branch", "memory_call", "gpm", "lacks"), DRIVERS)
def test_an_older_driver_is_read_with_the_calls_it_has(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
    branch: int,
    memory_call: str,
    gpm: bool,
    lacks: set[str],
) -> None:
    """A call the driver lacks is asked once, the older one answers from then on, and
    nothing is counted as a failure or warned about."""
    caplog.set_level(logging.INFO, logger="llm_cost_exporter.collectors.nvml")
    gpus = [g for g in fleet() if g.name == H100][:2]
    state = FakeNvmlState(gpus, driver_version=f"{branch}.1.2", driver_branch=branch)
    state.write(rig.path)
    rig.reset_counts()
    collector = rig.collector()
    assert collector.start() is None
    snapshots = []
    for _ in range(4):
        snapshots.append(collector.read())
        rig.clock.advance(1.0)
    for snapshot in snapshots:
        assert snapshot.driver_version == f"{branch}.1.2"
        assert [r.error for r in snapshot.gpus] == [None, None]
    last = snapshots[-1]
    for reading, gpu in zip(last.gpus, state.gpus, strict=True):
        used = gpu.memory_used + (gpu.memory_reserved if memory_call == "v1" else 0)
        assert reading.memory_used_bytes == float(used)
        assert reading.memory_total_bytes == float(gpu.memory_total)
        assert reading.temperature_celsius == float(gpu.temperature)
        assert reading.clock_event_reasons == gpu.clock_event_reasons
        assert reading.power_watts == gpu.power_mw / 1000
        assert reading.supported == {**dict.fromkeys(reading.supported, True), "gpm": gpm}
        assert (reading.sm_activity is not None) is gpm
        assert reading.utilization("sm_activity") == (
            (gpu.sm_activity / 100, "sm_activity") if gpm else (gpu.util_gpu / 100, "busy_time")
        )
    expected_lines = []
    for symbol in lacks:
        feature, instead = LACKED[symbol]
        assert rig.count(symbol) == 1, f"{symbol} is asked once for the whole driver"
        if instead is not None:
            assert rig.count(instead) == 4 * 2
        reads = f"reading {feature} with {instead}" if instead else f"no {feature} reading"
        expected_lines.append(f"NVML driver {branch}.1.2 lacks {symbol}: {reads}")
    assert rig.count("nvmlGpmSampleGet") == (4 * 2 if gpm else 0)
    lines = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
    assert sorted(lines) == sorted(expected_lines)
    assert warnings_or_worse(caplog) == []
    gaps = collector.sm_activity_gaps
    assert gaps == ([] if gpm else [(i, H100, f"NVML driver {branch}.1.2 has no GPM (R520+)")
                                    for i in range(2)])  # fmt: skip


def test_mig_instances_on_an_old_driver_read_memory_with_v1(rig: Rig) -> None:
    migs = [
        FakeMig("MIG-old-0001", gpu_instance_id=1, memory_total=40 * GiB, memory_used=3 * GiB),
        FakeMig("MIG-old-0002", gpu_instance_id=2, memory_total=40 * GiB, memory_used=GiB),
    ]
    gpu = FakeGpu(name=A100, mig_mode=1, migs=migs, memory_used=5 * GiB, memory_reserved=GiB)
    FakeNvmlState([gpu], driver_version="470.256.02", driver_branch=470).write(rig.path)
    rig.reset_counts()
    collector = rig.collector()
    assert collector.start() is None
    for _ in range(3):
        (reading,) = collector.read().gpus
        rig.clock.advance(1.0)
    assert reading.error is None
    assert reading.memory_used_bytes == 6 * GiB, "v1: the driver's reserved memory included"
    assert reading.mig_instances == (
        MigInstance("MIG-old-0001", 1, float(3 * GiB), float(40 * GiB)),
        MigInstance("MIG-old-0002", 2, float(GiB), float(40 * GiB)),
    )
    assert rig.count("nvmlDeviceGetMemoryInfo_v2") == 1
    assert collector.sm_activity_gaps == [
        (0, A100, "it runs in MIG mode, where NVML gives no device-wide SM activity")
    ]


def test_a_driver_started_again_in_the_same_collector_is_asked_afresh(rig: Rig) -> None:
    """The call that answered a feature is forgotten when NVML starts again, as what the
    driver lacked is: a newer call that answered before the restart is not assumed."""
    FakeNvmlState([FakeGpu(memory_reserved=GiB)]).write(rig.path)
    collector = rig.collector()
    assert collector.start() is None
    assert collector.read().gpus[0].memory_used_bytes == 0.0, "v2: reserved memory left out"
    collector.close()
    FakeNvmlState([FakeGpu(memory_reserved=GiB)], driver_branch=470).write(rig.path)
    rig.reset_counts()
    assert collector.start() is None
    for _ in range(2):
        reading = collector.read().gpus[0]
        rig.clock.advance(1.0)
    assert reading.error is None
    assert reading.memory_used_bytes == GiB, "v1 answers on the older driver"
    assert reading.supported["memory"]
    assert rig.count("nvmlDeviceGetMemoryInfo") == 2


def test_a_driver_loaded_again_is_asked_afresh(rig: Rig) -> None:
    """What one driver lacked is forgotten when NVML starts again (a driver upgrade)."""
    FakeNvmlState([FakeGpu(memory_reserved=GiB)], driver_branch=470).write(rig.path)
    collector = rig.collector()
    assert collector.start() is None
    assert collector.read().gpus[0].memory_used_bytes == GiB
    collector.close()
    FakeNvmlState([FakeGpu(memory_reserved=GiB)]).write(rig.path)
    collector = rig.collector()
    assert collector.start() is None
    assert collector.read().gpus[0].memory_used_bytes == 0.0
