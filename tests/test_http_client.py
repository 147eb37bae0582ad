"""The engine-page HTTP client against a loopback server that answers byte for byte.

Each test scripts the raw answers, so framing, keep-alive, encodings and failures
are exactly what a real engine (or a broken one) would put on the wire.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from realparts.certificates import Pki
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.http_client import (
    CHUNK_BYTES,
    MAX_IDLE,
    HttpClient,
    HttpError,
    _Connection,
    _Origin,
    _parse_head,
)
from llm_cost_exporter.collectors.http_page import HttpPage

PAGE = b"".join(b'vllm:prompt_tokens_total{model_name="m%d"} %d\n' % (i, i) for i in range(500))

Answer = Callable[[bytes], "bytes | None | Awaitable[bytes]"]
"""What the server writes for one request (its head), perhaps after a while; None closes
the connection."""


def ok(body: bytes, *headers: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain; version=0.0.4", *headers]
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@dataclass
class Server:
    """A loopback server answering each request with the next scripted answer."""

    answers: list[Answer]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    close_after_answer: bool = False
    """Close every connection after one answer, without saying so (a keep-alive timeout)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1](head)
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Server]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(*answers: Answer, **options: object) -> Server:
        server = Server(list(answers), **options)  # type: ignore[arg-type]
        listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        server.port = listening.sockets[0].getsockname()[1]
        servers.append(listening)
        return server

    yield start  # type: ignore[misc]
    for listening in servers:
        listening.close()


async def read(client: HttpClient, url: str, max_bytes: int = 1 << 20, **kw: object) -> bytes:
    pieces: list[bytes] = []
    await HttpPage(client, url, scaled(10), max_bytes, **kw).read(pieces.append)  # type: ignore[arg-type]
    return b"".join(pieces)


async def test_a_connection_is_kept_from_one_read_to_the_next(serve) -> None:
    server = await serve(lambda head: ok(PAGE))
    async with HttpClient() as client:
        for _ in range(5):
            assert await read(client, server.url()) == PAGE
    assert len(server.requests) == 5 and server.connections == 1
    sent = server.requests[0].decode()
    assert "Accept-Encoding: identity\r\n" in sent and "User-Agent: llm-cost-exporter/" in sent


async def test_a_connection_the_server_closed_while_kept_is_replaced(serve) -> None:
    server = await serve(lambda head: ok(PAGE), close_after_answer=True)
    async with HttpClient() as client:
        for _ in range(3):
            assert await read(client, server.url()) == PAGE
            await asyncio.sleep(0.05)  # the server's close arrives while the connection idles
    assert server.connections == 3


async def test_a_kept_connection_closed_as_the_request_goes_out_is_retried_once(serve) -> None:
    """The server takes the next request and closes without an answer, as one whose
    keep-alive ran out at that moment does: the GET goes again on a new connection."""
    server = await serve(lambda head: ok(PAGE), lambda head: None, lambda head: ok(PAGE))
    async with HttpClient() as client:
        assert await read(client, server.url()) == PAGE
        assert await read(client, server.url()) == PAGE
    assert len(server.requests) == 3 and server.connections == 2


async def test_a_fresh_connection_closed_without_an_answer_is_a_failure(serve) -> None:
    server = await serve(lambda head: None)
    async with HttpClient() as client:
        with pytest.raises(CollectorError) as error:
            await read(client, server.url())
    assert error.value.reason == "connection" and "closed" in str(error.value)
    assert len(server.requests) == 1


async def test_a_read_cut_off_by_its_timeout_never_leaves_its_answer_to_the_next(serve) -> None:
    async def late(head: bytes) -> bytes:
        await asyncio.sleep(scaled(1))
        return ok(b"late 1\n")

    server = await serve(late, lambda head: ok(PAGE))
    async with HttpClient() as client:
        page = HttpPage(client, server.url(), 0.2, 1 << 20)
        with pytest.raises(CollectorError) as error:
            await page.read(lambda chunk: None)
        assert error.value.reason == "timeout"
        assert await read(client, server.url()) == PAGE
        await asyncio.sleep(scaled(1))  # the late answer goes out to a closed connection
        assert await read(client, server.url()) == PAGE
    assert server.connections == 2


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(lambda body: ok(body), id="content-length"),
        pytest.param(
            lambda body: ok(
                b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:]))
                + b"0\r\nTrailer: x\r\n\r\n",
                b"Transfer-Encoding: chunked",
            ),
            id="chunked",
        ),
        pytest.param(
            lambda body: b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body,
            id="until-close",
        ),
        pytest.param(
            lambda body: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(body), id="after-interim-answer"
        ),
    ],
)
async def test_every_framing_gives_the_whole_body(serve, framing) -> None:
    server = await serve(lambda head: framing(PAGE), close_after_answer=True)
    async with HttpClient() as client:
        assert await read(client, server.url()) == PAGE


