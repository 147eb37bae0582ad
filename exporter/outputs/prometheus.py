"""The Prometheus output: each cycle's families as a pre-rendered `/metrics` page.

Rendering happens in the collection loop, not on scrape: `/metrics` hands out
the bytes of the last cycle, so any number of scrapers costs no I/O and almost
no CPU, and every scraper of one cycle sees the same numbers. The page keeps its
headers and line prefixes from one cycle to the next (`exposition.TextPage`), so a
cycle formats the values only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import Metric

from llm_cost_exporter.outputs.exposition import TextPage

# The 0.0.4 text format: all our names are classic ones, so it is exact and
# every Prometheus release reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusPage:
    """An Output holding the page `/metrics` serves."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self._text = TextPage()

    def publish(self, families: Sequence[Metric]) -> None:
        self.body = self._text.render(families)

    def own_families(self) -> Iterable[Metric]:
        return ()

    def close(self) -> None:
        """Nothing is pending: the page is rendered at publish."""
