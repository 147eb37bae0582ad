"""The real daemon reading GPUs through the real pynvml over the fake libnvidia-ml.

The tests start the exporter as a child process with the fake library on its
library path and steer the GPUs by rewriting the fake's state file; the last
one runs the daemon in this process, where the fake is preloaded, to shorten
how long it waits for a hanging NVML init.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import minimal_config_dict
from prometheus_client.parser import text_string_to_metric_families
from realparts import free_port
from realparts.exporter_process import ExporterProcess
from realparts.fake_nvml import (
    STATE_ENV,
    FakeGpu,
    FakeMig,
    FakeNvmlState,
    default_gpu_uuid,
    subprocess_env,
)
from realparts.samples import Samples, eventually, total, value
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon import assembly as daemon

pytestmark = pytest.mark.realparts

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
RENTED = {"H100": 2.99, "A100*80GB*": 1.79}
FAST = {"interval": "250ms", "timeout": "200ms"}
EVERY_FAMILY = {"gpu_diagnostics": True, "model_gauges": True}


def h100(**fields: Any) -> FakeGpu:
    return FakeGpu(name=H100, gpm_supported=True, util_gpu=100, sm_activity=23.0, **fields)


def a100(**fields: Any) -> FakeGpu:
    return FakeGpu(name=A100, util_gpu=80, **fields)


class GpuNode:
    """The fake's state file and the environment that makes the daemon load it."""

    def __init__(self, lib_dir: Path, workdir: Path) -> None:
        self.state_path = workdir / "nvml-state.txt"
        self.env = subprocess_env(lib_dir, self.state_path)
        self.workdir = workdir

    def write(self, gpus: list[FakeGpu], **state: Any) -> None:
        FakeNvmlState(gpus, **state).write(self.state_path)

    def exporter(self, config: dict[str, Any]) -> ExporterProcess:
        return ExporterProcess(config, self.workdir, env=self.env)


@pytest.fixture
def node(lib_dir: Path, tmp_path: Path) -> GpuNode:
    return GpuNode(lib_dir, tmp_path)


def dead_engine() -> list[dict[str, str]]:
    return [{"url": f"http://127.0.0.1:{free_port()}/metrics"}]


def rented(**overrides: Any) -> dict[str, Any]:
    """Every GPU family on, the optional ones included: these tests read them all."""
    return minimal_config_dict(
        cost={"gpu_prices_per_hour": RENTED, "overhead_ratio": 0.0},
        collection=FAST,
        metrics=EVERY_FAMILY,
        **overrides,
    )


def test_eight_gpus_of_two_models_are_billed_to_the_cent(node: GpuNode) -> None:
    node.write([h100() for _ in range(4)] + [a100() for _ in range(4)])
    with node.exporter(rented(engines=dead_engine())) as exporter:
        eventually(lambda: value(exporter.samples(), "llmcost_gpu_utilization_ratio", gpu="0",
                                 source="sm_activity") is not None)  # fmt: skip
        first, first_at = exporter.samples(), time.monotonic()
        time.sleep(10)
        last, last_at = exporter.samples(), time.monotonic()
    hourly = 4 * 2.99 + 4 * 1.79
    assert value(last, "llmcost_hourly_cost", component="gpu") == pytest.approx(hourly, abs=1e-9)
    for index in range(8):
        uuid = default_gpu_uuid(index)
        price = 2.99 if index < 4 else 1.79
        key = "H100" if index < 4 else "A100*80GB*"
        assert value(last, "llmcost_gpu_hourly_cost", price_key=key) == price
        assert value(last, "llmcost_gpu_info", uuid=uuid, source="nvml",
                     price_key="H100" if index < 4 else "A100*80GB*") == 1  # fmt: skip
    spent = value(last, "llmcost_cost_total", component="gpu") - value(
        first, "llmcost_cost_total", component="gpu"
    )
    expected = hourly * (last_at - first_at) / 3600
    # Each reading may lag by one 250 ms cycle: at $19.12/h that is under $0.0014.
    assert abs(spent - expected) < 0.005, (spent, expected)

    # GPM: SM activity on the H100s only, each utilization labelled with its source.
    for index in range(8):
        labels = {"gpu": str(index), "uuid": default_gpu_uuid(index)}
        busy = value(last, "llmcost_gpu_utilization_ratio", source="busy_time", **labels)
        sm = value(last, "llmcost_gpu_utilization_ratio", source="sm_activity", **labels)
        gpm = value(last, "llmcost_gpu_feature_supported", feature="gpm", **labels)
        if index < 4:
            assert (busy, sm, gpm) == (1.0, 0.23, 1)
            selected = value(last, "llmcost_gpu_selected_utilization_ratio", **labels)
            assert value(last, "llmcost_gpu_selected_utilization_ratio", source="sm_activity",
                         **labels) == selected == 0.23  # fmt: skip
        else:
            assert (busy, sm, gpm) == (0.8, None, 0)
            assert value(last, "llmcost_gpu_selected_utilization_ratio", source="busy_time",
                         **labels) == 0.8  # fmt: skip
    assert "Traceback" not in exporter.log()


