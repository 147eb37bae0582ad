"""The kubelet's pod-resources API over gRPC on its unix socket.

Imported only once the socket exists, so a node without a kubelet never loads gRPC.
Every collection opens its own channel: a kubelet that restarted (a new socket) is
reached at once, with no reconnection back-off left over from the old one.
"""

from __future__ import annotations

import os

import grpc

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.kubelet import api_pb2, api_pb2_grpc

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The kubelet's own limit on what it sends through this API."""

REASONS_BY_CODE = {
    grpc.StatusCode.UNAVAILABLE: "connection",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too_large",
    grpc.StatusCode.INTERNAL: "parse",
    grpc.StatusCode.PERMISSION_DENIED: "credentials",
    grpc.StatusCode.UNAUTHENTICATED: "credentials",
}
"""Why a call failed, as a collector failure reason; any other status is `unavailable`.
INTERNAL is what gRPC reports for an answer that is not a ListPodResourcesResponse."""


class KubeletClient:
    """Asks the kubelet's `v1.PodResourcesLister/List`, within `timeout` seconds."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.address = "unix://" + os.path.abspath(socket_path)
        self.timeout = timeout

    async def list(self) -> api_pb2.ListPodResourcesResponse:
        options = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            stub = api_pb2_grpc.PodResourcesListerStub(channel)
            try:
                return await stub.List(api_pb2.ListPodResourcesRequest(), timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                reason = REASONS_BY_CODE.get(code, "unavailable")
                raise CollectorError(reason, f"{code.name}: {error.details()}") from None
