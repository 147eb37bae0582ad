"""A fake kubelet: a real gRPC server of the pod-resources API on a unix socket.

It implements `v1.PodResourcesLister/List` with the generated servicer and answers
what the test sets (pods, containers, devices); it can be made to fail: answer
UNAVAILABLE, hang past the client's deadline, answer bytes that are no
ListPodResourcesResponse, or stop (its socket closes). Only the API server is fake:
the kubelet itself cannot run here.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc

from llm_cost_exporter.collectors.kubelet import api_pb2, api_pb2_grpc

LIST_METHOD = "List"
SERVICE = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"].full_name


@dataclass
class Container:
    name: str
    devices: dict[str, list[str]] = field(default_factory=dict)
    """Resource name -> device IDs, as the kubelet lists them."""


@dataclass
class Pod:
    namespace: str
    name: str
    containers: list[Container]


def pod(namespace: str, name: str, *device_ids: str, resource: str = "nvidia.com/gpu") -> Pod:
    """A pod of one container (named after the pod) holding `device_ids` of `resource`."""
    return Pod(namespace, name, [Container(name, {resource: list(device_ids)})])


def response(pods: list[Pod]) -> api_pb2.ListPodResourcesResponse:
    """The kubelet's List answer for `pods`."""
    return api_pb2.ListPodResourcesResponse(
        pod_resources=[
            api_pb2.PodResources(
                name=p.name,
                namespace=p.namespace,
                containers=[
                    api_pb2.ContainerResources(
                        name=c.name,
                        devices=[
                            api_pb2.ContainerDevices(resource_name=r, device_ids=ids)
                            for r, ids in c.devices.items()
                        ],
                    )
                    for c in p.containers
                ],
            )
            for p in pods
        ]
    )


class FakeKubelet:
    """Serve the pod-resources API on `socket_path` while started (a context manager)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.pods: list[Pod] = []
        self.failure: grpc.StatusCode | None = None
        """Answer this status instead of the pods."""
        self.raw: bytes | None = None
        """Answered instead of the pods (as they are, whatever they are): see `answer_raw`."""
        self.calls = 0
        self._hang = threading.Event()
        self._hang.set()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"unix://{self.socket_path}"

    def answer(self, pods: list[Pod]) -> None:
        """Answer `pods` from now on, failing no more."""
        with self._lock:
            self.pods, self.failure = list(pods), None
        self._hang.set()
        if self.raw is not None:
            self.raw = None
            self._restart()

    def answer_raw(self, raw: bytes) -> None:
        """Answer `raw` from now on: served by a handler of its own, as bytes (the
        generated servicer's handler always serializes a ListPodResourcesResponse)."""
        self.raw = raw
        self._restart()

    def _restart(self) -> None:
        if self._server is not None:
            self.stop()
            self.start()

    def fail(self, code: grpc.StatusCode) -> None:
        self.failure = code

    def hang(self) -> None:
        """Hold every call until `answer` (past any client deadline)."""
        self._hang.clear()

    def start(self) -> FakeKubelet:
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        if self.raw is None:
            api_pb2_grpc.add_PodResourcesListerServicer_to_server(_Lister(self), server)
        else:
            server.add_generic_rpc_handlers((_RawAnswers(self),))
        server.add_insecure_port(self.address)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving: the socket no longer answers."""
        self._hang.set()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class _Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, kubelet: FakeKubelet) -> None:
        self.kubelet = kubelet

    def List(  # noqa: N802 (the generated servicer's name)
        self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListPodResourcesResponse:
        kubelet = self.kubelet
        kubelet.calls += 1
        kubelet._hang.wait()
        with kubelet._lock:
            failure, pods = kubelet.failure, list(kubelet.pods)
        if failure is not None:
            context.abort(failure, "the fake kubelet was told to fail")
        return response(pods)


class _RawAnswers(grpc.GenericRpcHandler):
    """Takes List calls over while `raw` is set, answering its bytes unserialized."""

    def __init__(self, kubelet: FakeKubelet) -> None:
        self.kubelet = kubelet

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        raw = self.kubelet.raw
        if raw is None or details.method != f"/{SERVICE}/{LIST_METHOD}":
            return None

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.kubelet.calls += 1
            return raw

        return grpc.unary_unary_rpc_method_handler(answer)


# --- the wire format, by hand: what the kubelet sends beyond what the exporter reads --


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def full_kubelet_answer(
    pods: list[Pod], numa_node: int = 1, cpus: tuple[int, ...] = (2, 3)
) -> bytes:
    """`pods` encoded as a current kubelet sends them, with the fields the exporter's
    .proto leaves out: ContainerDevices.topology (3), ContainerResources.cpu_ids (3,
    packed), memory (4) and dynamic_resources (5)."""
    topology = _field(1, _varint(1 << 3 | 0) + _varint(numa_node))  # NUMANode{ID}
    memory = _field(1, b"memory") + _varint(2 << 3 | 0) + _varint(1 << 30)
    claim = _field(2, b"claim") + _field(3, b"default")
    body = b""
    for p in pods:
        containers = b""
        for c in p.containers:
            devices = b""
            for resource_name, ids in c.devices.items():
                device = _field(1, resource_name.encode())
                device += b"".join(_field(2, i.encode()) for i in ids)
                device += _field(3, topology)
                devices += _field(2, device)
            packed_cpus = b"".join(_varint(cpu) for cpu in cpus)
            container = _field(1, c.name.encode()) + devices + _field(3, packed_cpus)
            container += _field(4, memory) + _field(5, claim)
            containers += _field(3, container)
        body += _field(1, _field(1, p.name.encode()) + _field(2, p.namespace.encode()) + containers)
    return body
