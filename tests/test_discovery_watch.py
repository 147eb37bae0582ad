"""The pod watch against a fake Kubernetes API server (TLS, bearer token, the real JSON
shapes of list and watch): targets follow the pods, an expired version re-lists, an
unreachable server or a refused token keeps the last targets and shows as the source's
health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import render_page
from prometheus_client.parser import text_string_to_metric_families
from realparts.fake_kubernetes import ANNOTATION, FakeKubernetes, pod_object
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import StaticPage
from llm_cost_exporter.collectors.readings import EngineReading
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.config.settings import DiscoveryConfig
from llm_cost_exporter.daemon.engine_targets import DiscoveredEngines
from llm_cost_exporter.discovery.connection import Connection
from llm_cost_exporter.discovery.kubernetes import PodWatch
from llm_cost_exporter.discovery.pods import engine_target

NODE = "gpu-node-1"
SCRAPE = {f"{ANNOTATION}/scrape": "true"}


def engine_pod(name: str, port: int, **options: Any) -> dict[str, Any]:
    annotations = {**SCRAPE, f"{ANNOTATION}/port": str(port), **options.pop("annotations", {})}
    return pod_object(name, annotations=annotations, **options)


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {scaled(timeout):g}s")
        await asyncio.sleep(0.02)
    return result


def urls(watch: PodWatch) -> set[str]:
    return set(watch.targets)


@pytest.fixture
def api(tmp_path: Path) -> FakeKubernetes:
    with FakeKubernetes(tmp_path) as server:
        yield server


def watch_of(api: FakeKubernetes, limit: int = 3) -> PodWatch:
    discovery = DiscoveryConfig(enabled=True, node_name=NODE)
    connection = Connection(api.url, NODE, str(api.token_file), str(api.ca_file))
    return PodWatch(discovery, connection, limit)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[PodWatch], PodWatch]]:
    tasks: list[asyncio.Task] = []

    def run(watch: PodWatch) -> PodWatch:
        tasks.append(asyncio.ensure_future(watch.run()))
        return watch

    yield run
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_targets_follow_the_pods_of_this_node(
    api: FakeKubernetes, running: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_pod(engine_pod("vllm-a", 9001))
    api.add_pod(engine_pod("elsewhere", 9002, node="gpu-node-2"))
    api.add_pod(pod_object("not-annotated", port=9003))
    api.add_pod(engine_pod("starting", 9004, phase="Pending"))
    watch = running(watch_of(api))
    await until(lambda: watch.synced, "first list")
    assert urls(watch) == {"http://127.0.0.1:9001/metrics"}
    assert any("fieldSelector=spec.nodeName%3Dgpu-node-1" in r for r in api.requests)

    def run_pending(pod: dict) -> None:
        pod["status"] = pod_object("starting", port=9004)["status"]

    api.modify_pod("inference", "starting", run_pending)
    api.add_pod(engine_pod("vllm-b", 9005, namespace="team-b"))
    await until(lambda: len(watch.targets) == 3, "pods that start running become targets")
    assert watch.targets["http://127.0.0.1:9005/metrics"].namespace == "team-b"

    def move(pod: dict) -> None:
        pod["metadata"]["annotations"][f"{ANNOTATION}/path"] = "/engine/1/metrics"

    api.modify_pod("team-b", "vllm-b", move)
    await until(
        lambda: (
            "http://127.0.0.1:9005/engine/1/metrics" in watch.targets
            and "http://127.0.0.1:9005/metrics" not in watch.targets
        ),
        "an annotation change moves the target",
    )

    def terminate(pod: dict) -> None:
        pod["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"

    api.modify_pod("inference", "starting", terminate)
    api.delete_pod("inference", "vllm-a")
    await until(
        lambda: urls(watch) == {"http://127.0.0.1:9005/engine/1/metrics"},
        "deleted and terminating pods stop being targets",
    )

    # A bad annotation: skipped, counted, and logged once however often the pod changes.
    api.add_pod(engine_pod("broken", 9006, annotations={f"{ANNOTATION}/port": "http"}))
    for label in ("a", "b", "c"):
        api.modify_pod(
            "inference", "broken", lambda p, v=label: p["metadata"]["labels"].update(x=v)
        )
    await until(lambda: watch.skipped["bad_port"] == 1, "the broken pod is counted")
    await asyncio.sleep(0.2)  # the later events too (a slower run only checks less)
    assert sum("inference/broken" in r.getMessage() for r in caplog.records) == 1
    assert watch.health.up and not watch.health.drain()


async def test_the_limit_keeps_the_older_pods_and_skips_the_rest(
    api: FakeKubernetes, running: Callable
) -> None:
    for index in (3, 1, 0, 2):
        api.add_pod(
            engine_pod(f"vllm-{index}", 9100 + index, created=f"2025-01-01T00:0{index}:00Z")
        )
    watch = running(watch_of(api, limit=3))
    await until(lambda: watch.synced, "first list")
    assert urls(watch) == {f"http://127.0.0.1:{9100 + i}/metrics" for i in range(3)}
    assert watch.skipped["too_many"] == 1


async def test_an_expired_version_lists_again_without_losing_or_repeating_targets(
    api: FakeKubernetes, running: Callable
) -> None:
    api.add_pod(engine_pod("vllm-a", 9001))
    api.add_pod(engine_pod("vllm-b", 9002))
    watch = running(watch_of(api))
    await until(lambda: len(watch.targets) == 2, "two targets")
    lists = sum("watch=" not in r for r in api.requests)
    api.expire()
    api.delete_pod("inference", "vllm-a")  # after the expiry: only a new list can tell
    api.add_pod(engine_pod("vllm-c", 9003))
    await until(
        lambda: urls(watch) == {"http://127.0.0.1:9002/metrics", "http://127.0.0.1:9003/metrics"},
        "the re-list replaces the pods",
    )
    assert sum("watch=" not in r for r in api.requests) == lists + 1
    assert watch.skipped["duplicate"] == 0
    assert watch.health.up and not watch.health.drain()


def page_samples(state: NodeState) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(render_page(state)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def source_sample(samples: dict, name: str, api: FakeKubernetes, **labels: str) -> float | None:
    wanted = {"collector": "kubernetes", "target": api.url, **labels}
    found = [v for (n, ls), v in samples.items() if n == name and dict(ls) == wanted]
    return found[0] if found else None


async def test_an_unreachable_server_keeps_the_targets_and_shows_in_the_health_series(
    api: FakeKubernetes, running: Callable
) -> None:
    api.add_pod(engine_pod("vllm-a", 9001))
    watch = running(watch_of(api))
    config = config_from_mapping(
        {
            "cost": {"gpus": [{"model": "A100-80GB", "count": 1}],
                     "gpu_prices_per_hour": {"A100-80GB": 3.2}},
            "api_prices": {"default": {"input": 1.0, "output": 2.0}},
            "nvml": {"enabled": False},
            "kubernetes": {"discovery": {"enabled": True, "node_name": NODE}},
        }
    )  # fmt: skip
    state = NodeState(config, {}, None)
    engines = DiscoveredEngines(
        [], watch, lambda kind, url: engine_collector(kind, url, StaticPage(""))
    )
    await until(lambda: watch.synced, "first list")
    engines.refresh(state)
    assert source_sample(page_samples(state), "llmcost_collector_up", api) == 1

    api.stop()
    down_at = time.monotonic()
    await until(lambda: watch.health.failures, "the failure is seen")
    await asyncio.sleep(3.0)
    failures = len(watch.health.failures)
    down_for = time.monotonic() - down_at
    assert failures <= 2 + down_for, "retries back off"
    engines.refresh(state)
    samples = page_samples(state)
    assert source_sample(samples, "llmcost_collector_up", api) == 0
    assert source_sample(samples, "llmcost_collector_errors_total", api, reason="connection") >= 1
    assert urls(watch) == {"http://127.0.0.1:9001/metrics"}, "the last targets are kept"

    api.start()  # the same port, as a restarted API server
    api.add_pod(engine_pod("vllm-b", 9002))
    await until(lambda: len(watch.targets) == 2, "reconnected and listed again", timeout=40)
    engines.refresh(state)
    assert source_sample(page_samples(state), "llmcost_collector_up", api) == 1


async def test_a_refused_token_is_a_credentials_failure_and_a_rotated_one_is_read_again(
    api: FakeKubernetes, running: Callable
) -> None:
    api.add_pod(engine_pod("vllm-a", 9001))
    api.token = "sa-token-0"  # the server wants a token the file does not hold
    watch = running(watch_of(api))
    reason = await until(lambda: watch.health.failures, "the refusal is seen")
    assert reason[0][0] == "credentials" and "401" in reason[0][1]
    assert not watch.targets

    api.set_token("sa-token-2")  # the kubelet rotates the file
    await until(lambda: watch.synced and watch.targets, "listed with the new token", timeout=40)
    watch.health.drain()
    api.set_token("sa-token-3")  # rotated again while watching: the next request re-reads it
    api.expire()
    api.add_pod(engine_pod("vllm-b", 9002))
    await until(lambda: len(watch.targets) == 2, "listed again with the rotated token")
    assert not watch.health.drain(), "a rotation is no failure"


async def test_a_missing_or_empty_token_file_is_a_credentials_failure(
    api: FakeKubernetes, running: Callable
) -> None:
    api.add_pod(engine_pod("vllm-a", 9001))
    api.token_file.write_text("\n")
    watch = running(watch_of(api))
    failures = await until(lambda: watch.health.failures, "the empty token is refused")
    assert failures[0][0] == "credentials" and "empty" in failures[0][1]
    api.token_file.unlink()
    watch.health.drain()
    failures = await until(lambda: watch.health.failures, "the missing token is refused")
    assert failures[0][0] == "credentials" and "cannot open" in failures[0][1]
    assert not watch.targets


def test_a_pod_that_is_also_configured_is_read_once_and_one_that_goes_is_forgotten(
    api: FakeKubernetes,
) -> None:
    config = config_from_mapping(
        {
            "cost": {"gpus": [{"model": "A100-80GB", "count": 1}],
                     "gpu_prices_per_hour": {"A100-80GB": 3.2}},
            "api_prices": {"default": {"input": 1.0, "output": 2.0}},
            "nvml": {"enabled": False},
            "engines": ["http://127.0.0.1:9001/metrics"],
            "kubernetes": {"discovery": {"enabled": True, "node_name": NODE}},
        }
    )  # fmt: skip
    state = NodeState(config, {}, None)
    watch = watch_of(api)
    static = engine_collector("vllm", "http://127.0.0.1:9001/metrics", StaticPage(""))
    engines = DiscoveredEngines(
        [static], watch, lambda kind, url: engine_collector(kind, url, StaticPage(""))
    )
    watch._pods = {  # what a list of the node's pods would have found
        "a": engine_target(engine_pod("vllm-a", 9001), watch.config),
        "b": engine_target(engine_pod("vllm-b", 9002), watch.config),
    }
    watch._publish()
    watch.synced = True
    collectors = engines.refresh(state)
    assert sorted(c.target for c in collectors) == [
        "http://127.0.0.1:9001/metrics",
        "http://127.0.0.1:9002/metrics",
    ]
    readings = [
        EngineReading("m", "0", 100.0, 0.0, 50.0, None, None, None, None, None, None),
    ]
    for collector in collectors:
        state.record_engine_readings(collector.name, collector.target, readings, 0.01)
    assert state.targets[("vllm", "http://127.0.0.1:9001/metrics")].pod.pod == "vllm-a"
    assert state.targets[("vllm", "http://127.0.0.1:9002/metrics")].pod.pod == "vllm-b"
    totals = dict(state.tokens.models["m"].tokens)

    del watch._pods["b"]
    watch._publish()
    engines.refresh(state)
    assert ("vllm", "http://127.0.0.1:9002/metrics") not in state.targets
    assert state.tokens.targets() == {"http://127.0.0.1:9001/metrics"}
    assert state.tokens.models["m"].tokens == totals, "per-model counters stay"
    assert "vllm-b" not in render_page(state)
