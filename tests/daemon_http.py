"""The daemon's HTTP server started in this process on a free port, and ways to ask it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from realparts.timeouts import scaled

from llm_cost_exporter.collectors.http_client import HttpClient, Response
from llm_cost_exporter.daemon.http_server import HttpServer
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.prometheus import PrometheusPage


@contextlib.asynccontextmanager
async def serving(
    loop: CollectionLoop | None,
    page: PrometheusPage | None,
    live: LiveWebConfig | None = None,
    idle_timeout: float = 45.0,
) -> AsyncIterator[HttpServer]:
    """The server listening on 127.0.0.1 (port `server.port`) until the block ends."""
    server = HttpServer(loop, page, live or LiveWebConfig(None))  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0, idle_timeout)
    try:
        yield server
    finally:
        await server.stop()


async def get(
    client: HttpClient, url: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body (decoded) of GET `url`."""
    answers: list[Response] = []
    body = bytearray()
    await client.get(url, headers or {}, answers.append, body.extend)
    return answers[0].status, answers[0].headers, bytes(body)


async def exchange(port: int, request: bytes, wait: float = 10.0) -> bytes:
    """Send `request` on a new connection; everything answered until the server closes
    it (or `wait` seconds pass without a byte)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        chunks = []
        with contextlib.suppress(asyncio.TimeoutError, ConnectionResetError):
            while chunk := await asyncio.wait_for(reader.read(65536), scaled(wait)):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
