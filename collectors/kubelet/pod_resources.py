"""The pod-resources collector: which pod, namespace and container hold each GPU.

A collector like the others (`llmcost_collector_up{collector="pod_resources"}`, its
target the socket), with one difference: a node without the kubelet's socket is not
a failing one. Until the socket first appears the collector is not collected at all
(one log line says so), and nothing of it is exported; the socket's existence is
checked every cycle (one stat). Once it has appeared, a missing socket is a failure.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Protocol

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.kubelet.devices import pod_devices
from llm_cost_exporter.collectors.readings import PodDevices

log = logging.getLogger(__name__)


class PodResourcesSource(Protocol):
    """Where the kubelet's List answer comes from: gRPC on its socket in the daemon."""

    async def list(self) -> Any:
        """A ListPodResourcesResponse, or CollectorError."""
        ...


class PodResourcesCollector:
    """Reads the kubelet's pod-resources API on `socket_path` within `timeout`."""

    name: ClassVar[str] = "pod_resources"

    def __init__(
        self, socket_path: str, timeout: float, source: PodResourcesSource | None = None
    ) -> None:
        self.target = socket_path
        self.timeout = timeout
        self._source = source
        self._seen = False
        self._told_absent = False

    def wanted(self) -> bool:
        """Whether to collect this cycle: the socket exists, or it did once."""
        if self._seen:
            return True
        if os.path.exists(self.target):
            self._seen = True
            log.info("kubelet pod-resources socket %s found: GPU costs go to pods", self.target)
        elif not self._told_absent:
            self._told_absent = True
            log.info(
                "kubelet pod-resources socket %s is absent: GPU costs are not attributed to "
                "pods (checked again every cycle)",
                self.target,
            )
        return self._seen

    async def collect(self) -> PodDevices:
        if not os.path.exists(self.target):
            raise CollectorError("unavailable", f"the socket {self.target} is gone")
        if self._source is None:
            from llm_cost_exporter.collectors.kubelet.client import KubeletClient

            self._source = KubeletClient(self.target, self.timeout)
        return pod_devices(await self._source.list())
