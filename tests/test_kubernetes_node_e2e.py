"""A Kubernetes GPU node end to end, everything real but the API server.

The real daemon on four fake-NVML H100s with no configured engine: it finds its engines
among the node's pods in the fake API server (TLS, bearer token), reads them from the
simulator, and learns from the fake kubelet (a real gRPC server of the pod-resources API)
which pod holds which GPU. Each model then pays for the GPUs its pods hold, each pod for
its share, and what no engine holds is (unclaimed). Every GPU costs the same, so the
money splits 2:1:1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import minimal_config_dict
from realparts.exporter_process import ExporterProcess
from realparts.fake_kubernetes import FakeKubernetes, pod_object, scraped_pod
from realparts.fake_nvml import FakeGpu, FakeNvmlState, default_gpu_uuid, subprocess_env
from realparts.kubelet import FakeKubelet, pod
from realparts.samples import Samples, assert_pod_costs_add_up, eventually, total, value
from realparts.simulator_process import SimulatorProcess

from llm_cost_exporter.accounting.gpu_inventory import UNCLAIMED
from llm_cost_exporter.accounting.pod_attribution import UNALLOCATED

pytestmark = pytest.mark.realparts

NODE = "gpu-node-1"
H100 = "NVIDIA H100 80GB HBM3"
PRICE = 3.6
"""Per GPU-hour: a GPU costs 0.001 a second."""
UUID = [default_gpu_uuid(i) for i in range(4)]
ALPHA = pod("serving", "alpha-0", UUID[0], UUID[1])
BETA = pod("serving", "beta-0", UUID[2])
NOTEBOOK = pod("research", "notebook-7", UUID[3])
MONEY_AND_TOKENS = (
    "llmcost_cost_total",
    "llmcost_model_cost_total",
    "llmcost_pod_cost_total",
    "llmcost_tokens_total",
    "llmcost_api_equivalent_cost_total",
)


@dataclass
class Node:
    exporter: ExporterProcess
    api: FakeKubernetes
    kubelet: FakeKubelet
    simulator: SimulatorProcess

    def samples(self) -> Samples:
        return self.exporter.samples()

    def target(self, index: int) -> str:
        return self.simulator.engine_url(index)


@pytest.fixture(scope="module")
def node(lib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("k8s-node")
    nvml_state = workdir / "nvml-state.txt"
    FakeNvmlState([FakeGpu(name=H100, uuid=u) for u in UUID]).write(nvml_state)
    with FakeKubernetes(workdir) as api, FakeKubelet(workdir / "kubelet.sock") as kubelet:
        kubelet.answer([ALPHA, BETA, NOTEBOOK])
        api.add_pod(pod_object("notebook-7", namespace="research", node=NODE))
        # An engine on another node: never this exporter's to read.
        api.add_pod(scraped_pod("gamma-0", 8000, namespace="serving", node="gpu-node-2"))
        config = minimal_config_dict(
            cost={"gpu_prices_per_hour": {"H100": PRICE}, "overhead_ratio": 0.0},
            collection={"interval": "250ms", "timeout": "200ms"},
            metrics={"model_gauges": True},
            kubernetes={
                "pod_resources": {"socket": str(kubelet.socket_path)},
                "discovery": api.discovery_settings(node_name=NODE),
            },
        )
        exporter = ExporterProcess(config, workdir, env=subprocess_env(lib_dir, nvml_state))
        # The engines start after the exporter: every token they serve is new to it.
        simulator = SimulatorProcess(
            workdir, "--engines", "2", "--model", "alpha,beta", "--profile", "steady"
        )
        with exporter, simulator:
            for index, name in enumerate(("alpha-0", "beta-0")):
                path = f"/engine/{index}/metrics"
                api.add_pod(scraped_pod(name, simulator.port, path, namespace="serving", node=NODE))
            yield Node(exporter, api, kubelet, simulator)


def gpu_info(samples: Samples) -> set[tuple[str, ...]]:
    return {
        tuple(labels[k] for k in ("gpu", "uuid", "model", "namespace", "pod", "container"))
        for (name, pairs), _ in samples.items()
        if name == "llmcost_gpu_info" and (labels := dict(pairs))
    }


def pod_series(samples: Samples) -> set[tuple[str, str, str]]:
    return {
        (labels["model"], labels["namespace"], labels["pod"])
        for (name, pairs), _ in samples.items()
        if name == "llmcost_pod_cost_total" and (labels := dict(pairs))
    }


def grown(later: Samples, earlier: Samples, name: str, **labels: str) -> float:
    return total(later, name, **labels) - total(earlier, name, **labels)


def later_than(node: Node, earlier: Samples, gpu_seconds: float) -> Samples:
    """A scrape once the node has spent `gpu_seconds` more of one GPU's price."""
    spend = PRICE / 3600 * gpu_seconds
    return eventually(
        lambda: (s := node.samples()) and grown(s, earlier, "llmcost_cost_total") >= spend and s,
        what=f"{gpu_seconds} GPU-seconds spent",
    )


