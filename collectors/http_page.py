"""An engine's metrics page over HTTP, bounded in time and size, streamed as it arrives.

The GETs go through the node's one HttpClient, whose connections stay open from
one cycle to the next.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import urljoin

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import Credentials
from llm_cost_exporter.collectors.deadline import within
from llm_cost_exporter.collectors.http_client import HttpClient, HttpError, Response

TEXT_FORMAT_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Ask for the 0.0.4 text format: with OpenMetrics negotiated, recent
prometheus_client versions rewrite `vllm:` sample names to `vllm_`."""

_READ_FAILURES = (asyncio.TimeoutError, HttpError, OSError)
"""How a read fails short of an answer: past its timeout, or on the connection
(`HttpPage._failure` says which)."""


class HttpPage:
    """A PageSource that GETs `url` through the node's HttpClient.

    The page is parsed as it arrives, CHUNK_BYTES at most at a time, in the callback
    that received it: that bounds how long a large page holds the event loop (0.15 ms
    of skipped lines, a few ms if every line is wanted) and how much of it is in
    memory."""

    def __init__(
        self,
        client: HttpClient,
        url: str,
        timeout: float,
        max_bytes: int,
        credentials: Credentials | None = None,
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._credentials = credentials

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": TEXT_FORMAT_ACCEPT}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.authorization()
        return headers

    async def read(self, feed: Callable[[bytes], None]) -> None:
        sink = _limited(feed, self._max_bytes, "page")
        try:
            await within(
                self._client.get(self.url, self._headers(), self._check_page, sink), self._timeout
            )
        except _READ_FAILURES as error:
            raise self._failure(error) from None

    async def read_json(self, path: str) -> object:
        """`path` is resolved beside the page: `/v1/models` of `http://h/metrics` is
        `http://h/v1/models`, and of `http://h/llama/metrics` (behind a proxy that
        serves the engine under a prefix) `http://h/llama/v1/models`."""
        url = urljoin(self.url, path.lstrip("/"))
        headers = {**self._headers(), "Accept": "application/json"}
        body = bytearray()
        sink = _limited(body.extend, self._max_bytes, url)
        try:
            await within(self._client.get(url, headers, self._check_status, sink), self._timeout)
        except _READ_FAILURES as error:
            raise self._failure(error) from None
        try:
            return json.loads(body)
        except ValueError:
            raise CollectorError("parse", f"{url} did not answer JSON") from None

    def _failure(self, error: Exception) -> CollectorError:
        """A read's failure (one of _READ_FAILURES) as a CollectorError."""
        if isinstance(error, asyncio.TimeoutError):
            return CollectorError("timeout", f"no complete answer within {self._timeout:g}s")
        return CollectorError("connection", str(error))

    def _check_status(self, response: Response) -> None:
        if response.status in (401, 403):
            refused = "refused the credentials" if self._credentials else "asks for credentials"
            raise CollectorError("credentials", f"HTTP {response.status}: the page {refused}")
        if response.status != 200:
            raise CollectorError("http_status", f"HTTP {response.status} {response.reason}")

    def _check_page(self, response: Response) -> None:
        """A metrics page's head: a 200, not HTML or JSON, and not announced too large."""
        self._check_status(response)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith(("text/html", "application/json")):
            raise CollectorError(
                "not_metrics", f"served {content_type.split(';')[0]}, not Prometheus metrics"
            )
        max_bytes = self._max_bytes
        if response.content_length is not None and response.content_length > max_bytes:
            raise CollectorError(
                "too_large", f"page is {response.content_length} bytes, limit {max_bytes}"
            )


def _limited(sink: Callable[[bytes], None], max_bytes: int, what: str) -> Callable[[bytes], None]:
    """`sink`, refusing (too_large) the piece that takes the body past `max_bytes`."""
    size = 0

    def take(piece: bytes) -> None:
        nonlocal size
        size += len(piece)
        if size > max_bytes:
            raise CollectorError("too_large", f"{what} exceeds the {max_bytes}-byte limit")
        sink(piece)

    return take
