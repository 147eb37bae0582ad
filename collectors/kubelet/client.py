"""The kubelet's pod-resources API over gRPC on its unix socket.

Imported only once the socket exists, so a node without a kubelet never loads gRPC.
Every collection opens its own channel: a kubelet that restarted (a new socket) is
reached at once, with no reconnection back-off left over from the old one. The answer
is taken as bytes and parsed here, not by gRPC: gRPC would log a traceback for an
answer that does not parse and hand back None, where this is a `parse` failure.
"""

from __future__ import annotations

import os

import grpc
from google.protobuf.message import DecodeError

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.kubelet import api_pb2

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The kubelet's own limit on what it sends through this API."""

REASONS_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: "connection",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too_large",
    grpc.StatusCode.PERMISSION_DENIED: "credentials",
    grpc.StatusCode.UNAUTHENTICATED: "credentials",
}
"""Why a call failed, as a collector failure reason; any other status is `unavailable`."""

_SERVICE = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"]
LIST_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['List'].name}"
"""`/v1.PodResourcesLister/List`, from the generated descriptor."""


class KubeletClient:
    """Asks the kubelet's `v1.PodResourcesLister/List`, within `timeout` seconds."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.address = "unix://" + os.path.abspath(socket_path)
        self.timeout = timeout

    async def list(self) -> api_pb2.ListPodResourcesResponse:
        options = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            call = channel.unary_unary(
                LIST_METHOD,
                request_serializer=api_pb2.ListPodResourcesRequest.SerializeToString,
                response_deserializer=None,
            )
            try:
                answer = await call(api_pb2.ListPodResourcesRequest(), timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                reason = REASONS_BY_CODE.get(code, "unavailable")
                raise CollectorError(reason, f"{code.name}: {error.details()}") from None
        try:
            return api_pb2.ListPodResourcesResponse.FromString(answer)
        except DecodeError as error:
            raise CollectorError(
                "parse", f"not a ListPodResourcesResponse ({len(answer)} bytes): {error}"
            ) from None