def test_busy_time_can_be_chosen_over_sm_activity(node: GpuNode) -> None:
    node.write([h100()])
    config = rented(engines=dead_engine(), nvml={"utilization_source": "busy_time"})
    with node.exporter(config) as exporter:
        samples = eventually(
            lambda: (
                (s := exporter.samples())
                and value(s, "llmcost_gpu_utilization_ratio", source="sm_activity") is not None
                and s
            )
        )
    assert value(samples, "llmcost_gpu_selected_utilization_ratio", source="busy_time") == 1.0
    assert value(samples, "llmcost_gpu_selected_utilization_ratio", source="sm_activity") is None


def test_a_gpu_in_mig_mode_is_reported_without_errors(node: GpuNode) -> None:
    migs = [FakeMig(f"MIG-{i}-aaaa", i + 1, 10 * 1024**3, 1024**3 * i) for i in range(3)]
    node.write([h100(mig_mode=1, migs=migs, power_mw=400_000), h100()])
    state_file = str(node.workdir / "state.json")  # without one, a warning says so
    with node.exporter(rented(engines=dead_engine(), state_file=state_file)) as exporter:
        samples = eventually(
            lambda: (
                (s := exporter.samples())
                and value(s, "llmcost_gpu_utilization_ratio", gpu="1", source="sm_activity")
                and s
            )
        )
        time.sleep(1)
    mig = {"gpu": "0", "uuid": default_gpu_uuid(0)}
    assert value(samples, "llmcost_gpu_mig_mode_enabled", **mig) == 1
    assert value(samples, "llmcost_gpu_mig_mode_enabled", gpu="1") == 0
    for i in range(3):
        uuid = f"MIG-{i}-aaaa"
        assert value(samples, "llmcost_gpu_mig_instance_info", mig_uuid=uuid, **mig) == 1
        assert value(samples, "llmcost_gpu_mig_instance_info", gpu_instance=str(i + 1), **mig)
        assert value(samples, "llmcost_gpu_mig_memory_used_bytes", mig_uuid=uuid) == i * 1024**3
    # What NVML refuses in MIG mode is marked unsupported and left absent, not zero.
    assert value(samples, "llmcost_gpu_feature_supported", feature="busy_utilization", **mig) == 0
    assert value(samples, "llmcost_gpu_feature_supported", feature="gpm", **mig) == 0
    assert value(samples, "llmcost_gpu_utilization_ratio", **mig) is None
    assert value(samples, "llmcost_gpu_power_watts", **mig) == 400.0
    assert value(samples, "llmcost_gpu_healthy", **mig) == 1
    assert total(samples, "llmcost_gpu_errors_total") == 0
    complaints = [
        line
        for line in exporter.log().splitlines()
        if (" WARNING " in line or " ERROR " in line) and "vllm target" not in line
    ]
    assert complaints == []


