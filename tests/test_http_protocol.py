"""The daemon's HTTP/1.1 server on the wire: what it reads as a request, what it
refuses, and how long a connection lives, over real sockets to a real server."""

from __future__ import annotations

import asyncio
import base64
import gc
import gzip
import importlib.util
import logging
import re
import socket
from pathlib import Path

import bcrypt
import pytest
import yaml
from conftest import minimal_config_dict
from daemon_http import exchange, serving
from realparts import free_port
from realparts.exporter_process import ExporterProcess
from realparts.timeouts import scaled

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon import http_connection
from llm_cost_exporter.daemon.http_request import (
    MAX_BODY,
    MAX_HEADER_FIELD,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    BadRequest,
    RequestParser,
)
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.prometheus import CONTENT_TYPE, PrometheusPage

GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE = b"\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def node() -> tuple[CollectionLoop, PrometheusPage]:
    """A loop with no engines whose page is published (as at start)."""
    config = config_from_mapping(minimal_config_dict())
    state = NodeState(config, {}, ApiPrices(0.8, 0.08, 4.0))
    page = PrometheusPage()
    loop = CollectionLoop(state, [], None, [page], interval=5.0, timeout=2.0)
    loop.publish()
    return loop, page


@pytest.fixture
async def port(node) -> int:
    async with serving(*node) as server:
        yield server.port


def answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers in `data`, each framed by its Content-Length."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers["Content-Length"])
        found.append((int(status_line.split(" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return found


def status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# -- what is read as a request ------------------------------------------------------------


async def test_requests_are_answered_in_order_with_the_server_header(port, node) -> None:
    _, page = node
    data = await exchange(
        port,
        GET_HEALTHZ
        + b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n"
        + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    (s1, h1, b1), (s2, h2, b2), (s3, h3, b3), (s4, h4, b4) = answers(data)
    assert (s1, h1["Content-Type"], b1) == (200, "text/plain; charset=utf-8", b"starting\n")
    assert (s2, h2["Content-Type"], h2["Content-Encoding"]) == (200, CONTENT_TYPE, "gzip")
    assert h2["Vary"] == "Accept-Encoding" and gzip.decompress(b2) == page.body
    assert (s3, h3["Content-Type"]) == (200, "text/html; charset=utf-8") and b"<html" in b3
    assert (s4, b4, h4["Connection"]) == (404, b"404: Not Found", "close")
    assert all(h["Server"] == "llm-cost-exporter" for h in (h1, h2, h3, h4))
    assert all(re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT", h["Date"])
               for h in (h1, h2, h3, h4))  # fmt: skip


async def test_head_answers_the_get_headers_without_the_body(port, node) -> None:
    _, page = node
    data = await exchange(
        port,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
    )
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(page.body)}\r\n".encode() in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")  # no body came between the two
    assert rest.endswith(b"\r\n\r\nstarting\n")


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        (b"GET /health%7A HTTP/1.1", 200),  # percent-encoded path, decoded
        (b"GET /healthz?probe=1#top HTTP/1.1", 200),
        (b"GET http://example.com/healthz HTTP/1.1", 200),  # absolute-form
        (b"GET  /healthz  HTTP/1.1", 200),
        (b"GET /%2Fhealthz HTTP/1.1", 404),
        (b"GET /healthz/ HTTP/1.1", 404),
        (b"GET /./healthz HTTP/1.1", 404),
        (b"OPTIONS * HTTP/1.1", 404),
        (b"CONNECT example.com:443 HTTP/1.1", 404),
        (b"POST /metrics HTTP/1.1", 405),
        (b"DELETE / HTTP/1.1", 405),
        (b"get /healthz HTTP/1.1", 405),  # methods are case-sensitive
    ],
)
async def test_targets_and_methods(port, request_line, expected) -> None:
    data = await exchange(port, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status(data) == expected, data
    if expected == 405:
        assert b"\r\nAllow: GET,HEAD\r\n" in data


async def test_bodies_are_read_and_dropped_and_the_connection_kept(port) -> None:
    data = await exchange(
        port,
        b"\r\n"  # an empty line before a request is allowed
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nGET /nope HTTP/1"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;ext=1\r\nGET /\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: 1\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert [s for s, _, _ in answers(data)] == [405, 200, 200]


async def test_a_request_trickled_a_byte_at_a_time_is_read(port) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for byte in request:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.001)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(10))
    assert head.startswith(b"HTTP/1.1 200 OK")
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(port) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 b"Content-Length: 4\r\n\r\n")  # fmt: skip
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(10))
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(10))
    assert final.startswith(b"HTTP/1.1 200 OK")
    writer.close()


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        (b"HTTP/1.1\r\nHost: x\r\n", True),
        (b"HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n", False),
        (b"HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n", False),
        (b"HTTP/1.0\r\n", False),
        (b"HTTP/1.0\r\nConnection: Keep-Alive\r\n", True),
    ],
)
async def test_keep_alive_as_the_version_and_connection_header_say(port, headers, kept) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz " + headers + b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(10))
    body = await asyncio.wait_for(reader.readexactly(len(b"starting\n")), scaled(10))
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"starting\n"
    if kept:
        writer.write(GET_HEALTHZ)  # the same connection serves the next request
        again = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(10))
        assert again.startswith(b"HTTP/1.1 200 OK")
        assert (b"Connection: keep-alive" in head) == headers.startswith(b"HTTP/1.0")
    else:
        assert b"\r\nConnection: close\r\n" in head
        assert await asyncio.wait_for(reader.read(), scaled(10)) == b""
    writer.close()


