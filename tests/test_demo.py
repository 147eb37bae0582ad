"""`--demo`: live figures on / and /metrics with nothing but this package."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from realparts.child_process import ChildProcess
from realparts.timeouts import scaled


class DemoProcess(ChildProcess):
    def command(self) -> list[str]:
        return ["--demo", "--web.listen-address", f"127.0.0.1:{self.port}"]

    def fetch(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=scaled(10)) as response:
            return response.read().decode()

    def simulator_url(self) -> str:
        """The in-process simulator the demo prints it serves its engines from."""
        found = re.search(r"engines: +(http://127\.0\.0\.1:\d+)/engine/0/metrics", self.log())
        assert found, self.log()
        return found.group(1)

    def set_traffic(self, engine: int, profile: str, **params: float) -> None:
        """Switch one simulated engine's traffic from now on, through the simulator."""
        body = json.dumps({"profile": profile, "engines": [engine], **params}).encode()
        request = urllib.request.Request(self.simulator_url() + "/control", data=body)
        with urllib.request.urlopen(request, timeout=scaled(10)) as response:
            assert response.status == 200


def samples_of(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
    }


ONE_MINUTE = (("window", "1m"),)


def has_live_figures(page: str) -> bool:
    """Tokens counted and the 1m figures, which take two collections (2 s apart)."""
    samples = samples_of(page)
    tokens = sum(v for (name, _), v in samples.items() if name == "llmcost_tokens_total")
    windowed = ("llmcost_effective_cost_per_million_tokens", "llmcost_breakeven_utilization_ratio")
    return tokens > 0 and all((name, ONE_MINUTE) in samples for name in windowed)


def test_demo_shows_live_figures(tmp_path) -> None:
    with DemoProcess(tmp_path, "demo.log") as demo:
        deadline = time.monotonic() + scaled(60)
        while not has_live_figures(page := demo.fetch("/metrics")):
            assert time.monotonic() < deadline, f"no live figures yet:\n{page}"
            time.sleep(0.2)
        html = demo.fetch("/")
    output = demo.log()
    samples = samples_of(page)
    tokens = sum(v for (name, _), v in samples.items() if name == "llmcost_tokens_total")
    assert tokens > 0
    up = {
        dict(labels)["collector"]: v
        for (name, labels), v in samples.items()
        if name == "llmcost_collector_up"
    }
    assert up == {"vllm": 1.0, "sglang": 1.0, "simulated_gpu": 1.0}
    per_million = samples[("llmcost_effective_cost_per_million_tokens", ONE_MINUTE)]
    assert 0 < per_million < 1000
    assert ("llmcost_breakeven_utilization_ratio", ONE_MINUTE) in samples
    assert "cost per 1M tokens" in html and "break-even" in html
    # The simulated GPUs' figures are on the page, not dashes: memory, power and energy.
    assert "GPUs (simulated)" in html and "not read" not in html
    assert html.count(" GiB</td>") == 2 and html.count(" W</td>") == 2
    assert html.count(" kWh</td>") == 2
    assert f"http://127.0.0.1:{demo.port}/" in output
    assert "Traceback" not in output


MEMORY = "llmcost_gpu_memory_used_bytes"
ENERGY = "llmcost_gpu_energy_joules_total"
GPU_SERIES = (MEMORY, "llmcost_gpu_memory_total_bytes", "llmcost_gpu_power_watts", ENERGY)


def gpu_readings(page: str) -> dict[str, dict[str, float]]:
    """gpu label -> each GPU series of the page, the utilization by source as `busy_time`
    and `sm_activity`."""
    readings: dict[str, dict[str, float]] = {}
    for (name, labels), value in samples_of(page).items():
        labels = dict(labels)
        if name == "llmcost_gpu_utilization_ratio":
            readings.setdefault(labels["gpu"], {})[labels["source"]] = value
        elif name in GPU_SERIES:
            readings.setdefault(labels["gpu"], {})[name] = value
    return readings


def loaded(page: str, busy: str, idle: str) -> dict[str, dict[str, float]] | None:
    """The GPU readings once GPU `busy` reads above GPU `idle` on every load figure."""
    readings = gpu_readings(page)
    if set(readings) != {busy, idle}:
        return None
    higher = ("busy_time", "sm_activity", "llmcost_gpu_power_watts")
    if all(readings[busy].get(k, 0) > readings[idle].get(k, 0) for k in higher):
        return readings
    return None


def test_demo_gpus_are_simulated_and_follow_their_engines(tmp_path) -> None:
    """Each simulated A100 reads the load of the engine on it: loading engine 0 and idling
    engine 1 puts GPU 0 above GPU 1 on both utilization sources, power, memory and the
    energy drawn meanwhile; swapping the loads swaps the GPUs."""
    with DemoProcess(tmp_path, "demo.log") as demo:
        phases = []
        for busy, idle in (("0", "1"), ("1", "0")):
            demo.set_traffic(int(busy), "steady", level=0.9)
            demo.set_traffic(int(idle), "idle")
            deadline = time.monotonic() + scaled(30)
            while not (first := loaded(page := demo.fetch("/metrics"), busy, idle)):
                assert time.monotonic() < deadline, f"GPU {busy} never read busier:\n{page}"
                time.sleep(0.2)
            deadline = time.monotonic() + scaled(30)
            while True:
                later = loaded(page := demo.fetch("/metrics"), busy, idle)
                if later and later[idle][ENERGY] > first[idle][ENERGY]:
                    break
                assert time.monotonic() < deadline, f"energy did not grow:\n{page}"
                time.sleep(0.2)
            phases.append((busy, idle, first, later))
        samples = samples_of(page)
    assert "Traceback" not in demo.log()

    for busy, idle, first, later in phases:
        assert later[idle]["busy_time"] == later[idle]["sm_activity"] == 0.0
        assert 0.0 < later[busy]["sm_activity"] < later[busy]["busy_time"] <= 1.0
        for gpu in (busy, idle):
            assert 0.0 < later[gpu][MEMORY] < later[gpu]["llmcost_gpu_memory_total_bytes"]
        drawn = {gpu: later[gpu][ENERGY] - first[gpu][ENERGY] for gpu in (busy, idle)}
        assert drawn[busy] > drawn[idle] > 0.0
    # The load moved from GPU 0 to GPU 1, and its KV cache with it.
    (_, _, _, zero_busy), (_, _, _, one_busy) = phases
    assert zero_busy["0"][MEMORY] > one_busy["0"][MEMORY]
    assert one_busy["1"][MEMORY] > zero_busy["1"][MEMORY]

    up = {
        dict(labels)["collector"]: v
        for (name, labels), v in samples.items()
        if name == "llmcost_collector_up"
    }
    assert up["simulated_gpu"] == 1.0
    info = {
        dict(labels)["gpu"]: dict(labels)
        for (name, labels), _ in samples.items()
        if name == "llmcost_gpu_info"
    }
    assert sorted(info) == ["0", "1"]
    assert [info[g]["model"] for g in ("0", "1")] == ["llama-3.1-8b", "qwen2.5-7b"]
    assert all("A100" in i["name"] and "80GB" in i["name"] for i in info.values())
    uuids = {i["uuid"] for i in info.values()}
    assert len(uuids) == 2 and all(u.startswith("GPU-") for u in uuids), uuids
    # Billed as before: two A100s at 3.20/h, now by the UUIDs the simulated GPUs report.
    assert samples[("llmcost_hourly_cost", (("component", "gpu"),))] == 6.4
    hourly = [v for (name, _), v in samples.items() if name == "llmcost_gpu_hourly_cost"]
    assert hourly == [3.2]