def assert_monotonic(earlier: Samples, later: Samples) -> None:
    """Money and token counters neither step back nor end."""
    for key, before in earlier.items():
        if key[0] in MONEY_AND_TOKENS:
            assert key in later, f"{key} ended"
            assert later[key] >= before, f"{key} stepped back: {before} -> {later[key]}"


def test_discovered_pods_are_read_and_their_tokens_counted_per_model(node: Node) -> None:
    url = [node.target(0), node.target(1)]
    samples = eventually(
        lambda: (
            (s := node.samples())
            and all(value(s, "llmcost_collector_up", target=u) == 1 for u in url)
            and s
        ),
        what="both engine pods are read",
    )
    info = {
        (labels["target"], labels["namespace"], labels["pod"])
        for (name, pairs), _ in samples.items()
        if name == "llmcost_engine_info" and (labels := dict(pairs))
    }
    assert info == {(url[0], "serving", "alpha-0"), (url[1], "serving", "beta-0")}
    assert value(samples, "llmcost_collector_up", collector="kubernetes") == 1
    assert value(samples, "llmcost_collector_up", collector="pod_resources") == 1
    assert total(samples, "llmcost_discovery_skipped_pods") == 0

    node.simulator.control(profile="idle")

    def counted_as_served() -> dict[str, float]:
        served = {"alpha": node.simulator.page_tokens(0), "beta": node.simulator.page_tokens(1)}
        samples = node.samples()
        counted = {m: total(samples, "llmcost_tokens_total", model=m) for m in served}
        return served if all(served.values()) and counted == served else {}

    eventually(counted_as_served, what="every token of each model counted")


def claimed(node: Node) -> Samples:
    """A scrape once both engines have claimed their GPUs."""
    return eventually(
        lambda: (
            (s := node.samples())
            and value(s, "llmcost_gpu_info", gpu="0", model="alpha")
            and value(s, "llmcost_gpu_info", gpu="2", model="beta")
            and s
        ),
        what="the engines claim their pods' GPUs",
    )


def test_gpu_info_names_each_gpus_model_and_pod(node: Node) -> None:
    assert gpu_info(claimed(node)) == {
        ("0", UUID[0], "alpha", "serving", "alpha-0", "alpha-0"),
        ("1", UUID[1], "alpha", "serving", "alpha-0", "alpha-0"),
        ("2", UUID[2], "beta", "serving", "beta-0", "beta-0"),
        ("3", UUID[3], UNCLAIMED, "research", "notebook-7", "notebook-7"),
    }


