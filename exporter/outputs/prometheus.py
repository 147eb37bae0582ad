"""The Prometheus output: each cycle's families as a pre-rendered `/metrics` page.

Rendering happens in the collection loop, not on scrape: `/metrics` hands out
the bytes of the last cycle, so any number of scrapers costs no I/O and almost
no CPU, and every scraper of one cycle sees the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

# The 0.0.4 text format: all our names are classic ones, so it is exact and
# every Prometheus release reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Published:
    """The registry's view of the last families handed to the page."""

    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class PrometheusPage:
    """An Output holding the page `/metrics` serves."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self._published = _Published()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._published)

    def publish(self, families: Sequence[Metric]) -> None:
        self._published.families = families
        self.body = generate_latest(self._registry)

    def own_families(self) -> Iterable[Metric]:
        return ()

    def close(self) -> None:
        """Nothing is pending: the page is rendered at publish."""
