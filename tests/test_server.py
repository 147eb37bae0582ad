"""The collection loop and HTTP server over the simulator, in one process."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from conftest import minimal_config_dict
from daemon_http import get, serving
from prometheus_client.parser import text_string_to_metric_families

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.http_client import HttpClient
from llm_cost_exporter.collectors.http_page import HttpPage
from llm_cost_exporter.collectors.readings import GpuReading, GpuSnapshot
from llm_cost_exporter.collectors.vllm import VllmCollector
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.landing import render_landing
from llm_cost_exporter.daemon.loop import CollectionLoop, LoopHealth
from llm_cost_exporter.outputs.prometheus import PrometheusPage
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.profiles import make_profile
from llm_cost_exporter.tools.simulator.server import build_simulator_app


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def node():
    """Two simulated engines (V1 and V0 pages), a loop and the exporter's server."""
    clock = Clock()
    engines = [
        SimulatedEngine("model-a", 1000, make_profile("steady", level=0.5), clock=clock),
        SimulatedEngine(
            "model-b", 1000, make_profile("steady", level=0.25), clock=clock, page_format="v0"
        ),
    ]
    simulator = TestServer(build_simulator_app(engines))
    await simulator.start_server()
    config = config_from_mapping(
        minimal_config_dict(capacity={"tokens_per_second": 2000}, windows=["1m"])
    )
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0), wall_clock=clock)
    async with HttpClient() as session:
        collectors = []
        for i in (0, 1):
            url = str(simulator.make_url(f"/engine/{i}/metrics"))
            collectors.append(VllmCollector(url, HttpPage(session, url, 2.0, 1 << 24)))
        page = PrometheusPage()
        loop = CollectionLoop(
            state, collectors, None, [page], interval=5.0, timeout=2.0, clock=clock
        )
        async with serving(loop, page) as server:
            yield clock, loop, Client(session, f"http://127.0.0.1:{server.port}")
    await simulator.close()


class Client:
    """GETs to the exporter's server: status, headers and body."""

    def __init__(self, session: HttpClient, base: str) -> None:
        self._session = session
        self._base = base

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return await get(self._session, self._base + path)


def families(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_health_before_and_after_the_first_cycle(node) -> None:
    clock, loop, client = node
    status, _, body = await client.get("/healthz")
    assert (status, body) == (200, b"starting\n")
    await loop.run_once()
    status, _, body = await client.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    clock.now += 60  # the loop stalls for far more than three intervals
    status, _, body = await client.get("/healthz")
    assert (status, body) == (503, b"collection loop stalled: no cycle for 60s\n")


async def test_a_first_cycle_that_never_ends_is_a_stall(node) -> None:
    clock, loop, client = node
    clock.now += 3 * loop.interval  # within the grace period of three intervals and a second
    assert (await client.get("/healthz"))[0] == 200
    clock.now += 1
    status, _, body = await client.get("/healthz")
    assert status == 503
    assert b"no cycle for 16s" in body


async def test_metrics_reflect_both_engines_and_page_formats(node) -> None:
    clock, loop, client = node
    await loop.run_once()
    for _ in range(12):
        clock.now += 5
        await loop.run_once()
    status, headers, body = await client.get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = families(body.decode())
    a = sum(samples[("llmcost_tokens_total", (("kind", k), ("model", "model-a")))]
            for k in ("prompt", "cached_prompt", "generation"))  # fmt: skip
    b = sum(samples[("llmcost_tokens_total", (("kind", k), ("model", "model-b")))]
            for k in ("prompt", "cached_prompt", "generation"))  # fmt: skip
    assert a == pytest.approx(500 * 60, abs=2)
    assert b == pytest.approx(250 * 60, abs=2)
    # V0 pages have no prefix-cache token counts: nothing is counted as cached.
    assert samples[("llmcost_tokens_total", (("kind", "cached_prompt"), ("model", "model-b")))] == 0
    assert samples[("llmcost_throughput_utilization_ratio", (("window", "1m"),))] == pytest.approx(
        750 / 2000, rel=1e-3
    )
    assert samples[("llmcost_cost_total", (("component", "gpu"),))] == pytest.approx(3.20 / 60)
    assert samples[("llmcost_tokens_in_flight", (("model", "model-a"),))] > 0


async def test_landing_page_shows_key_figures(node) -> None:
    clock, loop, client = node
    await loop.run_once()
    clock.now += 60
    await loop.run_once()
    status, headers, body = await client.get("/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    html = body.decode()
    # $3.20/h over 750 tok/s: $1.1852 per 1M; blended API price of a 70/30 mix with 30% cached.
    assert "$1.19" in html
    assert "break-even" in html and "Spend today" in html
    spend = f'data-figure="spend" data-value="{3.20 / 60!r}">$0.05<'
    assert spend in html  # one minute of $3.20/h
    assert html.count("<script") == 1 and "src=" not in html and 'href="http' not in html


async def test_a_scrape_does_no_io(node) -> None:
    clock, loop, client = node
    await loop.run_once()
    first = (await client.get("/metrics"))[2]
    clock.now += 5
    second = (await client.get("/metrics"))[2]
    assert first == second  # the page changes only when the loop runs
    await loop.run_once()
    third = (await client.get("/metrics"))[2]
    assert third != first


def test_landing_page_shows_cost_by_model_and_each_gpu() -> None:
    config = config_from_mapping(
        minimal_config_dict(
            engines=[{"url": "http://a/metrics", "gpus": [0]}, {"url": "http://b/metrics"}],
            cost={"gpu_prices_per_hour": {"H100": 2.5}},
            windows=["1m"],
        )
    )
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0), gpus=[])
    lost = GpuReading(1, "GPU-1", "NVIDIA H100 PCIe", healthy=False, error="gpu_lost")
    busy = GpuReading(
        0,
        "GPU-0",
        "NVIDIA H100 PCIe",
        busy_utilization=1.0,
        sm_activity=0.25,
        memory_used_bytes=40 * 2**30,
        memory_total_bytes=80 * 2**30,
        power_watts=350.4,
        energy_joules=7.2e6,
    )
    state.record_gpu_snapshot("nvml", "local", GpuSnapshot("550", (busy, lost)), 0.001, 0.0)
    state.advance(0.0)
    html = render_landing(state, LoopHealth("ok", 0.0))
    assert "<td>0</td><td>NVIDIA H100 PCIe</td><td>(unclaimed)</td><td>healthy</td>" in html
    assert "<td class=num>25.0% (sm_activity)</td>" in html
    # Busy time beside SM activity, memory used of total, power, energy (7.2 MJ = 2 kWh).
    readings = ("100.0%", "40.0 / 80 GiB", "350 W", "2.00 kWh")
    assert "".join(f"<td class=num>{cell}</td>" for cell in readings) in html
    assert "<b class=bad>unhealthy</b>" in html
    # Not every engine names its GPUs: no per-model split, the node's cost is unclaimed.
    assert "<tr><td>(unclaimed)</td><td class=num>$6.50</td><td colspan=6>–</td></tr>" in html
