"""The two seams through the collection loop: any engine collector in, every output out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import fixture_page, minimal_config_dict
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from realparts.ports import free_port
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import CollectorError, StaticPage
from llm_cost_exporter.collectors.readings import EngineReading, GpuSnapshot
from llm_cost_exporter.collectors.registry import ENGINE_COLLECTORS, engine_collector
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon import assembly
from llm_cost_exporter.daemon.loop import BACKSTOP_GRACE, CollectionLoop
from llm_cost_exporter.outputs.prometheus import PrometheusPage

API = ApiPrices(0.80, 0.08, 4.00)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reading(tokens: float, model: str = "m") -> EngineReading:
    return EngineReading(model, "0", tokens, 0.0, tokens, 2, 1, None, None, None, 50.0)


class FakeEngine:
    """An engine collector of a made-up engine type: nothing in the loop knows its name."""

    name = "fake"

    def __init__(self, target: str, answers: list) -> None:
        self.target = target
        self._answers = answers

    async def collect(self) -> list[EngineReading]:
        answer = self._answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(3600)
        return answer


class RecordingOutput:
    def __init__(self) -> None:
        self.published: list[Sequence[Metric]] = []

    def publish(self, families: Sequence[Metric]) -> None:
        self.published.append(families)

    def own_families(self) -> Sequence[Metric]:
        return ()

    def close(self) -> None:
        pass


def samples(page: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.decode())
        for s in family.samples
    }


def make_loop(collectors, outputs, gpus=None, timeout=3.0, **config):
    clock = Clock()
    state = NodeState(
        config_from_mapping(minimal_config_dict(**config)), {}, API, wall_clock=lambda: 10.0
    )
    loop = CollectionLoop(state, collectors, gpus, outputs, 5.0, timeout, clock=clock)
    return loop, clock


async def test_each_collect_is_isolated_and_a_hang_is_cut_by_the_backstop() -> None:
    good = FakeEngine("http://good/metrics", [[reading(0)], [reading(100)]])
    hangs = FakeEngine("http://hangs/metrics", ["hang"])
    buggy = FakeEngine("http://buggy/metrics", [RuntimeError("a bug")])
    down = FakeEngine("http://down/metrics", [CollectorError("connection", "refused")])
    page = PrometheusPage()
    loop, clock = make_loop([good, hangs, buggy, down], [page], timeout=0.01)
    assert loop.backstop == pytest.approx(0.01 + BACKSTOP_GRACE)
    # Without the backstop this cycle would wait an hour; the guard makes that a failure.
    await asyncio.wait_for(loop.run_once(), scaled(120))
    clock.now += 5
    loop.engines = [good]  # the others have given their one answer
    await loop.run_once()
    found = samples(page.body)

    def errors(target: str, reason: str) -> float:
        labels = (("collector", "fake"), ("reason", reason), ("target", target))
        return found[("llmcost_collector_errors_total", labels)]

    assert errors("http://hangs/metrics", "timeout") == 1
    assert errors("http://buggy/metrics", "internal") == 1
    assert errors("http://down/metrics", "connection") == 1
    up = {
        t: found[("llmcost_collector_up", (("collector", "fake"), ("target", t)))]
        for t in (
            "http://good/metrics",
            "http://hangs/metrics",
        )
    }
    assert up == {"http://good/metrics": 1.0, "http://hangs/metrics": 0.0}
    tokens = found[("llmcost_tokens_total", (("kind", "generation"), ("model", "m")))]
    assert tokens == 100
    assert (
        "llmcost_engine_restarts_total",
        (("collector", "fake"), ("target", "http://good/metrics")),
    ) in found


async def test_a_cycle_with_nothing_to_collect_still_publishes() -> None:
    # A discovering node before its first pod, without NVML: nothing to read, and the
    # page must still say so every cycle rather than fail the cycle.
    page = PrometheusPage()
    loop, clock = make_loop([], [page])
    await loop.run_once()
    clock.now += 5
    await loop.run_once()
    assert loop.last_cycle_at == clock.now
    assert ("llmcost_tokens_total", (("kind", "generation"), ("model", "m"))) not in samples(
        page.body
    )
    assert any(name == "llmcost_build_info" for name, _ in samples(page.body))


async def test_a_failure_outside_the_collectors_fails_the_cycle_after_the_others_end() -> None:
    first = FakeEngine("http://first/metrics", [[reading(0, "first")]])
    second = FakeEngine("http://second/metrics", [[reading(0, "second")]])
    loop, _ = make_loop([first, second], [PrometheusPage()])
    recorded: list[str] = []
    record = loop.state.record_engine_readings

    def flaky(name, target, readings, duration):
        if target == first.target:
            raise RuntimeError("a bug in the accounting")
        recorded.append(target)
        record(name, target, readings, duration)

    loop.state.record_engine_readings = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug in the accounting"):
        await loop.run_once()
    assert recorded == [second.target]


async def test_a_collector_of_any_name_owns_its_gpus() -> None:
    engines = [
        FakeEngine("http://a/metrics", [[reading(0, "alpha")], [reading(10, "alpha")]]),
        FakeEngine("http://b/metrics", [[reading(0, "beta")], [reading(10, "beta")]]),
    ]
    page = PrometheusPage()
    loop, clock = make_loop(
        engines,
        [page],
        engines=[
            {"url": "http://a/metrics", "gpus": [0]},
            {"url": "http://b/metrics", "gpus": [1]},
        ],
        cost={"gpus": [{"model": "A100", "count": 2}], "gpu_prices_per_hour": {"A100": 3.60}},
    )
    await loop.run_once()
    clock.now += 3600
    await loop.run_once()
    found = samples(page.body)
    spend = {m: found[("llmcost_model_cost_total", (("model", m),))] for m in ("alpha", "beta")}
    assert spend["alpha"] == pytest.approx(3.60 * 1.3) and spend["beta"] == pytest.approx(
        3.60 * 1.3
    )


async def test_every_output_gets_the_same_families_once_per_cycle() -> None:
    first, second, page = RecordingOutput(), RecordingOutput(), PrometheusPage()
    engine = FakeEngine("http://e/metrics", [[reading(0)], [reading(10)]])
    loop, clock = make_loop([engine], [first, page, second])
    await loop.run_once()
    clock.now += 5
    await loop.run_once()
    assert len(first.published) == len(second.published) == 2
    assert all(a is b for a, b in zip(first.published, second.published, strict=True))
    names = {f.name for f in first.published[-1]}
    on_page = {f.name for f in text_string_to_metric_families(page.body.decode())}
    assert names == on_page
    assert any(n.startswith("process_") for n in names), "the process's families are in it"


async def test_the_gpu_collector_feeds_the_fleet_and_its_failures_are_not_an_engine() -> None:
    class Gpus:
        name = "nvml"
        target = "local"

        async def collect(self) -> GpuSnapshot:
            raise CollectorError("unavailable", "no driver")

    page = PrometheusPage()
    loop, _ = make_loop([FakeEngine("http://e/metrics", [[reading(0)]])], [page], gpus=Gpus())
    await loop.run_once()
    found = samples(page.body)
    assert found[("llmcost_collector_up", (("collector", "nvml"), ("target", "local")))] == 0
    restarts = {k for k in found if k[0] == "llmcost_engine_restarts_total"}
    assert restarts == {
        ("llmcost_engine_restarts_total", (("collector", "fake"), ("target", "http://e/metrics")))
    }


@pytest.mark.parametrize("engine_type", sorted(ENGINE_COLLECTORS))
async def test_every_registered_engine_is_named_by_its_type_and_reads_through_its_page(
    engine_type: str,
) -> None:
    source = StaticPage(fixture_page("vllm-0.32.0-cpu-busy.prom"))
    collector = engine_collector(engine_type, "http://e/metrics", source)
    assert collector.name == engine_type and collector.target == "http://e/metrics"
    if engine_type == "vllm":
        readings = await collector.collect()
        assert [(r.model, r.prompt_tokens) for r in readings] == [("tiny-llama", 163304.0)]


def test_an_unknown_engine_type_is_a_one_line_error_naming_the_known_ones() -> None:
    from llm_cost_exporter.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        config_from_mapping(minimal_config_dict(engines=[{"url": "http://e/m", "type": "nope"}]))
    message = str(caught.value)
    assert message.startswith("engines[0].type: unknown engine type 'nope'")
    assert "vllm" in message and "\n" not in message


async def test_each_window_exports_the_span_it_really_covers() -> None:
    page = PrometheusPage()
    engine = FakeEngine("http://e/metrics", [[reading(10 * n)] for n in range(30)])
    loop, clock = make_loop(
        [engine],
        [page],
        engines=["http://e/metrics"],
        windows=["1m", "5m"],
        metrics={"model_gauges": True},
    )

    def spans() -> dict[tuple, float]:
        found = samples(page.body)
        return {
            (name, labels): value
            for (name, labels), value in found.items()
            if name.endswith("window_span_seconds")
        }

    await loop.run_once()
    assert spans() == {}  # one point: no window yet, so no span either
    for _ in range(2):
        clock.now += 5
        await loop.run_once()
    node = "llmcost_window_span_seconds"
    model = "llmcost_model_window_span_seconds"
    assert spans() == {
        (node, (("window", "1m"),)): 10.0,
        (node, (("window", "5m"),)): 10.0,
        (model, (("model", "m"), ("window", "1m"))): 10.0,
        (model, (("model", "m"), ("window", "5m"))): 10.0,
    }
    for _ in range(20):
        clock.now += 5
        await loop.run_once()
    found = spans()
    assert found[(node, (("window", "1m"),))] == 60.0
    assert found[(node, (("window", "5m"),))] == 110.0
    assert found[(model, (("model", "m"), ("window", "1m")))] == 60.0


async def test_the_daemon_listens_before_its_first_cycle_then_runs_one_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real assembly: the port is bound and /healthz answers `starting` when the
    first cycle begins; then exactly one cycle runs before the loop waits an interval."""
    requests = []

    async def engine_page(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.Response(text=fixture_page("vllm-0.32.0-cpu-busy.prom"))

    engine_app = web.Application()
    engine_app.router.add_get("/metrics", engine_page)
    engine = TestServer(engine_app)
    await engine.start_server()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = config_from_mapping(
        minimal_config_dict(
            engines=[str(engine.make_url("/metrics"))],
            nvml={"enabled": False},
            web={"listen_address": f"127.0.0.1:{port}"},
            collection={"interval": "1h"},
        )
    )
    events: list[tuple] = []
    waiting = asyncio.Event()

    class RecordingLoop(CollectionLoop):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs, sleep=self.wait)

        async def run_once(self) -> None:
            async with aiohttp.ClientSession() as client:
                async with client.get(base + "/healthz") as health:
                    said = (health.status, await health.text())
                async with client.get(base + "/metrics") as metrics:
                    page = samples(await metrics.read())
            events.append(("cycle", said, page))
            await super().run_once()

        async def wait(self, seconds: float) -> None:
            events.append(("sleep", seconds))
            waiting.set()
            await asyncio.Event().wait()

    monkeypatch.setattr(assembly, "CollectionLoop", RecordingLoop)
    daemon = asyncio.ensure_future(assembly.serve(config, {}, API))
    try:
        await asyncio.wait_for(waiting.wait(), scaled(60))
    finally:
        daemon.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await daemon
        await engine.close()
    assert [event[0] for event in events] == ["cycle", "sleep"]
    _, said, page = events[0]
    assert said == (200, "starting\n")
    # Before the first collection: the node's cost is known, nothing of the engines.
    assert page[("llmcost_hourly_cost", (("component", "gpu"),))] == 3.20
    assert not any(name == "llmcost_collector_up" for name, _ in page)
    assert requests == ["/metrics"]
    assert 0 < events[1][1] <= 3600
