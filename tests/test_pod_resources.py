"""GPU-to-pod attribution: the kubelet's answer, read over real gRPC, turned into money.

The collector talks to a fake kubelet (a real gRPC server of the pod-resources API on
a unix socket); the mapping and the money are checked on their own, to the cent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import minimal_config_dict
from kubelet_stubs import GENERATED, KUBELET, generate
from realparts.kubelet import Container, FakeKubelet, Pod, full_kubelet_answer, pod, response

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.gpu_inventory import UNCLAIMED, build_inventory
from llm_cost_exporter.accounting.node import EnginePod, NodeState
from llm_cost_exporter.accounting.pod_attribution import UNALLOCATED, UNALLOCATED_POD
from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.kubelet import api_pb2
from llm_cost_exporter.collectors.kubelet.devices import pod_devices, resource_kind
from llm_cost_exporter.collectors.kubelet.pod_resources import PodResourcesCollector
from llm_cost_exporter.collectors.readings import (
    EngineReading,
    GpuReading,
    GpuSnapshot,
    MigInstance,
    PodDevices,
)
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.state_file import StateFile
from llm_cost_exporter.outputs.node_families import node_families

GPU = [f"GPU-{i}0000000-1111-2222-3333-444444444444" for i in range(4)]
MIG = [f"MIG-{i}aaaaaaa-1111-2222-3333-444444444444" for i in range(3)]
A, B = "http://a:8000/metrics", "http://b:8000/metrics"


# --- the generated modules ---------------------------------------------------------


def test_generated_modules_are_what_grpcio_tools_makes_of_the_proto() -> None:
    fresh = generate()
    for name in GENERATED:
        assert (KUBELET / name).read_bytes() == fresh[name], (
            f"collectors/kubelet/{name} is stale: python tests/kubelet_stubs.py --write"
        )


def test_the_wire_names_are_the_kubelets() -> None:
    service = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert service.full_name == "v1.PodResourcesLister"
    assert service.methods_by_name["List"].input_type.full_name == "v1.ListPodResourcesRequest"
    numbers = {
        message: {
            f.name: f.number for f in api_pb2.DESCRIPTOR.message_types_by_name[message].fields
        }
        for message in ("ListPodResourcesResponse", "PodResources", "ContainerResources")
    }
    assert numbers == {
        "ListPodResourcesResponse": {"pod_resources": 1},
        "PodResources": {"name": 1, "namespace": 2, "containers": 3},
        "ContainerResources": {"name": 1, "devices": 2},
    }


def test_what_a_current_kubelet_sends_beyond_the_proto_is_skipped() -> None:
    pods = [pod("team-a", "llm-0", GPU[0], GPU[1])]
    parsed = api_pb2.ListPodResourcesResponse.FromString(full_kubelet_answer(pods))
    assert parsed != response(pods)  # it holds what our .proto leaves out
    assert pod_devices(parsed) == pod_devices(response(pods))
    parsed.DiscardUnknownFields()
    assert parsed == response(pods)


# --- device IDs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("nvidia.com/gpu", (True, None)),
        ("nvidia.com/gpu.shared", (True, None)),
        ("nvidia.com/mig-3g.40gb", (True, 3)),
        ("nvidia.com/mig-1g.10gb+me", (True, 1)),
        ("nvidia.com/mig-1c.3g.40gb", (True, 1)),
        ("nvidia.com/mig-2g.20gb.shared", (True, 2)),
        ("nvidia.com/mig-odd", (True, None)),
        ("cpu", (False, None)),
        ("example.com/fpga", (False, None)),
        ("amd.com/gpu", (False, None)),
        ("nvidia.com/gpu-extra", (False, None)),
    ],
)
def test_resource_kinds(resource: str, expected: tuple[bool, int | None]) -> None:
    assert resource_kind(resource) == expected


def holds_of(*pods: Pod) -> dict[str, list[tuple[str, str, str, str, int | None]]]:
    devices = pod_devices(response(list(pods)))
    return {
        device: [
            (h.holder.namespace, h.holder.pod, h.holder.container, h.replica, h.slices)
            for h in holds
        ]
        for device, holds in devices.holds.items()
    }


def test_device_ids_become_holds() -> None:
    shared = "nvidia.com/gpu.shared"
    both = Pod(
        "ns",
        "both",
        [
            Container("main", {"nvidia.com/gpu": [GPU[0]], "example.com/nic": ["eth1"]}),
            Container("side", {"nvidia.com/mig-3g.40gb": [MIG[0]], "cpu": ["1"]}),
        ],
    )
    assert holds_of(
        both,
        pod("ns", "ts-1", f"{GPU[1]}::0", f"{GPU[1]}::3", resource=shared),
        pod("ns", "ts-2", f"{GPU[1]}::1", resource=shared),
        pod("ns", "plain", "GPU-unknown-to-the-node"),
        pod("ns", "idx", "3"),
        pod("ns", "nic", "eth0", resource="example.com/nic"),
    ) == {
        GPU[0]: [("ns", "both", "main", GPU[0], None)],
        MIG[0]: [("ns", "both", "side", MIG[0], 3)],
        GPU[1]: [
            ("ns", "ts-1", "ts-1", f"{GPU[1]}::0", None),
            ("ns", "ts-1", "ts-1", f"{GPU[1]}::3", None),
            ("ns", "ts-2", "ts-2", f"{GPU[1]}::1", None),
        ],
        "GPU-unknown-to-the-node": [("ns", "plain", "plain", "GPU-unknown-to-the-node", None)],
        "3": [("ns", "idx", "idx", "3", None)],
    }


@pytest.mark.parametrize("namespace", ["", "x" * 254])
def test_a_nameless_or_overlong_pod_is_a_parse_failure(namespace: str) -> None:
    with pytest.raises(CollectorError) as failure:
        pod_devices(response([pod(namespace, "p", GPU[0])]))
    assert failure.value.reason == "parse"


def test_an_answer_of_too_many_gpus_is_refused() -> None:
    with pytest.raises(CollectorError) as failure:
        pod_devices(response([pod("ns", f"p{i}", *GPU) for i in range(1100)]))
    assert failure.value.reason == "too_large"


# --- the collector, over real gRPC -------------------------------------------------


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory):
    with FakeKubelet(tmp_path_factory.mktemp("kubelet") / "kubelet.sock") as server:
        yield server


def collect(collector: PodResourcesCollector) -> PodDevices:
    return asyncio.run(collector.collect())


def failure_of(collector: PodResourcesCollector) -> CollectorError:
    with pytest.raises(CollectorError) as failure:
        collect(collector)
    return failure.value


def test_the_collector_reads_the_kubelets_answer(kubelet: FakeKubelet) -> None:
    kubelet.answer([pod("team-a", "llm-0", GPU[0]), pod("team-b", "llm-1", GPU[1])])
    collector = PodResourcesCollector(str(kubelet.socket_path), timeout=5.0)
    assert collector.wanted()
    devices = collect(collector)
    assert {
        d: [(h.holder.namespace, h.holder.pod) for h in hs] for d, hs in devices.holds.items()
    } == {
        GPU[0]: [("team-a", "llm-0")],
        GPU[1]: [("team-b", "llm-1")],
    }
    kubelet.answer([pod("team-c", "moved", GPU[0])])
    assert [h.holder.pod for h in collect(collector).holds[GPU[0]]] == ["moved"]


def test_a_kubelet_answer_with_fields_unknown_to_us_reads_the_same(kubelet: FakeKubelet) -> None:
    pods = [pod("team-a", "llm-0", GPU[0], GPU[1])]
    kubelet.answer(pods)
    expected = collect(PodResourcesCollector(str(kubelet.socket_path), 5.0))
    kubelet.answer_raw(full_kubelet_answer(pods))
    try:
        assert collect(PodResourcesCollector(str(kubelet.socket_path), 5.0)) == expected
    finally:
        kubelet.answer(pods)


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda k: k.fail(grpc.StatusCode.UNAVAILABLE), "connection"),
        (lambda k: k.fail(grpc.StatusCode.UNIMPLEMENTED), "unavailable"),
        (lambda k: k.fail(grpc.StatusCode.PERMISSION_DENIED), "credentials"),
        # a length-delimited field that claims 64 bytes and ends after 5
        (lambda k: k.answer_raw(b"\x0a\x40short"), "parse"),
        (lambda k: k.hang(), "timeout"),
    ],
)
def test_a_failing_kubelet_is_a_collector_failure(kubelet: FakeKubelet, break_it, reason) -> None:
    break_it(kubelet)
    try:
        assert failure_of(PodResourcesCollector(str(kubelet.socket_path), 0.5)).reason == reason
    finally:
        kubelet.answer([])


def test_absent_socket_is_told_once_and_found_when_it_appears(tmp_path: Path, caplog) -> None:
    socket = tmp_path / "kubelet.sock"
    collector = PodResourcesCollector(str(socket), 5.0)
    with caplog.at_level(logging.INFO):
        assert [collector.wanted() for _ in range(3)] == [False] * 3
        absent = [r.getMessage() for r in caplog.records]
        assert len(absent) == 1 and "is absent" in absent[0]
        with FakeKubelet(socket) as late:
            late.answer([pod("ns", "p", GPU[0])])
            assert collector.wanted()
            assert GPU[0] in collect(collector).holds
    # Gone after it was found: a failure, not a silent return to "absent".
    socket.unlink(missing_ok=True)
    assert collector.wanted()
    assert failure_of(collector).reason == "unavailable"


def test_a_stopped_kubelet_is_a_connection_failure(tmp_path: Path) -> None:
    socket = tmp_path / "kubelet.sock"
    server = FakeKubelet(socket).start()
    server.stop()
    socket.touch(exist_ok=True)  # a socket file left behind, nobody listening
    assert failure_of(PodResourcesCollector(str(socket), 2.0)).reason == "connection"


def test_a_daemon_without_the_socket_never_imports_grpc() -> None:
    code = (
        "import sys, asyncio\n"
        "import llm_cost_exporter.daemon.assembly\n"
        "from llm_cost_exporter.collectors.kubelet.pod_resources import PodResourcesCollector\n"
        "c = PodResourcesCollector('/nonexistent/kubelet.sock', 1.0)\n"
        "assert not c.wanted()\n"
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('google.protobuf')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- the money ---------------------------------------------------------------------


def reading(model: str, tokens: float = 0.0) -> EngineReading:
    return EngineReading(model, "0", tokens, 0.0, tokens, 1, 0, 0.1, 1000, 100, 1000.0)


def gpu_reading(index: int, **extra: object) -> GpuReading:
    return GpuReading(index, GPU[index], "NVIDIA H100 80GB HBM3", **extra)  # type: ignore[arg-type]


SHARED_COSTS = {"node_extra_per_hour": 1.0, "overhead_ratio": 0.25, "fixed_per_month": 730.0}


def node(
    price: float = 2.0, shared: bool = True, engines: list | None = None, **overrides: object
) -> NodeState:
    """Four H100s at `price` per hour: engine A claims GPUs 0-1, engine B GPUs 2-3 (or
    `engines`); with `shared`, a node extra, overhead and a fixed monthly cost shared by
    GPU cost."""
    cost = {"gpus": [{"model": "H100", "count": 4}], "gpu_prices_per_hour": {"H100": price}}
    if engines is None:
        engines = [{"url": A, "gpus": [0, 1]}, {"url": B, "gpus": [2, 3]}]
    config = config_from_mapping(
        minimal_config_dict(
            engines=engines,
            cost={**cost, **(SHARED_COSTS if shared else {"overhead_ratio": 0.0})},
            **overrides,
        )
    )
    inventory = build_inventory(
        [(i, GPU[i], "NVIDIA H100 80GB HBM3") for i in range(4)],
        [("H100", 4)],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    return NodeState(
        config, {}, ApiPrices(0.8, 0.08, 4.0), wall_clock=lambda: 5000.0, gpus=inventory
    )


def cycle(state: NodeState, now: float, pods: list[Pod] | None, *gpus: GpuReading) -> None:
    state.record_engine_readings("vllm", A, [reading("alpha")], 0.01)
    state.record_engine_readings("vllm", B, [reading("beta")], 0.01)
    snapshot = GpuSnapshot("550", tuple(gpus) or tuple(gpu_reading(i) for i in range(4)))
    state.record_gpu_snapshot("nvml", "local", snapshot, 0.01, now)
    if pods is not None:
        state.record_pod_devices("pod_resources", "sock", pod_devices(response(pods)), 0.01, now)
    state.advance(now)


def assert_pods_sum_to_models(state: NodeState) -> None:
    accrual = state.accrual
    by_model: dict[str, float] = {}
    for (model, _, _), amount in accrual.pod_spend.items():
        by_model[model] = by_model.get(model, 0.0) + amount
    assert by_model == pytest.approx(accrual.owner_spend, rel=1e-12, abs=1e-15)
    assert sum(by_model.values()) == pytest.approx(accrual.spend_total, rel=1e-12)


def test_pod_spend_follows_the_gpus_each_pod_holds_to_the_cent() -> None:
    state = node()
    pods = [
        pod("team-a", "alpha-0", GPU[0], GPU[1]),
        pod("team-b", "beta-0", GPU[2]),
    ]
    cycle(state, 0.0, pods)
    cycle(state, 3600.0, pods)
    spend = state.accrual.pod_spend
    # An hour: $8 of GPUs + $1 node extra + $1 fixed, overhead 25% on GPUs and extra.
    # Shared costs go by GPU cost: alpha-0 holds 2 of 4 GPUs, beta-0 and (unallocated) 1.
    assert spend[("alpha", "team-a", "alpha-0")] == pytest.approx((4.0 + 0.5) * 1.25 + 0.5)
    assert spend[("beta", "team-b", "beta-0")] == pytest.approx((2.0 + 0.25) * 1.25 + 0.25)
    assert spend[("beta", *UNALLOCATED_POD)] == pytest.approx((2.0 + 0.25) * 1.25 + 0.25)
    assert state.accrual.spend_total == pytest.approx(8.0 * 1.25 + 1.25 + 1.0)
    assert_pods_sum_to_models(state)


def test_time_sliced_gpu_is_split_evenly_among_the_replicas_held() -> None:
    state = node(3.0, shared=False)
    shared = "nvidia.com/gpu.shared"
    pods = [
        pod("ns", "one", f"{GPU[0]}::0", resource=shared),
        pod("ns", "two", f"{GPU[0]}::1", f"{GPU[0]}::2", resource=shared),
    ]
    cycle(state, 0.0, pods)
    cycle(state, 3600.0, pods)
    spend = state.accrual.pod_spend
    assert spend[("alpha", "ns", "one")] == pytest.approx(1.0)
    assert spend[("alpha", "ns", "two")] == pytest.approx(2.0)
    assert spend[("alpha", *UNALLOCATED_POD)] == pytest.approx(3.0)  # GPU 1
    assert_pods_sum_to_models(state)
    holders = [(h.pod, h.container) for h in state.gpu_pods[GPU[0]].holders]
    assert holders == [("one", "one"), ("two", "two")]


def discovering_node(shared: bool = True) -> NodeState:
    """The four-H100 node with no configured engine: its engines are discovered pods."""
    discovery = {"discovery": {"enabled": True, "node_name": "gpu-node-1"}}
    # The per-model window gauges on: none may read as if a model were free.
    state = node(shared=shared, engines=[], kubernetes=discovery, metrics={"model_gauges": True})
    engine_pods = {A: EnginePod("serving", "alpha-0"), B: EnginePod("serving", "beta-0")}
    state.track_engines({("vllm", A), ("vllm", B)}, engine_pods, complete=True)
    return state


def test_discovered_engines_claim_the_gpus_their_pods_hold() -> None:
    """No engines[].gpus: the kubelet says which pod holds each GPU, and the pod says
    which engine, so each model pays for its own GPUs and nothing crosses pods."""
    state = discovering_node()
    pods = [
        pod("serving", "alpha-0", GPU[0], GPU[1]),
        pod("serving", "beta-0", GPU[2]),
        pod("research", "notebook-7", GPU[3]),
    ]
    cycle(state, 0.0, pods)
    cycle(state, 3600.0, pods)
    assert state.gpu_owners == {
        GPU[0]: ("alpha",),
        GPU[1]: ("alpha",),
        GPU[2]: ("beta",),
        GPU[3]: (UNCLAIMED,),
    }
    # An hour: $8 of GPUs + $1 node extra + $1 fixed, overhead 25%, shared by GPU cost.
    one_gpu = (2.0 + 0.25) * 1.25 + 0.25
    assert state.accrual.owner_spend == pytest.approx(
        {"alpha": 2 * one_gpu, "beta": one_gpu, UNCLAIMED: one_gpu}, rel=1e-12
    )
    assert state.accrual.pod_spend == pytest.approx(
        {
            ("alpha", "serving", "alpha-0"): 2 * one_gpu,
            ("beta", "serving", "beta-0"): one_gpu,
            (UNCLAIMED, "research", "notebook-7"): one_gpu,
        },
        rel=1e-12,
    )
    assert_pods_sum_to_models(state)
    assert set(state.model_history) == {"alpha", "beta"}


def test_a_gpu_time_sliced_between_engine_pods_charges_each_pod_its_own_model() -> None:
    state = discovering_node(shared=False)
    shared = "nvidia.com/gpu.shared"
    pods = [
        pod("serving", "alpha-0", f"{GPU[0]}::0", resource=shared),
        pod("serving", "beta-0", f"{GPU[0]}::1", resource=shared),
    ]
    cycle(state, 0.0, pods)
    cycle(state, 3600.0, pods)
    spend = state.accrual.pod_spend
    assert spend[("alpha", "serving", "alpha-0")] == pytest.approx(1.0)
    assert spend[("beta", "serving", "beta-0")] == pytest.approx(1.0)
    assert ("alpha", "serving", "beta-0") not in spend
    assert ("beta", "serving", "alpha-0") not in spend
    assert spend[(UNCLAIMED, *UNALLOCATED_POD)] == pytest.approx(6.0)  # GPUs 1-3
    assert_pods_sum_to_models(state)


def test_without_the_kubelet_discovered_engines_claim_nothing() -> None:
    state = discovering_node()
    cycle(state, 0.0, None)
    cycle(state, 3600.0, None)
    assert set(state.gpu_owners.values()) == {(UNCLAIMED,)}
    assert state.accrual.pod_spend == {}
    # Their models carry no cost: no window figure may read as if they were free.
    assert state.model_history == {}
    samples = {f.name: f.samples for f in node_families(state)}
    assert samples["llmcost_model_effective_cost_per_million_tokens"] == []


@pytest.mark.parametrize(
    ("ids", "resource", "expected"),
    [
        # mixed strategy: 3g + 2g of 7 slices, 2 slices nobody holds
        ((MIG[0], MIG[1]), ("nvidia.com/mig-3g.40gb", "nvidia.com/mig-2g.20gb"), (3 / 7, 2 / 7)),
        # single strategy (no profile): each MIG device an equal part of the instances
        ((MIG[0], MIG[1]), ("nvidia.com/gpu", "nvidia.com/gpu"), (1 / 3, 1 / 3)),
        # a MIG device listed in the index strategy form: GPU 0, MIG device 1
        (("0:1", MIG[1]), ("nvidia.com/mig-3g.40gb", "nvidia.com/mig-3g.40gb"), (3 / 7, 3 / 7)),
    ],
)
def test_mig_devices_split_their_gpu_by_compute_slices(ids, resource, expected) -> None:
    state = node(7.0, shared=False)
    instances = tuple(MigInstance(uuid, i + 1, None, 20e9) for i, uuid in enumerate(MIG))
    gpus = (
        gpu_reading(0, mig_enabled=True, mig_instances=instances, mig_slices=7),
        *(gpu_reading(i) for i in (1, 2, 3)),
    )
    pods = [
        pod("ns", "p0", ids[0], resource=resource[0]),
        pod("ns", "p1", ids[1], resource=resource[1]),
    ]
    cycle(state, 0.0, pods, *gpus)
    cycle(state, 3600.0, pods, *gpus)
    spend = state.accrual.pod_spend
    assert spend[("alpha", "ns", "p0")] == pytest.approx(7.0 * expected[0])
    assert spend[("alpha", "ns", "p1")] == pytest.approx(7.0 * expected[1])
    # GPU 1 whole, and the slices of GPU 0 nobody holds
    unallocated = 7.0 + 7.0 * (1 - sum(expected))
    assert spend[("alpha", *UNALLOCATED_POD)] == pytest.approx(unallocated)
    assert_pods_sum_to_models(state)


def test_without_the_kubelet_nothing_changes() -> None:
    with_pods, without = node(), node()
    for now in (0.0, 60.0, 120.0):
        cycle(with_pods, now, [pod("ns", "p", GPU[0])])
        cycle(without, now, None)
    assert without.gpu_pods is None and without.accrual.pod_spend == {}
    names = {f.name for f in node_families(without)}
    assert "llmcost_pod_cost" not in names
    info = next(f for f in node_families(without) if f.name == "llmcost_gpu_info")
    assert "pod" not in info.samples[0].labels
    # The pods' split changes no model's spend and no component.
    assert with_pods.accrual.owner_spend == pytest.approx(without.accrual.owner_spend, rel=1e-12)
    assert with_pods.accrual.spend == pytest.approx(without.accrual.spend, rel=1e-12)


def test_a_moved_pod_takes_the_cost_from_then_on() -> None:
    state = node()
    cycle(state, 0.0, [pod("ns", "old", GPU[0])])
    cycle(state, 60.0, [pod("ns", "old", GPU[0])])
    old = state.accrual.pod_spend[("alpha", "ns", "old")]
    # Each interval goes to the holders the kubelet names at its end, as the models'
    # share goes to the models the engines serve then.
    cycle(state, 120.0, [pod("ns", "new", GPU[0])])
    cycle(state, 180.0, [pod("ns", "new", GPU[0])])
    spend = state.accrual.pod_spend
    assert spend[("alpha", "ns", "old")] == old
    assert spend[("alpha", "ns", "new")] == pytest.approx(2 * old)
    assert_pods_sum_to_models(state)


def test_a_gone_pods_series_ends_after_the_model_idle_timeout() -> None:
    state = node(limits={"model_idle_timeout": "10m"})
    cycle(state, 0.0, [pod("ns", "batch", GPU[0])])
    cycle(state, 60.0, [pod("ns", "batch", GPU[0])])  # last held GPU 0 at 60 s
    cycle(state, 120.0, [])
    cycle(state, 659.0, [])
    assert state.accrual.pod_spend[("alpha", "ns", "batch")] > 0
    cycle(state, 660.0, [])
    assert ("alpha", "ns", "batch") not in state.accrual.pod_spend
    assert ("alpha", UNALLOCATED, UNALLOCATED) in state.accrual.pod_spend


def test_a_silent_kubelets_last_answer_stands_then_is_dropped(caplog) -> None:
    state = node()
    cycle(state, 0.0, [pod("ns", "p", GPU[0])])
    state.record_failure("pod_resources", "sock", "connection", "refused", 0.01, engine=False)
    state.advance(200.0)
    assert state.gpu_pods[GPU[0]].holders[0].pod == "p"
    with caplog.at_level(logging.WARNING):
        state.advance(301.0)
    assert state.gpu_pods[GPU[0]].shares == {UNALLOCATED_POD: 1.0}
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 1


def test_pod_spend_survives_a_restart_and_downtime_is_billed_to_pods(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    before = node(state_file=str(path))
    pods = [pod("ns", "a", GPU[0], GPU[1]), pod("ns", "b", GPU[2])]
    cycle(before, 0.0, pods)
    cycle(before, 3600.0, pods)
    StateFile(path).save_now(before)
    after = node(state_file=str(path))
    after._wall_clock = lambda: 5000.0 + 1800.0  # down for half an hour
    assert StateFile(path).resume(after) == "resumed"
    assert after.accrual.pod_spend == before.accrual.pod_spend
    cycle(after, 10.0, None)  # the kubelet has not answered yet: downtime billed
    for key, amount in before.accrual.pod_spend.items():
        expected = amount + before.accrual.pod_hourly[key] / 2
        assert after.accrual.pod_spend[key] == pytest.approx(expected, rel=1e-12)
    assert_pods_sum_to_models(after)


def test_a_state_file_without_pod_spend_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    before = node(state_file=str(path))
    cycle(before, 0.0, [pod("ns", "a", GPU[0])])
    cycle(before, 60.0, [pod("ns", "a", GPU[0])])
    StateFile(path).save_now(before)
    saved = json.loads(path.read_text())
    for key in ("pod_spend", "pod_hourly"):
        del saved["node"]["cost"][key]
    path.write_text(json.dumps(saved))
    after = node(state_file=str(path))
    assert StateFile(path).resume(after) == "resumed"
    assert after.accrual.pod_spend == {}
    assert after.accrual.owner_spend == before.accrual.owner_spend