@pytest.mark.parametrize(
    "encoding, encode",
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda body: zlib.compress(body)[2:-4]),  # raw deflate, no zlib wrapper
    ],
)
async def test_a_compressed_answer_is_inflated(serve, encoding, encode) -> None:
    server = await serve(lambda head: ok(encode(PAGE), b"Content-Encoding: " + encoding))
    async with HttpClient() as client:
        assert await read(client, server.url()) == PAGE


async def test_a_compressed_page_counts_against_the_limit_as_it_inflates(serve) -> None:
    bomb = gzip.compress(bytes(64 << 20), 9)  # 64 MiB of zeros in about 64 kB
    server = await serve(lambda head: ok(bomb, b"Content-Encoding: gzip"))
    pieces: list[int] = []
    async with HttpClient() as client:
        page = HttpPage(client, server.url(), scaled(10), 1 << 20)
        with pytest.raises(CollectorError) as error:
            await page.read(lambda chunk: pieces.append(len(chunk)))
    assert error.value.reason == "too_large"
    assert sum(pieces) <= 1 << 20 and max(pieces) <= 1 << 16


@pytest.mark.parametrize(
    "answer, words",
    [
        (ok(PAGE, b"Content-Encoding: br"), "'br'"),
        (ok(b"not gzip", b"Content-Encoding: gzip"), "corrupt"),
        (ok(gzip.compress(PAGE)[:-20], b"Content-Encoding: gzip"), "ends before"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "chunk"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * (70 * 1024), "longer than"),
        (ok(PAGE)[:-10], "closed in the middle"),
    ],
)
async def test_a_broken_answer_is_a_connection_failure_saying_what_broke(
    serve, answer, words
) -> None:
    server = await serve(lambda head: answer, close_after_answer=True)
    async with HttpClient() as client:
        with pytest.raises(CollectorError) as error:
            await read(client, server.url())
    assert error.value.reason == "connection" and words in str(error.value)


@pytest.mark.parametrize(
    "head, parsed",
    [
        (b"HTTP/1.1 200 OK", (200, "OK", {})),
        (
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0",
            (404, "Not Found", {"content-length": "0"}),
        ),
        # Repeated names are joined; values lose the ASCII blanks at their ends.
        (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nset-cookie: b\r\nX:  \t spaced \x0b",
            (200, "OK", {"set-cookie": "a, b", "x": "spaced"}),
        ),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\nA: 2\r\nA: 3", (200, "OK", {"a": "1, 2, 3"})),
        (b"HTTP/1.1 200 OK\r\nK: v: w\r\nEmpty:", (200, "OK", {"k": "v: w", "empty": ""})),
        # Latin-1, each byte one character; other blanks are kept.
        (
            b"HTTP/1.1 200 \r\nServer: caf\xe9\r\nX-\xc9T\xc9: \xe9t\xe9",
            (200, "", {"server": "caf\xe9", "x-\xe9t\xe9": "\xe9t\xe9"}),
        ),
        (b"HTTP/1.1 200 OK \xa0\r\nA\tB: tab", (200, "OK", {"a\tb": "tab"})),
        (b"HTTP/1.1 200 OK\r\nX\x1c: v", (200, "OK", {"x\x1c": "v"})),
        (b"HTTP/1.1 200 OK\r\nX: \x85v\x85", (200, "OK", {"x": "\x85v\x85"})),
        (b"HTTP/1.1 200 OK\r\nV: a\nb\rc", (200, "OK", {"v": "a\nb\rc"})),
        # What is refused, and how the error shows it.
        (b"HTTP/1.1 200 OK\r\n Leading: x", "malformed header line: b' Leading: x'"),
        (b"HTTP/1.1 200 OK\r\nTrailing : x", "malformed header line: b'Trailing : x'"),
        (b"HTTP/1.1 200 OK\r\n\tTab: x", "malformed header line: b'\\tTab: x'"),
        (b"HTTP/1.1 200 OK\r\nX\x0c: x", "malformed header line: b'X\\x0c: x'"),
        (b"HTTP/1.1 200 OK\r\nA B: x", "malformed header line: b'A B: x'"),
        (b"HTTP/1.1 200 OK\r\n: x", "malformed header line: b': x'"),
        (b"HTTP/1.1 200 OK\r\nNo colon", "malformed header line: b'No colon'"),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n", "malformed header line: b''"),
        (b"HTTP/1.1 200 OK\r\n\xe9: x", (200, "OK", {"\xe9": "x"})),
        (b"HTTP/2 200 OK", "not an HTTP/1.1 answer: b'HTTP/2 200 OK'"),
        (b"HTTP/1.1 2000 OK", "not an HTTP/1.1 answer: b'HTTP/1.1 2000 OK'"),
        (b"HTTP/1.1 \xb200 OK", "not an HTTP/1.1 answer: b'HTTP/1.1 \\xb200 OK'"),
    ],
)
def test_an_answer_head_reads_as_the_table_says(
    head: bytes, parsed: tuple[int, str, dict[str, str]] | str
) -> None:
    if isinstance(parsed, str):
        with pytest.raises(HttpError) as error:
            _parse_head(head)
        assert str(error.value) == parsed
    else:
        assert _parse_head(head) == parsed


