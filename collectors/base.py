"""The input seam: what every collector is, and how it fails.

An engine collector reads one engine and returns a reading per model and
rank it serves; the GPU collector returns a snapshot of the node's GPUs; the pod
collector (the kubelet, on Kubernetes) says which pods hold them.
Each returns its readings or raises CollectorError with a short, bounded
`reason` (it becomes a label value) and a message for the log line. The
collection loop runs each one isolated, under its own timeout as a backstop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol

from llm_cost_exporter.collectors.readings import EngineReading, GpuSnapshot, PodDevices

REASONS = (
    "connection",
    "timeout",
    "http_status",
    "credentials",
    "too_large",
    "not_metrics",
    "no_engine_metrics",
    "parse",
    "unavailable",
    "internal",
    "model_unknown",
)


class CollectorError(Exception):
    """A source could not be read; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown collector failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class PageSource(Protocol):
    """Where an engine's metrics page comes from: HTTP in the daemon, a file in tests."""

    async def read(self, feed: Callable[[bytes], None]) -> None:
        """Hand the page to `feed` piece by piece as it arrives, or raise CollectorError.

        A large page is never held whole, and the event loop serves scrapes
        between pieces. Whatever `feed` raises (a CollectorError for a malformed
        page) ends the read and reaches the caller unchanged.
        """
        ...

    async def read_json(self, path: str) -> object:
        """A JSON document at `path` beside the page (an engine's `/v1/models`: a page at
        /metrics gives /v1/models, one at /engine/2/metrics /engine/2/v1/models), read
        with the same credentials and bounds, or CollectorError."""
        ...


class StaticPage:
    """A PageSource holding a whole page and the JSON documents beside it: a fixture."""

    def __init__(self, text: str | bytes, documents: Mapping[str, object] | None = None) -> None:
        self.page = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        self.documents = dict(documents or {})

    async def read(self, feed: Callable[[bytes], None]) -> None:
        feed(self.page)

    async def read_json(self, path: str) -> object:
        if path not in self.documents:
            raise CollectorError("http_status", f"HTTP 404 Not Found: {path}")
        return self.documents[path]


class EngineCollector(Protocol):
    """Reads one engine: the `collector` label is `name`, the `target` label its URL."""

    name: ClassVar[str]
    target: str

    def __init__(self, target: str, page: PageSource, model: str | None = None) -> None:
        """`model`, when configured, names the engine's model instead of its page
        (the only name for engines whose page names none)."""
        ...

    async def collect(self) -> list[EngineReading]:
        """A reading per model and rank the engine serves, or CollectorError.

        An EngineReadings (a list) also says which series of the page were
        rejected, by reason (readings.REJECT_REASONS)."""
        ...


class GpuCollector(Protocol):
    """Reads every GPU of the node."""

    name: ClassVar[str]
    target: str

    async def collect(self) -> GpuSnapshot:
        """The node's GPUs now, or CollectorError."""
        ...


class PodCollector(Protocol):
    """Reads which pods hold the node's devices (the kubelet), where the node has pods."""

    name: ClassVar[str]
    target: str

    def wanted(self) -> bool:
        """Whether to collect this cycle: a node without the source is not a failing one."""
        ...

    async def collect(self) -> PodDevices:
        """Who holds which device now, or CollectorError."""
        ...
