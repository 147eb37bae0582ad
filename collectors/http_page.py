"""An engine's metrics page over HTTP, bounded in time and size, streamed as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.credentials import Credentials

TEXT_FORMAT_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Ask for the 0.0.4 text format: with OpenMetrics negotiated, recent
prometheus_client versions rewrite `vllm:` sample names to `vllm_`."""

CHUNK_BYTES = 1 << 16
"""The most of the page parsed at once: it bounds how long a large page holds
the event loop (0.15 ms of skipped lines, a few ms if every line is wanted) and
how much of it is in memory."""


class HttpPage:
    """A PageSource that GETs `url` through a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout: float,
        max_bytes: int,
        credentials: Credentials | None = None,
    ) -> None:
        self.url = url
        self._session = session
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._credentials = credentials

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": TEXT_FORMAT_ACCEPT}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.authorization()
        return headers

    async def read(self, feed: Callable[[bytes], None]) -> None:
        try:
            await asyncio.wait_for(self._read(feed), self._timeout)
        except asyncio.TimeoutError:
            raise CollectorError(
                "timeout", f"no complete answer within {self._timeout:g}s"
            ) from None
        except aiohttp.ClientError as error:
            raise CollectorError("connection", f"{type(error).__name__}: {error}") from None
        except OSError as error:
            raise CollectorError("connection", str(error)) from None

    async def _read(self, feed: Callable[[bytes], None]) -> None:
        max_bytes = self._max_bytes
        async with self._session.get(self.url, headers=self._headers()) as response:
            if response.status in (401, 403):
                refused = "refused the credentials" if self._credentials else "asks for credentials"
                raise CollectorError("credentials", f"HTTP {response.status}: the page {refused}")
            if response.status != 200:
                raise CollectorError("http_status", f"HTTP {response.status} {response.reason}")
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith(("text/html", "application/json")):
                raise CollectorError(
                    "not_metrics", f"served {content_type.split(';')[0]}, not Prometheus metrics"
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise CollectorError(
                    "too_large", f"page is {response.content_length} bytes, limit {max_bytes}"
                )
            size = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise CollectorError("too_large", f"page exceeds the {max_bytes}-byte limit")
                feed(chunk)
                # A chunk already buffered is handed over without a pause: let scrapes in.
                await asyncio.sleep(0)