# -- what is refused ------------------------------------------------------------------


def _headers(count: int, size: int = 8) -> bytes:
    value = b"v" * (size - len(b"X-00: "))
    return b"".join(b"X-%02d: %s\r\n" % (i, value) for i in range(count))


CLOSING = b"Host: x\r\nConnection: close\r\n"
"""Two header lines: the host, and the close that ends the exchange."""
LONGEST_TARGET = b"/" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1"))
"""A target making the request line exactly MAX_REQUEST_LINE bytes."""


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        # The limits: at the limit the request is read, one byte over it is refused.
        (b"GET " + LONGEST_TARGET + b" HTTP/1.1\r\n" + CLOSING + b"\r\n", 404),
        (b"GET " + LONGEST_TARGET + b"a HTTP/1.1\r\n" + CLOSING + b"\r\n", 400),
        (b"GET " + LONGEST_TARGET + b"aaaa HTTP/1.1", 400),  # refused before the line ends
        (b"GET / HTTP/1.1\r\n" + CLOSING + _headers(1, MAX_HEADER_FIELD) + b"\r\n", 200),
        (b"GET / HTTP/1.1\r\n" + CLOSING + _headers(1, MAX_HEADER_FIELD + 1) + b"\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + CLOSING + _headers(MAX_HEADERS - 2) + b"\r\n", 200),
        (b"GET / HTTP/1.1\r\n" + CLOSING + _headers(MAX_HEADERS - 1) + b"\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % (MAX_BODY + 1),
            413,
        ),
        # Not requests.
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
        (b"GET /healthz\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /h\xffealthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nabc\r\n0\r\n\r\n",
            400,
        ),
    ],
)
async def test_limits_and_what_is_no_request(tmp_path, node, caplog, sent, expected) -> None:
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}))
    with caplog.at_level(logging.WARNING, logger="llm-cost-exporter"):
        async with serving(*node, LiveWebConfig(web)) as server:
            data = await exchange(server.port, sent)
    assert status(data) == expected, data[:200]
    head = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"Server: llm-cost-exporter" in head
    assert b"X-Frame-Options: deny" in head  # the configured headers, on every answer
    if expected in (400, 413):
        assert b"Connection: close" in head  # and the server closed: exchange returned
        lines = [r.getMessage() for r in caplog.records if "client error" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"client error: {expected} to 127.0.0.1: ")
    assert "Traceback" not in caplog.text


async def test_a_flood_of_bad_requests_is_one_line_per_interval(port, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="llm-cost-exporter"):
        for _ in range(20):
            assert status(await exchange(port, b"GET healthz HTTP/1.1\r\n\r\n")) == 400
    lines = [r for r in caplog.records if "client error" in r.getMessage()]
    assert len(lines) == 1  # the rest are summed up when the interval ends


async def test_clients_gone_before_their_refusal_cost_no_traceback(port, caplog) -> None:
    oversized = b"GET /" + b"a" * (MAX_REQUEST_LINE + 1000) + b" HTTP/1.1\r\nHost: x\r\n\r\n"

    def flood() -> None:
        """As a client process ended in the middle of its requests: each socket closed
        before its answer came, so the answer is met with a reset."""
        socks = []
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(30))
            sock.sendall(oversized)
            socks.append(sock)
        for sock in socks:
            sock.close()

    await asyncio.to_thread(flood)
    await asyncio.sleep(1)  # the rest are accepted and read
    assert status(await exchange(port, GET_HEALTHZ.replace(b"\r\n\r\n", CLOSE))) == 200
    gc.collect()  # a task that ended in an exception reports it when collected
    assert "Traceback" not in caplog.text and "exception" not in caplog.text