class FakeTransport(asyncio.Transport):
    """A stand-in for the socket under one connection, saying whether it is closed, so
    the test hands the bytes in at chosen moments."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def connected(inbox: bytearray | None = None) -> tuple[_Connection, FakeTransport]:
    inbox = bytearray(CHUNK_BYTES) if inbox is None else inbox
    connection = _Connection(_Origin("http", "engine", 80), inbox)
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


def _receive(connection: _Connection, data: bytes) -> None:
    """What the transport does with bytes off the socket: into the protocol's buffer,
    then buffer_updated."""
    buffer = connection.get_buffer(len(data))
    buffer[: len(data)] = data
    connection.buffer_updated(len(data))


async def test_connections_sharing_one_buffer_read_interleaved_answers_whole() -> None:
    """A client's connections share one receive buffer: each read is taken out of it
    before the next connection's read lands in it."""
    inbox = bytearray(CHUNK_BYTES)
    bodies = [bytes([65 + i]) * (3 * CHUNK_BYTES // 2) for i in range(3)]
    answers, got = [], []
    for _ in bodies:
        connection, _ = connected(inbox)
        received: list[bytes] = []
        got.append(received)
        answers.append(
            (connection, connection.ask(b"GET / HTTP/1.1\r\n\r\n", lambda r: None, received.append))
        )
    streams = [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body for body in bodies
    ]
    step = CHUNK_BYTES // 3
    for at in range(0, max(map(len, streams)), step):
        for (connection, _), stream in zip(answers, streams, strict=True):
            if stream[at : at + step]:
                _receive(connection, stream[at : at + step])
    for (_, answer), received, body in zip(answers, got, bodies, strict=True):
        assert answer.complete and answer.error is None
        assert b"".join(received) == body


async def test_the_head_is_judged_before_the_body_which_reaches_the_sink_in_order() -> None:
    body = bytes(range(256)) * 2048  # 8 reads of CHUNK_BYTES
    pieces = [body[at : at + CHUNK_BYTES] for at in range(0, len(body), CHUNK_BYTES)]
    connection, transport = connected()
    got: list[bytes] = []
    judged: list[int] = []
    answer = connection.ask(
        b"GET / HTTP/1.1\r\n\r\n", lambda response: judged.append(len(got)), got.append
    )
    answer.received(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert judged == [0] and not answer.ended.done()
    for piece in pieces:
        answer.received(piece)
        assert b"".join(got) == body[: sum(map(len, got))]  # handed on as it arrives
    assert answer.ended.done() and answer.error is None and answer.complete
    assert b"".join(got) == body and max(map(len, got)) <= CHUNK_BYTES
    assert connection.usable and not transport.closed


async def test_a_head_the_check_refuses_ends_the_answer_before_any_body() -> None:
    connection, transport = connected()
    got: list[bytes] = []
    refusal = CollectorError("http_status", "HTTP 404 Not Found")

    def refuse(response: object) -> None:
        raise refusal

    answer = connection.ask(b"GET / HTTP/1.1\r\n\r\n", refuse, got.append)
    answer.received(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
    assert answer.ended.done() and answer.error is refusal
    assert got == [] and transport.closed and not connection.usable


async def test_a_caller_waiting_on_a_connection_closed_under_it_wakes_at_once() -> None:
    connection, transport = connected()
    answer = connection.ask(b"GET / HTTP/1.1\r\n\r\n", lambda response: None, list().append)
    waiting = asyncio.ensure_future(answer.ended)
    await asyncio.sleep(0)
    connection.close()
    await asyncio.wait_for(waiting, scaled(5))
    assert isinstance(answer.error, HttpError)
    assert "closed before the answer ended" in str(answer.error)
    assert transport.closed and not connection.usable


async def test_redirects_are_followed_and_credentials_stay_on_their_origin(serve) -> None:
    other = await serve(lambda head: ok(PAGE))
    server = await serve(
        lambda head: b"HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n",
        lambda head: (
            b"HTTP/1.1 301 Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
            % other.url("/elsewhere").encode()
        ),
    )

    class Token:
        def authorization(self) -> str:
            return "Bearer secret"

    async with HttpClient() as client:
        assert await read(client, server.url(), credentials=Token()) == PAGE
    assert [r.split(b" ")[1] for r in server.requests] == [b"/metrics", b"/moved"]
    assert all(b"Authorization: Bearer secret" in r for r in server.requests)
    assert other.requests[0].startswith(b"GET /elsewhere ")
    assert b"Authorization" not in other.requests[0]


async def test_a_redirect_loop_is_a_failure(serve) -> None:
    server = await serve(
        lambda head: b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"
    )
    async with HttpClient() as client:
        with pytest.raises(CollectorError) as error:
            await read(client, server.url())
    assert error.value.reason == "connection" and "redirects" in str(error.value)
    assert server.connections == 1  # every hop over the one kept connection


async def test_connection_close_is_honoured(serve) -> None:
    server = await serve(lambda head: ok(PAGE, b"Connection: Close"))
    async with HttpClient() as client:
        for _ in range(3):
            assert await read(client, server.url()) == PAGE
    assert server.connections == 3


async def test_the_connections_kept_are_bounded(serve) -> None:
    servers = [await serve(lambda head: ok(b"x 1\n")) for _ in range(MAX_IDLE + 8)]
    async with HttpClient() as client:
        for server in servers:
            await read(client, server.url())
        kept = sum(map(len, client._idle.values()))
    assert kept == MAX_IDLE


async def test_a_host_name_is_looked_up_once_for_many_connections(serve, monkeypatch) -> None:
    server = await serve(lambda head: ok(PAGE), close_after_answer=True)
    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counted(host, *args, **kw):
        lookups.append(host)
        return await real(host, *args, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", counted)
    async with HttpClient() as client:
        for _ in range(3):
            assert await read(client, f"http://localhost:{server.port}/metrics") == PAGE
            await asyncio.sleep(0.05)
    assert server.connections == 3 and lookups == ["localhost"]
    assert b"Host: localhost:%d\r\n" % server.port in server.requests[0]


async def test_an_engine_over_tls_is_verified_and_read_over_a_kept_connection(
    tmp_path, serve
) -> None:
    pki = Pki(tmp_path)
    ca = pki.ca("engines-ca")
    leaf = pki.issue(ca, "engine", "DNS:localhost")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(leaf.cert, leaf.key)
    server = Server([lambda head: ok(PAGE)])
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=served)
    port = listening.sockets[0].getsockname()[1]
    try:
        async with HttpClient() as untrusting:
            with pytest.raises(CollectorError) as error:
                await read(untrusting, f"https://localhost:{port}/metrics")
        assert error.value.reason == "connection" and "CERTIFICATE_VERIFY_FAILED" in str(
            error.value
        )
        trusting = ssl.create_default_context(cafile=str(ca.cert))
        async with HttpClient(trusting) as client:
            for _ in range(3):
                assert await read(client, f"https://localhost:{port}/metrics") == PAGE
        assert server.connections == 1  # three reads over one connection
    finally:
        listening.close()
