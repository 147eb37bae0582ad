"""What every collector shares: the failure type and the page fetcher.

A collector either returns a reading or raises CollectorError with a short,
bounded `reason` (it becomes a label value) and a message for the log line.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp

REASONS = (
    "connection",
    "timeout",
    "http_status",
    "too_large",
    "not_metrics",
    "no_engine_metrics",
    "parse",
    "unavailable",
    "internal",
)

TEXT_FORMAT_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Ask for the 0.0.4 text format: with OpenMetrics negotiated, recent
prometheus_client versions rewrite `vllm:` sample names to `vllm_`."""


class CollectorError(Exception):
    """A source could not be read; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown collector failure reason {reason!r}")
        super().__init__(message)
        self.reason = reason


class Collector(Protocol):
    """A source of one kind of reading, identified by collector name and target."""

    name: str
    target: str

    async def collect(self) -> object: ...


async def fetch_text(
    session: aiohttp.ClientSession, url: str, timeout: float, max_bytes: int
) -> str:
    """GET a metrics page, bounded in time and size, or raise CollectorError."""
    try:
        return await asyncio.wait_for(_fetch(session, url, max_bytes), timeout)
    except asyncio.TimeoutError:
        raise CollectorError("timeout", f"no complete answer within {timeout:g}s") from None
    except aiohttp.ClientError as error:
        raise CollectorError("connection", f"{type(error).__name__}: {error}") from None
    except OSError as error:
        raise CollectorError("connection", str(error)) from None


async def _fetch(session: aiohttp.ClientSession, url: str, max_bytes: int) -> str:
    async with session.get(url, headers={"Accept": TEXT_FORMAT_ACCEPT}) as response:
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
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise CollectorError("too_large", f"page exceeds the {max_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