def test_each_model_pays_for_the_gpus_its_pods_hold(node: Node) -> None:
    first = claimed(node)
    later = later_than(node, first, gpu_seconds=8)
    for samples in (first, later):
        hourly = {
            m: value(samples, "llmcost_model_hourly_cost", model=m)
            for m in ("alpha", "beta", UNCLAIMED)
        }
        assert hourly == pytest.approx({"alpha": 2 * PRICE, "beta": PRICE, UNCLAIMED: PRICE})
        assert_pod_costs_add_up(samples)

    def model(name: str) -> float:
        return grown(later, first, "llmcost_model_cost_total", model=name)

    def pod_spend(model: str, namespace: str, name: str) -> float:
        return grown(
            later, first, "llmcost_pod_cost_total", model=model, namespace=namespace, pod=name
        )

    beta = model("beta")
    assert beta > 0
    assert model("alpha") == pytest.approx(2 * beta, rel=1e-9)
    assert model(UNCLAIMED) == pytest.approx(beta, rel=1e-9)  # GPU 3
    assert grown(later, first, "llmcost_cost_total") == pytest.approx(4 * beta, rel=1e-9)
    assert pod_spend("alpha", "serving", "alpha-0") == pytest.approx(2 * beta, rel=1e-9)
    assert pod_spend("beta", "serving", "beta-0") == pytest.approx(beta, rel=1e-9)
    assert pod_spend(UNCLAIMED, "research", "notebook-7") == pytest.approx(beta, rel=1e-9)
    # Before its engine answered, a pod's GPUs were (unclaimed); once it has, no longer.
    assert pod_spend(UNCLAIMED, "serving", "alpha-0") == 0
    assert pod_spend(UNCLAIMED, "serving", "beta-0") == 0
    # No model crosses pods.
    series = pod_series(later)
    assert {p for m, _, p in series if m == "alpha"} == {"alpha-0"}
    assert {p for m, _, p in series if m == "beta"} == {"beta-0"}
    assert {m for m, ns, _ in series if ns == "research"} == {UNCLAIMED}
    assert_monotonic(first, later)


def test_a_deleted_engine_pod_leaves_its_gpu_unclaimed_and_unallocated(node: Node) -> None:
    before = node.samples()
    node.kubelet.answer([ALPHA, NOTEBOOK])
    node.api.delete_pod("serving", "beta-0")
    gone = eventually(
        lambda: (
            (s := node.samples())
            and value(s, "llmcost_collector_up", target=node.target(1)) is None
            and value(s, "llmcost_gpu_info", gpu="2", model=UNCLAIMED, pod=UNALLOCATED)
            and s
        ),
        what="GPU 2 unclaimed and unallocated",
    )
    assert_monotonic(before, gone)
    assert value(gone, "llmcost_engine_info", pod="beta-0") is None
    assert value(gone, "llmcost_gpu_info", gpu="2", namespace=UNALLOCATED) == 1
    assert value(gone, "llmcost_model_hourly_cost", model="beta") is None
    assert value(gone, "llmcost_model_hourly_cost", model=UNCLAIMED) == pytest.approx(2 * PRICE)
    later = later_than(node, gone, gpu_seconds=8)
    assert_monotonic(gone, later)
    assert_pod_costs_add_up(later)

    alpha = grown(later, gone, "llmcost_model_cost_total", model="alpha")
    assert alpha > 0
    assert grown(later, gone, "llmcost_model_cost_total", model="beta") == 0
    assert grown(later, gone, "llmcost_pod_cost_total", pod="beta-0") == 0
    assert grown(later, gone, "llmcost_model_cost_total", model=UNCLAIMED) == pytest.approx(
        alpha, rel=1e-9
    )  # GPUs 2 and 3
    unallocated = grown(later, gone, "llmcost_pod_cost_total", model=UNCLAIMED, pod=UNALLOCATED)
    assert unallocated == pytest.approx(alpha / 2, rel=1e-9)
    # Beta's tokens stay in its model's count.
    assert total(later, "llmcost_tokens_total", model="beta") == total(
        gone, "llmcost_tokens_total", model="beta"
    )
    log = node.exporter.log()
    assert "Traceback" not in log
    assert "gamma-0" not in log