def test_a_lost_gpu_stays_billed_and_recovers(node: GpuNode) -> None:
    gpus = [a100(power_mw=300_000 + i) for i in range(4)]
    node.write(gpus)
    with node.exporter(rented(engines=dead_engine())) as exporter:
        eventually(lambda: value(exporter.samples(), "llmcost_gpu_healthy", gpu="2") == 1)
        gpus[2].lost = True
        node.write(gpus)
        lost = eventually(
            lambda: (
                (s := exporter.samples())
                and total(s, "llmcost_gpu_errors_total", gpu="2", reason="gpu_lost") >= 2
                and s
            )
        )
        later = eventually(
            lambda: (
                (s := exporter.samples())
                and total(s, "llmcost_gpu_errors_total", gpu="2")
                > total(lost, "llmcost_gpu_errors_total", gpu="2")
                and s
            )
        )
        assert value(lost, "llmcost_gpu_healthy", gpu="2") == 0
        assert value(lost, "llmcost_gpu_power_watts", gpu="2") is None  # unknown, not zero
        for other in ("0", "1", "3"):
            assert value(lost, "llmcost_gpu_healthy", gpu=other) == 1
            assert value(later, "llmcost_gpu_power_watts", gpu=other) == 300 + int(other) / 1000
        assert total(later, "llmcost_gpu_errors_total", gpu="2") > total(
            lost, "llmcost_gpu_errors_total", gpu="2"
        )
        # Still billed: the GPU keeps its price and the node its full hourly cost.
        assert value(later, "llmcost_gpu_hourly_cost", price_key="A100*80GB*") == 1.79
        assert value(later, "llmcost_hourly_cost", component="gpu") == pytest.approx(4 * 1.79)
        gpus[2].lost = False
        node.write(gpus)
        recovered = eventually(
            lambda: (
                (s := exporter.samples()) and value(s, "llmcost_gpu_healthy", gpu="2") == 1 and s
            )
        )
        assert value(recovered, "llmcost_gpu_power_watts", gpu="2") == 300.002
    log = exporter.log()
    assert log.count("is lost") == 1, log
    assert log.count("answers again") == 1, log


def test_a_gpu_lost_before_start_is_billed_as_declared_until_it_answers(node: GpuNode) -> None:
    gpus = [h100(), h100(lost=True)]
    node.write(gpus)
    config = rented(engines=dead_engine())
    config["cost"]["gpus"] = [{"model": "H100", "count": 2}]
    with node.exporter(config) as exporter:
        before = eventually(
            lambda: (s := exporter.samples()) and "llmcost_gpu_info" in str(s) and s
        )
        gpus[1].lost = False
        node.write(gpus)
        after = eventually(
            lambda: (
                (s := exporter.samples()) and value(s, "llmcost_gpu_healthy", gpu="1") == 1 and s
            )
        )
    assert value(before, "llmcost_gpu_info", gpu="missing0", source="missing") == 1
    assert value(before, "llmcost_hourly_cost", component="gpu") == pytest.approx(2 * 2.99)
    assert value(after, "llmcost_gpu_info", source="missing") is None
    assert value(after, "llmcost_gpu_info", gpu="1", uuid=default_gpu_uuid(1), source="nvml") == 1
    assert value(after, "llmcost_hourly_cost", component="gpu") == pytest.approx(2 * 2.99)


