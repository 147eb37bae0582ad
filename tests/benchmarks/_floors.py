"""The least a Python exporter pays to read engine pages: fetch floors and a floor exporter.

The cycle benchmark times each floor as a stage beside the daemon's own. The daemon
benchmark runs the floor exporter as a process of its own beside the daemons, so
that the floor per added engine is measured in the same conditions as theirs: the
same engines answering on the same cores, the same cold caches every 5 s.

Run as a script, this module is that floor exporter: every interval it GETs every
page over a connection kept open (`BareGet`), finds each page's wanted vLLM lines
with the reader's own pattern scan and keeps nothing. No HTTP checks, no parsing of
the lines found, no accounting, no rendering and no server: what any exporter in
Python must spend per engine before it does anything with a page.

With `--layer`, it reads the pages with more of the daemon's own parts instead,
each layer adding to the one before, so that the daemon's cost per engine can be
split by layer in the same conditions:

- `scan` (the floor): as above;
- `page`: the daemon's `HttpPage` over its `HttpClient` (its timeout, HTTP
  decoding and checks), the scan as the page's feed;
- `collector`: the daemon's `VllmCollector`: that read, the page parsed
  following its last one, and the readings made. Only accounting, NVML,
  rendering and serving `/metrics` are left to the daemon.

    python tests/benchmarks/_floors.py [--layer scan|page|collector] --interval 5 URL [URL ...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import selectors
import socket
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit


def answer_length(first: bytes) -> int:
    """The bytes of a whole answer, head and body, from its first bytes (the floors read
    the simulator, which frames its pages by Content-Length)."""
    start = first.find(b"Content-Length: ") + 16
    return int(first[start : first.find(b"\r", start)]) + first.find(b"\r\n\r\n") + 4


def get_requests(urls: list[str]) -> list[tuple[str, int, bytes]]:
    """Each page's host, port and GET request, as the floors send them."""
    targets = []
    for url in map(urlsplit, urls):
        request = f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
        targets.append((url.hostname or "", url.port or 80, request))
    return targets


def vllm_scan() -> re.Pattern[bytes]:
    """The one pattern scan the vLLM reader runs over a page to find its wanted lines."""
    from llm_cost_exporter.collectors.promtext import _plan
    from llm_cost_exporter.collectors.vllm import VllmPageReader

    return _plan(tuple(VllmPageReader._BY_NAME)).lines


def _ignore(piece: bytes) -> None:
    pass


class BareGet(asyncio.BufferedProtocol):
    """The fetch floor: a GET on a kept connection, its answer received into one reused
    buffer, copied out as any reader must, handed to `take` and counted up to its
    Content-Length."""

    def __init__(self, take: Callable[[bytes], object] = _ignore) -> None:
        self._view = memoryview(bytearray(1 << 16))
        self._take = take
        self._transport: asyncio.Transport | None = None
        self._got, self._want = 0, -1
        self._done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._view[:nbytes])
        if self._want < 0:
            self._want = answer_length(data)
        self._take(data)
        self._got += nbytes
        if self._got >= self._want and self._done is not None:
            self._done.set_result(None)

    async def get(self, request: bytes) -> None:
        assert self._transport is not None
        self._got, self._want = 0, -1
        self._done = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        await self._done


class SelectorFetch:
    """The thread fetch floor: every page's GET sent at once on kept non-blocking sockets,
    the answers received by one `selectors` loop into reused buffers, copied out and
    counted up to their Content-Length."""

    def __init__(self, targets: list[tuple[str, int, bytes]]) -> None:
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._requests = [request for _, _, request in targets]
        self._views = [memoryview(bytearray(1 << 16)) for _ in targets]
        for index, (host, port, _) in enumerate(targets):
            sock = socket.create_connection((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, index)
            self._sockets.append(sock)

    def fetch_all(self) -> None:
        want = [-1] * len(self._sockets)
        got = [0] * len(self._sockets)
        left = len(self._sockets)
        for sock, request in zip(self._sockets, self._requests, strict=True):
            sock.send(request)
        while left:
            for key, _ in self._selector.select():
                index = key.data
                nbytes = self._sockets[index].recv_into(self._views[index])
                data = bytes(self._views[index][:nbytes])
                if want[index] < 0:
                    want[index] = answer_length(data)
                got[index] += nbytes
                if got[index] >= want[index]:
                    left -= 1


LAYERS = ("scan", "page", "collector")


async def _reads(
    layer: str, urls: list[str], interval: float
) -> list[Callable[[], Awaitable[object]]]:
    """One read per page, made of `layer`'s parts; their timeout and page limit are the
    daemon's defaults at `interval`."""
    findall = vllm_scan().findall
    if layer == "scan":
        loop = asyncio.get_running_loop()
        reads: list[Callable[[], Awaitable[object]]] = []
        for host, port, request in get_requests(urls):
            _, protocol = await loop.create_connection(lambda: BareGet(findall), host, port)
            reads.append(functools.partial(protocol.get, request))
        return reads
    from _procs import exporter_config  # puts tests/ on the path for realparts
    from realparts.ports import free_port

    from llm_cost_exporter.collectors.http_client import HttpClient
    from llm_cost_exporter.collectors.http_page import HttpPage
    from llm_cost_exporter.collectors.vllm import VllmCollector
    from llm_cost_exporter.config import config_from_mapping

    # The listen address is only for the configuration to be whole: nothing binds it.
    config = config_from_mapping(exporter_config(free_port(), urls, f"{interval:g}s"))
    client = HttpClient()
    pages = [HttpPage(client, url, config.timeout, config.max_page_bytes) for url in urls]
    if layer == "page":
        return [functools.partial(page.read, findall) for page in pages]
    return [VllmCollector(page.url, page).collect for page in pages]


async def floor_exporter(urls: list[str], interval: float, layer: str = "scan") -> None:
    """Every `interval`, every page read at once by `layer`'s parts; forever."""
    loop = asyncio.get_running_loop()
    reads = await _reads(layer, urls, interval)
    await asyncio.gather(*(read() for read in reads))  # connected, and read once whole
    print("ready", flush=True)
    next_at = loop.time()
    while True:
        await asyncio.gather(*(read() for read in reads))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the floor exporter (module docstring)")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--layer", choices=LAYERS, default="scan")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    asyncio.run(floor_exporter(args.urls, args.interval, args.layer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
