"""The real daemon attributing GPU cost to pods: fake NVML, simulated engines, and a
fake kubelet (a real gRPC server of the pod-resources API) on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import minimal_config_dict
from realparts.exporter_process import ExporterProcess
from realparts.fake_nvml import FakeGpu, FakeNvmlState, default_gpu_uuid, subprocess_env
from realparts.kubelet import FakeKubelet, pod
from realparts.samples import Samples, assert_pod_costs_add_up, eventually, total, value
from realparts.simulator_process import SimulatorProcess

pytestmark = pytest.mark.realparts

H100 = "NVIDIA H100 80GB HBM3"
FAST = {"interval": "250ms", "timeout": "200ms"}
UUID = [default_gpu_uuid(i) for i in range(3)]
SHARED = "nvidia.com/gpu.shared"
PODS = [
    pod("team-a", "big-0", UUID[0], UUID[1]),
    pod("team-b", "small-0", f"{UUID[2]}::0", resource=SHARED),
    pod("team-c", "small-1", f"{UUID[2]}::1", resource=SHARED),
]


class Node:
    def __init__(self, workdir: Path, exporter: ExporterProcess, kubelet: FakeKubelet) -> None:
        self.workdir, self.exporter, self.kubelet = workdir, exporter, kubelet


def config(socket: Path, engines: list[dict]) -> dict:
    return minimal_config_dict(
        engines=engines,
        cost={
            "gpu_prices_per_hour": {"H100": 2.99},
            "overhead_ratio": 0.3,
            "node_extra_per_hour": 1.5,
        },
        collection=FAST,
        metrics={"model_gauges": True},
        kubernetes={"pod_resources": {"socket": str(socket)}},
    )


@pytest.fixture(scope="module")
def node(lib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("pods")
    state = workdir / "nvml-state.txt"
    FakeNvmlState([FakeGpu(name=H100) for _ in range(3)]).write(state)
    simulator = SimulatorProcess(
        workdir, "--engines", "2", "--model", "big,small", "--profile", "steady", "--level", "0.3"
    )
    with simulator, FakeKubelet(workdir / "kubelet.sock") as kubelet:
        kubelet.answer(PODS)
        engines = [
            {"url": simulator.engine_url(0), "gpus": [0, 1]},
            {"url": simulator.engine_url(1), "gpus": [2]},
        ]
        exporter = ExporterProcess(
            config(kubelet.socket_path, engines), workdir, env=subprocess_env(lib_dir, state)
        )
        with exporter:
            yield Node(workdir, exporter, kubelet)


def pod_spend(samples: Samples, **labels: str) -> float | None:
    return value(samples, "llmcost_pod_cost_total", **labels)


def test_gpu_info_names_the_pods_and_their_cost_adds_up(node: Node) -> None:
    samples = eventually(
        lambda: (s := node.exporter.samples()) and pod_spend(s, pod="small-1") and s
    )
    info = {
        (labels["gpu"], labels["namespace"], labels["pod"], labels["container"])
        for (name, pairs), _ in samples.items()
        if name == "llmcost_gpu_info" and (labels := dict(pairs))
    }
    assert info == {
        ("0", "team-a", "big-0", "big-0"),
        ("1", "team-a", "big-0", "big-0"),
        ("2", "team-b", "small-0", "small-0"),  # one time-sliced GPU, two holders
        ("2", "team-c", "small-1", "small-1"),
    }
    assert value(samples, "llmcost_collector_up", collector="pod_resources") == 1
    assert_pod_costs_add_up(samples)
    later = eventually(
        lambda: (
            (s := node.exporter.samples())
            and pod_spend(s, pod="big-0") > pod_spend(samples, pod="big-0")
            and s
        )
    )
    # big-0 holds two GPUs of big's; small-0 and small-1 half a GPU each of small's.
    grown = {p: pod_spend(later, pod=p) - pod_spend(samples, pod=p) for p in ("small-0", "small-1")}
    assert grown["small-0"] == pytest.approx(grown["small-1"], rel=0.05)
    hourly_big = value(later, "llmcost_model_hourly_cost", model="big")
    hourly_small = value(later, "llmcost_model_hourly_cost", model="small")
    assert hourly_big == pytest.approx(2 * hourly_small)
    assert_pod_costs_add_up(later)


def test_a_pod_moving_moves_the_cost_from_then_on(node: Node) -> None:
    node.kubelet.answer([pod("team-d", "mover", UUID[0]), *PODS[1:]])
    moved = eventually(
        lambda: (s := node.exporter.samples()) and (pod_spend(s, pod="mover") or 0) > 0 and s
    )
    assert value(moved, "llmcost_gpu_info", gpu="0", namespace="team-d", pod="mover") == 1
    assert value(moved, "llmcost_gpu_info", gpu="1", pod="(unallocated)") == 1
    before = pod_spend(moved, pod="big-0")
    later = eventually(
        lambda: (
            (s := node.exporter.samples())
            and pod_spend(s, pod="mover") > 2 * pod_spend(moved, pod="mover")
            and s
        )
    )
    assert pod_spend(later, pod="big-0") == before  # holds nothing any more
    assert pod_spend(later, model="big", pod="(unallocated)") > 0  # GPU 1
    assert_pod_costs_add_up(later)


def test_a_dead_kubelet_marks_its_collector_down_and_engines_keep_serving(node: Node) -> None:
    node.kubelet.answer(PODS)
    eventually(lambda: value(node.exporter.samples(), "llmcost_gpu_info", gpu="0", pod="big-0"))
    node.kubelet.stop()
    try:
        down = eventually(
            lambda: (
                (s := node.exporter.samples())
                and value(s, "llmcost_collector_up", collector="pod_resources") == 0
                and s
            )
        )
        later = eventually(
            lambda: (
                (s := node.exporter.samples())
                and total(s, "llmcost_tokens_total") > total(down, "llmcost_tokens_total")
                and s
            )
        )
        assert total(later, "llmcost_collector_up", collector="vllm") == 2
        # The last answer stands meanwhile: the pods keep their GPUs.
        assert pod_spend(later, pod="big-0") > pod_spend(down, pod="big-0")
        assert_pod_costs_add_up(later)
    finally:
        node.kubelet.start()
    eventually(
        lambda: (
            value(node.exporter.samples(), "llmcost_collector_up", collector="pod_resources") == 1
        )
    )
    log = node.exporter.log()
    assert "Traceback" not in log
    assert log.count("pod_resources target") >= 2  # down, then answers again


def test_without_the_socket_one_line_says_so_and_nothing_changes(
    lib_dir: Path, tmp_path: Path
) -> None:
    state = tmp_path / "nvml-state.txt"
    FakeNvmlState([FakeGpu(name=H100)]).write(state)
    dead = [{"url": "http://127.0.0.1:9/metrics"}]
    exporter = ExporterProcess(
        config(tmp_path / "absent" / "kubelet.sock", dead),
        tmp_path,
        env=subprocess_env(lib_dir, state),
    )
    with exporter:
        samples = eventually(
            lambda: (
                (s := exporter.samples()) and value(s, "llmcost_cost_total", component="gpu") and s
            )
        )
        eventually(lambda: exporter.log().count("kubelet pod-resources socket") == 1)
    assert value(samples, "llmcost_gpu_info", gpu="0", model="(unclaimed)") == 1
    assert not any("pod" in dict(labels) for _, labels in samples)
    assert not any(name.startswith("llmcost_pod_") for name, _ in samples)
    assert value(samples, "llmcost_collector_up", collector="pod_resources") is None
    log = exporter.log()
    assert log.count("kubelet pod-resources socket") == 1 and "is absent" in log
    assert "Traceback" not in log
