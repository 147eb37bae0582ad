"""Faults against the real daemon: each keeps it serving, is counted where it must be,
and leaves no traceback in its log. One section per area."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import minimal_config_dict
from realparts import free_port
from realparts.exporter_process import ExporterProcess
from realparts.fake_nvml import FakeGpu, FakeNvmlState, default_gpu_uuid, subprocess_env
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

pytestmark = pytest.mark.realparts

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels`, or None."""
    found = [
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
    )


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll `check` until it returns a truthy value (`timeout` scaled)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not reached in time"
            return result
        time.sleep(0.1)


# --- older drivers ------------------------------------------------------------------------
#
# The fake libnvidia-ml built as an R470 driver: no memory v2 (R510), no GPM (R520), no
# clock event reasons under their R535 name, no versioned temperature (R570). pynvml's
# own symbol lookup fails for those, exactly as on such a driver.

A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
GiB = 1024**3
FAST = {"interval": "250ms", "timeout": "200ms"}
R470 = "470.256.02"
R470_LACKS = (
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlGpmQueryDeviceSupport",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetTemperatureV",
)


def old_gpus(power_mw: int) -> list[FakeGpu]:
    return [
        FakeGpu(
            name=A100,
            util_gpu=40,
            memory_used=20 * GiB,
            memory_reserved=GiB // 2,
            temperature=61,
            clock_event_reasons=0x4,
            power_mw=power_mw,
            energy_mj=1_000_000,
        ),
        # An H100 has GPM, but not under a driver without the GPM entry points.
        FakeGpu(name=H100, gpm_supported=True, sm_activity=50.0, util_gpu=90, power_mw=power_mw),
    ]


def old_driver_exporter(lib_dir: Path, workdir: Path, config: dict[str, Any]) -> Any:
    state_path = workdir / "nvml-state.txt"

    def write(power_mw: int) -> None:
        FakeNvmlState(old_gpus(power_mw), driver_version=R470).write(state_path)

    write(200_000)
    exporter = ExporterProcess(config, workdir, env=subprocess_env(lib_dir, state_path))
    return exporter, write


def a_few_more_cycles(exporter: ExporterProcess, write: Callable[[int], None]) -> Samples:
    """Let the daemon run more cycles, proven by readings that changed in between."""
    samples: Samples = {}
    for power_mw in (210_000, 220_000, 230_000):
        write(power_mw)
        samples = eventually(
            lambda watts=power_mw / 1000: (
                (s := exporter.samples())
                and value(s, "llmcost_gpu_power_watts", gpu="1") == watts
                and s
            )
        )
    return samples


def test_an_old_driver_keeps_every_reading_it_has(old_driver_lib_dir: Path, tmp_path: Path) -> None:
    """Memory falls back to v1, temperature and clock events to their older calls, GPM is
    unsupported; nothing is counted as failing, cycle after cycle; engines keep counting."""
    with SimulatorProcess(tmp_path, "--profile", "steady") as simulator:
        config = minimal_config_dict(
            engines=[{"url": simulator.engine_url(0)}],
            cost={"gpu_prices_per_hour": {"A100": 1.79, "H100": 2.99}, "overhead_ratio": 0.0},
            collection=FAST,
        )
        exporter, write = old_driver_exporter(old_driver_lib_dir, tmp_path, config)
        with exporter:
            first = eventually(
                lambda: (s := exporter.samples()) and total(s, "llmcost_tokens_total") > 0 and s
            )
            last = a_few_more_cycles(exporter, write)
    assert total(last, "llmcost_tokens_total") > total(first, "llmcost_tokens_total")
    assert value(last, "llmcost_collector_up", collector="nvml") == 1
    assert value(last, "llmcost_collector_up", collector="vllm") == 1
    assert value(last, "llmcost_hourly_cost", component="gpu") == pytest.approx(1.79 + 2.99)
    assert total(last, "llmcost_gpu_errors_total") == 0
    assert total(last, "llmcost_collector_errors_total", collector="nvml") == 0
    for gpu in ("0", "1"):
        labels = {"gpu": gpu, "uuid": default_gpu_uuid(int(gpu))}
        assert value(last, "llmcost_gpu_healthy", **labels) == 1
        supported = {
            feature: value(last, "llmcost_gpu_feature_supported", feature=feature, **labels)
            for feature in ("memory", "temperature", "clock_events", "gpm", "power", "energy")
        }
        assert supported == {
            "memory": 1,
            "temperature": 1,
            "clock_events": 1,
            "gpm": 0,
            "power": 1,
            "energy": 1,
        }
        assert value(last, "llmcost_gpu_utilization_ratio", source="sm_activity", **labels) is None
    # v1's used memory includes what the driver reserves.
    assert value(last, "llmcost_gpu_memory_used_bytes", gpu="0") == 20 * GiB + GiB // 2
    assert value(last, "llmcost_gpu_temperature_celsius", gpu="0") == 61
    assert value(last, "llmcost_gpu_clock_event_active", gpu="0", reason="sw_power_cap") == 1
    assert value(last, "llmcost_gpu_selected_utilization_ratio", gpu="1", source="busy_time") == 0.9
    log = exporter.log()
    for symbol in R470_LACKS:
        assert log.count(f"NVML driver {R470} lacks {symbol}") == 1, log
    complaints = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    assert complaints == []
    assert "Traceback" not in log


def test_sm_activity_on_an_old_driver_falls_back_to_busy_time(
    old_driver_lib_dir: Path, tmp_path: Path
) -> None:
    """The chosen source cannot be read: said once at start, and the alert's series stays,
    from busy time, its source label saying so."""
    config = minimal_config_dict(
        engines=[{"url": f"http://127.0.0.1:{free_port()}/metrics"}],
        cost={"gpu_prices_per_hour": {"A100": 1.79, "H100": 2.99}, "overhead_ratio": 0.0},
        nvml={"utilization_source": "sm_activity"},
        collection=FAST,
    )
    exporter, write = old_driver_exporter(old_driver_lib_dir, tmp_path, config)
    with exporter:
        last = a_few_more_cycles(exporter, write)
    selected = "llmcost_gpu_selected_utilization_ratio"
    assert value(last, selected, gpu="0", source="busy_time") == 0.4
    assert value(last, selected, gpu="1", source="busy_time") == 0.9
    assert total(last, "llmcost_gpu_errors_total") == 0
    log = exporter.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert f"NVML driver {R470} has no GPM (R520+)" in errors[0]
    assert "nvml.utilization_source: sm_activity" in errors[0]
    assert "Traceback" not in log