# -- how long a connection lives --------------------------------------------------------


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_a_connection_sending_no_whole_request_in_time_is_closed(
    node, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(http_connection, "FIRST_REQUEST_TIMEOUT", 0.5)
    async with serving(*node) as server:
        idle = await asyncio.open_connection("127.0.0.1", server.port)
        slow = await asyncio.open_connection("127.0.0.1", server.port)
        slow[1].write(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        assert await _closed_within(idle[0], scaled(10))
        assert await _closed_within(slow[0], scaled(10))
        for _, writer in (idle, slow):
            writer.close()
    assert "sent no whole request in 0.5s: closed" in caplog.text


async def test_a_kept_connection_is_closed_after_the_idle_timeout(node) -> None:
    async with serving(*node, idle_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(GET_HEALTHZ)
        await asyncio.wait_for(reader.readuntil(b"starting\n"), scaled(10))
        started = asyncio.get_running_loop().time()
        assert not await _closed_within(reader, 0.3)  # kept meanwhile
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a next request, trickled too slowly
        assert await _closed_within(reader, scaled(10))
        assert asyncio.get_running_loop().time() - started >= 0.45
        writer.close()


async def test_basic_auth_rate_limit_and_the_open_health_path(tmp_path, node) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed},
                                   "rate_limit": {"interval": "1h", "burst": 3}}))  # fmt: skip
    good = "Authorization: Basic " + base64.b64encode(b"prometheus:pw").decode()
    async with serving(*node, LiveWebConfig(web)) as server:

        async def ask(path: str, auth: str = "") -> bytes:
            extra = f"{auth}\r\n" if auth else ""
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
            return await exchange(server.port, request.encode())

        refused = await ask("/metrics")
        assert status(refused) == 401
        assert b'\r\nWWW-Authenticate: Basic realm="llm-cost-exporter"\r\n' in refused
        assert status(await ask("/nope")) == 401  # credentials first, then the route
        assert status(await ask("/metrics", good)) == 200
        assert status(await ask("/metrics", good)) == 429  # the burst of 3 is spent
        for _ in range(5):
            assert status(await ask("/healthz")) == 200  # open: no credentials, no limit


# -- the parser alone -------------------------------------------------------------------


def test_requests_split_anywhere_parse_the_same() -> None:
    stream = (
        b"\r\nGET /a%20b?q=1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nX: 1\r\nx: 2\r\n\r\n"
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"HEAD / HTTP/1.0\r\nContent-Length: 2\r\n\r\nxy"
    )
    expected = [("GET", "/a b", True, "1, 2"), ("POST", "/p", True, None),
                ("HEAD", "/", False, None)]  # fmt: skip
    for cut in range(len(stream) + 1):
        parser, got = RequestParser(), []
        for piece in (stream[:cut], stream[cut:]):
            parser.feed(piece)
            while (request := parser.next_request()) is not None:
                got.append((request.method, request.path, request.keep_alive,
                            request.headers.get("x")))  # fmt: skip
        assert got == expected, cut
        assert parser.pending == 0


def test_a_line_over_the_limit_is_refused_as_soon_as_it_is() -> None:
    parser = RequestParser()
    parser.feed(b"GET /" + b"a" * (MAX_REQUEST_LINE - 5))
    assert parser.next_request() is None  # could still end in time
    parser.feed(b"aa")
    with pytest.raises(BadRequest, match="request line over"):
        parser.next_request()


# -- the process ------------------------------------------------------------------------


def test_a_daemon_never_loads_aiohttp(tmp_path: Path) -> None:
    """The daemon's server is its own: aiohttp (about 16 MiB of RSS) is loaded only for
    Kubernetes discovery or --demo."""
    spec = importlib.util.find_spec("aiohttp")
    assert spec is not None and spec.origin is not None
    native = list(Path(spec.origin).parent.glob("_http_parser*.so"))
    assert native, "aiohttp is installed without its native parser: nothing to look for"
    config = minimal_config_dict(engines=[f"http://127.0.0.1:{free_port()}/metrics"])
    with ExporterProcess(config, tmp_path) as exporter:
        assert exporter.get("/metrics")[0] == 200
        maps = Path(f"/proc/{exporter.pid}/maps").read_text()
        assert "_ssl" in maps  # the probe sees the native modules the daemon loads
    assert "/aiohttp/" not in maps and "/multidict/" not in maps and "/yarl/" not in maps