def test_two_engines_on_disjoint_gpus_split_the_cost_by_model(node: GpuNode) -> None:
    node.write([h100() for _ in range(4)] + [a100() for _ in range(4)] + [a100(), a100()])
    simulator = SimulatorProcess(
        node.workdir,
        "--engines", "2",
        "--model", "big,small",
        "--profile", "steady",
        "--level", "0.5",
        "--capacity", "2000",
    )  # fmt: skip
    with simulator:
        config = minimal_config_dict(
            engines=[
                {"url": simulator.engine_url(0), "gpus": [0, 1, 2, 3]},
                {
                    "url": simulator.engine_url(1),
                    "gpus": [default_gpu_uuid(i) for i in (4, 5, 6, 7)],
                },
            ],
            cost={"gpu_prices_per_hour": RENTED, "overhead_ratio": 0.3, "node_extra_per_hour": 2.0},
            collection=FAST,
            windows=["20s"],
            metrics=EVERY_FAMILY,
        )
        with node.exporter(config) as exporter:
            eventually(lambda: value(exporter.samples(), "llmcost_model_cost_total", model="big"))
            time.sleep(2)
            first_truth, first = simulator.ground_truth(), exporter.samples()
            first_at = time.monotonic()
            time.sleep(20)
            last_truth, last = simulator.ground_truth(), exporter.samples()
            last_at = time.monotonic()
    models = {"big": 0, "small": 1}
    node_spend = total(last, "llmcost_cost_total")
    by_model = {
        m: value(last, "llmcost_model_cost_total", model=m) for m in (*models, "(unclaimed)")
    }
    assert sum(by_model.values()) == pytest.approx(node_spend, rel=1e-9)
    assert by_model["(unclaimed)"] > 0  # the two idle A100s
    assert value(last, "llmcost_gpu_info", gpu="8", model="(unclaimed)") == 1
    assert value(last, "llmcost_gpu_info", gpu="0", model="big") == 1
    # Shared cost is split by GPU cost: big holds 4 x 2.99 of 4 x 2.99 + 6 x 1.79.
    gpu_total = 4 * 2.99 + 6 * 1.79
    big_hourly = (4 * 2.99 + 2.0 * 4 * 2.99 / gpu_total) * 1.3
    assert value(last, "llmcost_model_hourly_cost", model="big") == pytest.approx(big_hourly)
    for model, engine in models.items():
        served = (
            last_truth["engines"][engine]["tokens"]["total"]
            - first_truth["engines"][engine]["tokens"]["total"]
        )
        counted = total(last, "llmcost_tokens_total", model=model) - total(
            first, "llmcost_tokens_total", model=model
        )
        assert counted == pytest.approx(served, rel=0.02)
        hourly = value(last, "llmcost_model_hourly_cost", model=model)
        rate = served / (last_at - first_at)
        expected = hourly / 3600 / rate * 1e6
        gauge = value(last, "llmcost_model_effective_cost_per_million_tokens", model=model)
        assert gauge == pytest.approx(expected, rel=0.03), model
    big = value(last, "llmcost_model_effective_cost_per_million_tokens", model="big")
    small = value(last, "llmcost_model_effective_cost_per_million_tokens", model="small")
    assert big > small  # same traffic, dearer GPUs


def test_owned_hardware_costs_amortization_plus_metered_energy(node: GpuNode) -> None:
    start_mj = 5_000_000
    gpus = [h100(energy_mj=start_mj, power_mw=700_000) for _ in range(2)]
    node.write(gpus)
    owned = {
        "purchase_prices": {"H100": 30_000},
        "amortization_months": 36,
        "energy_price_per_kwh": 0.12,
        "pue": 1.3,
    }
    config = minimal_config_dict(
        cost={"owned": owned, "overhead_ratio": 0.2}, engines=dead_engine(), collection=FAST
    )
    with node.exporter(config) as exporter:
        eventually(lambda: value(exporter.samples(), "llmcost_gpu_energy_joules_total", gpu="1"))
        before = exporter.samples()
        for gpu in gpus:
            gpu.energy_mj = start_mj + 3_600_000_000  # one kWh more on each GPU
        node.write(gpus)
        billed = 2 * 1.0 * 0.12 * 1.3  # two kWh at the tariff and PUE

        def energy_billed(samples: Samples) -> float:
            return value(samples, "llmcost_cost_total", component="energy") - value(
                before, "llmcost_cost_total", component="energy"
            )

        eventually(
            lambda: (
                (s := exporter.samples())
                and value(s, "llmcost_gpu_energy_joules_total", gpu="1") == 3_605_000
                and energy_billed(s) >= billed - 1e-9
            )
        )
        time.sleep(0.6)  # more cycles, which must not bill the same energy again
        after = exporter.samples()
    amortized = 30_000 / (36 * 730)
    assert value(after, "llmcost_gpu_hourly_cost", price_key="H100") == pytest.approx(amortized)
    energy = energy_billed(after)
    assert energy == pytest.approx(billed, abs=1e-12)
    # Hourly: two amortized GPUs plus 2 x 700 W at the tariff, 20% overhead on both.
    energy_hourly = 2 * 0.7 * 0.12 * 1.3
    assert value(after, "llmcost_hourly_cost", component="energy") == pytest.approx(energy_hourly)
    assert value(after, "llmcost_hourly_cost", component="overhead") == pytest.approx(
        (2 * amortized + energy_hourly) * 0.2
    )
    overhead = value(after, "llmcost_cost_total", component="overhead") - value(
        before, "llmcost_cost_total", component="overhead"
    )
    gpu = value(after, "llmcost_cost_total", component="gpu") - value(
        before, "llmcost_cost_total", component="gpu"
    )
    assert overhead == pytest.approx((gpu + energy) * 0.2, rel=1e-9)


@pytest.mark.parametrize("absence", ["no library", "driver not loaded"])
def test_without_nvml_the_exporter_serves_the_engines(
    absence: str, node: GpuNode, tmp_path: Path
) -> None:
    env = None
    if absence == "driver not loaded":
        node.write([h100()], init_error=9)
        env = node.env
    with SimulatorProcess(tmp_path, "--profile", "steady") as simulator:
        config = minimal_config_dict(engines=[{"url": simulator.engine_url(0)}], collection=FAST)
        with ExporterProcess(config, tmp_path, env=env) as exporter:
            samples = eventually(
                lambda: (s := exporter.samples()) and total(s, "llmcost_tokens_total") > 0 and s
            )
            time.sleep(1)
    assert value(samples, "llmcost_collector_up", collector="nvml") == 0
    assert value(samples, "llmcost_collector_up", collector="vllm") == 1
    assert value(samples, "llmcost_collector_errors_total", collector="nvml", reason="unavailable")
    assert value(samples, "llmcost_gpu_info", source="declared", gpu="0") == 1
    assert value(samples, "llmcost_hourly_cost", component="gpu") == 3.20
    assert value(samples, "llmcost_gpu_healthy") is None  # never read: unknown
    nvml_lines = [line for line in exporter.log().splitlines() if "NVML" in line]
    assert len(nvml_lines) == 1, nvml_lines
    assert "Traceback" not in exporter.log()


def run_cli(node: GpuNode, config: dict[str, Any], *args: str) -> subprocess.CompletedProcess:
    config_path = node.workdir / "node.yml"
    config_path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "llm_cost_exporter", *args, str(config_path)],
        env={**os.environ, **node.env},
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


def test_check_config_shows_each_gpu_with_the_price_key_it_matched(node: GpuNode) -> None:
    node.write([h100(), a100()])
    result = run_cli(node, rented(), "check-config")
    assert result.returncode == 0, result.stderr
    gpu_lines = [line for line in result.stdout.splitlines() if line.startswith("#   gpu")]
    assert gpu_lines == [
        f"#   gpu 0 {default_gpu_uuid(0)} '{H100}' -> price key 'H100' at 2.9900 USD/h (nvml)",
        f"#   gpu 1 {default_gpu_uuid(1)} '{A100}' -> price key 'A100*80GB*' "
        "at 1.7900 USD/h (nvml)",
    ]
    assert yaml.safe_load(result.stdout)["nvml"] == {"enabled": True, "utilization_source": "auto"}


def test_a_gpu_without_a_price_stops_the_exporter_naming_it(node: GpuNode) -> None:
    node.write([h100(), FakeGpu(name="Tesla T4")])
    result = run_cli(node, rented(engines=dead_engine()), "--config")
    assert result.returncode == 2
    errors = result.stderr.strip().splitlines()
    assert errors[-1].startswith("llm-cost-exporter: configuration error: cost.gpu_prices_per_hour")
    assert "GPU 1" in errors[-1] and "Tesla T4" in errors[-1] and default_gpu_uuid(1) in errors[-1]


async def test_a_hanging_nvml_init_does_not_hold_up_the_engines(
    fake_lib: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The daemon in this process: NVML init hangs 1.5 s, the exporter serves meanwhile."""
    hang = scaled(1.5)  # a busy machine may take longer than 1.5 s to serve at all
    state_path = tmp_path / "nvml-state.txt"
    FakeNvmlState([h100(), h100()], init_delay_ms=round(hang * 1000)).write(state_path)
    monkeypatch.setenv(STATE_ENV, str(state_path))
    monkeypatch.setattr(daemon, "NVML_START_TIMEOUT", 0.3)
    port = free_port()
    data = rented(engines=dead_engine(), web={"listen_address": f"127.0.0.1:{port}"})
    data["cost"]["gpus"] = [{"model": "H100", "count": 2}]
    config = config_from_mapping(data)
    started = time.monotonic()
    task = asyncio.create_task(daemon.serve(config, {}, ApiPrices(0.8, 0.08, 4.0)))

    async def samples() -> Samples | None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                text = await response.text()
        except aiohttp.ClientError:
            return None
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    try:
        early = None
        while early is None:
            assert time.monotonic() - started < scaled(30), "the exporter never served"
            await asyncio.sleep(0.05)
            early = await samples()
        served_after = time.monotonic() - started
        # It listens before its first collection: wait for that one's page.
        while early is None or value(early, "llmcost_collector_up", collector="nvml") is None:
            assert time.monotonic() - started < scaled(30), "no first collection"
            await asyncio.sleep(0.05)
            early = await samples()
        late = None
        while time.monotonic() - started < hang + scaled(30):
            await asyncio.sleep(0.1)
            late = await samples()
            if value(late, "llmcost_gpu_info", gpu="1", source="nvml"):
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert served_after < hang, "the exporter waited for NVML"
    assert value(early, "llmcost_gpu_info", gpu="0", source="declared") == 1
    assert value(early, "llmcost_collector_up", collector="nvml") == 0
    assert value(early, "llmcost_hourly_cost", component="gpu") == pytest.approx(2 * 2.99)
    assert value(late, "llmcost_gpu_info", gpu="0", uuid=default_gpu_uuid(0), source="nvml") == 1
    assert value(late, "llmcost_gpu_info", source="declared") is None
    assert value(late, "llmcost_collector_up", collector="nvml") == 1
    assert value(late, "llmcost_hourly_cost", component="gpu") == pytest.approx(2 * 2.99)
    assert "NVML did not initialize within 0.3s" in caplog.text


# --- configuration held against what NVML lists -------------------------------------------


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")]
    return bool(int(mask, 16) & (1 << (signum - 1)))


def test_sigterm_while_nvml_init_hangs_stops_the_daemon_cleanly(node: GpuNode) -> None:
    """As a container's PID 1 an unhandled SIGTERM is ignored: the daemon handles it from
    its first moment, here while a slow driver still holds up the start."""
    node.write([h100()], init_delay_ms=round(scaled(4) * 1000))
    text = _stopped_by_sigterm(
        node,
        rented(engines=dead_engine()),
        [sys.executable, "-m", "llm_cost_exporter", "--config"],
        lambda pid, log: catches(pid, signal.SIGTERM),
        "a SIGTERM handler",
    )
    assert "Traceback" not in text and "listening on" not in text, "the start was over"


WEDGED_START = """
import sys
from llm_cost_exporter import cli
from llm_cost_exporter.daemon import assembly

assembly.NVML_START_TIMEOUT = 0.3
sys.exit(cli.main(["--config", sys.argv[1]]))
"""


def test_sigterm_stops_the_daemon_while_a_wedged_nvml_init_still_hangs(node: GpuNode) -> None:
    """NVML's init hangs for good (an hour here); the daemon serves without it, and a stop
    does not wait for it: NVML's thread is a daemon thread, never joined at exit."""
    node.write([h100()], init_delay_ms=3_600_000)
    data = rented(engines=dead_engine())
    data["cost"]["gpus"] = [{"model": "H100", "count": 1}]
    text = _stopped_by_sigterm(
        node,
        data,
        [sys.executable, "-c", WEDGED_START],
        lambda pid, log: "listening on" in log,
        "the daemon to serve",
    )
    assert "NVML did not initialize within 0.3s" in text and "Traceback" not in text


def _stopped_by_sigterm(
    node: GpuNode,
    data: dict[str, Any],
    command: list[str],
    ready: Callable[[int, str], bool],
    what: str,
) -> str:
    """The log of the daemon started by `command` (its configuration file's path appended)
    on `data` and sent SIGTERM once `ready(pid, log so far)`, after it exited 0."""
    config_path = node.workdir / "node.yml"
    config_path.write_text(yaml.safe_dump(data))
    log_path = node.workdir / "daemon.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [*command, str(config_path)],
            env={**os.environ, **node.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: ready(daemon.pid, log_path.read_text()), 60, what)
        daemon.send_signal(signal.SIGTERM)
        returncode = daemon.wait(timeout=scaled(60))
    finally:
        if daemon.poll() is None:
            daemon.kill()
    text = log_path.read_text()
    assert returncode == 0, text
    return text


PROBE = """
import contextlib, os, signal
from llm_cost_exporter import cli

with contextlib.suppress(KeyboardInterrupt):
    signal.signal(signal.SIGTERM, {handler})
    exec("os.kill(os.getpid(), signal.SIGTERM)\\nwhile True: pass")
"""


@pytest.mark.parametrize(
    ("handler", "returncode"),
    [("cli.interrupt_start", 0), ("signal.default_int_handler", -signal.SIGINT)],
)
def test_a_sigterm_inside_exec_during_the_start_still_exits_0(
    tmp_path: Path, handler: str, returncode: int
) -> None:
    """Modules exec() code while they import; a stop that lands there exits 0. With a
    plain KeyboardInterrupt (the second case) `python -m` would die by SIGINT instead."""
    (tmp_path / "probe.py").write_text(PROBE.format(handler=handler))
    result = subprocess.run(
        [sys.executable, "-m", "probe"], cwd=tmp_path, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (returncode, "")


def engines_on(*claims: list[int | str] | None) -> list[dict[str, Any]]:
    engines = []
    for gpus in claims:
        engine: dict[str, Any] = {"url": f"http://127.0.0.1:{free_port()}/metrics"}
        if gpus is not None:
            engine["gpus"] = gpus
        engines.append(engine)
    return engines


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a configuration error leaves on stderr, without its prefix."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    prefix = "llm-cost-exporter: configuration error: "
    assert lines[-1].startswith(prefix), lines
    return lines[-1].removeprefix(prefix)


@pytest.mark.parametrize(
    ("claims", "line"),
    [
        (
            [[0, 1], [7]],
            "engines[1].gpus[0]: GPU 7 is not on this node (NVML lists 0-3)",
        ),
        (
            [[0], [1, "GPU-deadbeef-0000-0000-0000-000000000000"]],
            "engines[1].gpus[1]: no GPU on this node has UUID "
            "GPU-deadbeef-0000-0000-0000-000000000000 (NVML lists "
            + ", ".join(default_gpu_uuid(i) for i in range(4))
            + ")",
        ),
        (
            [[0, 2], [default_gpu_uuid(2).upper()]],
            f"engines[1].gpus[0]: '{default_gpu_uuid(2).upper()}' is GPU 2, already claimed "
            "by engines[0]; each engine runs on its own GPUs",
        ),
    ],
    ids=["index", "uuid", "same-gpu-twice"],
)
def test_check_config_and_the_daemon_refuse_a_claim_nvml_contradicts(
    node: GpuNode, claims: list[list[int | str]], line: str
) -> None:
    """Both run the same check: the same one line, exit 2, and the daemon never serves."""
    node.write([a100() for _ in range(4)])
    config = rented(engines=engines_on(*claims))
    assert refusal(run_cli(node, config, "check-config")) == line
    assert refusal(run_cli(node, config, "--config")) == line


def test_claims_nvml_confirms_pass_and_say_nothing_unchecked(node: GpuNode) -> None:
    node.write([a100() for _ in range(4)])
    config = rented(engines=engines_on([0, 1], [default_gpu_uuid(2).upper(), 3]))
    result = run_cli(node, config, "check-config")
    assert result.returncode == 0, result.stderr
    assert "Not checked" not in result.stdout


def test_claims_of_gpus_nvml_cannot_name_are_left_unchecked_not_refused(node: GpuNode) -> None:
    """A GPU lost before start, or declared but not listed, may be the one a claim names."""
    node.write([a100(), a100(lost=True)])
    config = rented(engines=engines_on([0], [1, "GPU-00000000-0000-4000-8000-00000000abcd"], [3]))
    config["cost"]["gpus"] = [{"model": "A100*80GB*", "count": 4}]
    result = run_cli(node, config, "check-config")
    assert result.returncode == 0, result.stderr
    unchecked = [line for line in result.stdout.splitlines() if line.startswith("# Not checked")]
    assert unchecked == [
        "# Not checked: engines[1].gpus[1]: GPU-00000000-0000-4000-8000-00000000abcd is not "
        "listed by NVML; it may be one of the 3 GPU(s) NVML could not identify or does not list",
        "# Not checked: engines[2].gpus[0]: GPU 3 is not listed by NVML; it may be one of the "
        "2 GPU(s) cost.gpus declares that NVML does not list",
    ]


def test_sm_activity_on_a_gpu_without_gpm(node: GpuNode) -> None:
    """check-config refuses it; the daemon says it once and alerts on busy time there, the
    source label telling which figure each GPU's alert reads."""
    node.write([h100(), a100()])
    config = rented(engines=dead_engine(), nvml={"utilization_source": "sm_activity"})
    line = (
        f"nvml.utilization_source: sm_activity, but GPU 1 ({A100}) has no SM activity: "
        "NVML reports no GPM on it (Hopper or newer); use auto or busy_time"
    )
    assert refusal(run_cli(node, config, "check-config")) == line
    with node.exporter(config) as exporter:
        samples = eventually(
            lambda: (
                (s := exporter.samples())
                and value(s, "llmcost_gpu_selected_utilization_ratio", gpu="0") is not None
                and s
            )
        )
    selected = "llmcost_gpu_selected_utilization_ratio"
    assert value(samples, selected, gpu="0", source="sm_activity") == 0.23
    assert value(samples, selected, gpu="1", source="busy_time") == 0.8
    errors = [entry for entry in exporter.log().splitlines() if " ERROR " in entry]
    assert len(errors) == 1 and errors[0].endswith(
        f"{line}; meanwhile busy time stands in on those GPUs"
    ), errors
    assert "Traceback" not in exporter.log()


def test_sm_activity_on_gpus_with_gpm_is_valid(node: GpuNode) -> None:
    node.write([h100(), h100()])
    config = rented(engines=dead_engine(), nvml={"utilization_source": "sm_activity"})
    result = run_cli(node, config, "check-config")
    assert result.returncode == 0, result.stderr
    assert "Not checked" not in result.stdout


def test_sm_activity_on_a_driver_without_gpm(old_driver_lib_dir: Path, tmp_path: Path) -> None:
    """H100s under an R470 library: pynvml finds no GPM entry point at all."""
    old = GpuNode(old_driver_lib_dir, tmp_path)
    old.write([h100(), h100()], driver_version="470.256.02")
    config = rented(engines=dead_engine(), nvml={"utilization_source": "sm_activity"})
    assert refusal(run_cli(old, config, "check-config")) == (
        f"nvml.utilization_source: sm_activity, but GPU 0 ({H100}) has no SM activity "
        "(and 1 more GPU(s)): NVML driver 470.256.02 has no GPM (R520+); use auto or busy_time"
    )
    config["nvml"] = {"utilization_source": "auto"}
    assert run_cli(old, config, "check-config").returncode == 0


@pytest.mark.parametrize("absence", ["unavailable", "disabled"])
def test_without_nvml_check_config_says_what_it_could_not_check(
    node: GpuNode, absence: str
) -> None:
    node.write([a100()], init_error=9)
    config = minimal_config_dict(
        engines=engines_on([0], ["GPU-00000000-0000-4000-8000-00000000abcd"]),
        nvml={"utilization_source": "sm_activity", "enabled": absence == "unavailable"},
    )
    result = run_cli(node, config, "check-config")
    assert result.returncode == 0, result.stderr
    why = {
        "unavailable": "NVML is unavailable (NVML cannot initialize: Driver Not Loaded)",
        "disabled": "NVML is disabled",
    }[absence]
    unchecked = [line for line in result.stdout.splitlines() if line.startswith("# Not checked")]
    assert unchecked == [
        "# Not checked: engines[].gpus and nvml.utilization_source against the node's GPUs: " + why
    ]
