"""A lean HTTP/1.1 client for engine pages: GETs over kept-alive connections.

Every cycle the exporter GETs the same few URLs, each a page of tens of kB. A
general client spends more CPU on its own machinery (request objects, URL
parsing, cookie jars, tracing hooks, stream readers) than the kernel spends
moving the bytes, on every request. This one does only what an engine page
needs: one GET, its answer's head, and its body handed on as it arrives
(Content-Length, chunked, or up to the close; gzip and deflate decoded when the
engine sends them), over a connection kept for the next cycle.

It asks for no compression: the page crosses the node or the cluster network,
where a few kB a second cost nothing, while gzip costs the engine a compression
and the exporter an inflate on every read. A compressed answer is still read,
and inflated a bounded piece at a time so the caller's size limit holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from llm_cost_exporter import __version__

CHUNK_BYTES = 1 << 16
"""The largest piece of body handed on at once."""
MAX_HEAD_BYTES = 64 * 1024
"""An answer's status line and headers together; a longer head is malformed."""
MAX_REDIRECTS = 10
RESOLVE_SECONDS = 30.0
"""How long a host name's addresses are used before it is looked up again."""
IDLE_SECONDS = 60.0
"""A connection unused this long is closed rather than reused."""
MAX_IDLE = 64
"""Connections kept open between cycles, over all engines (the engine limit)."""
_RECEIVE_BYTES = 2 * CHUNK_BYTES
"""The most read from the socket at once."""
_HIGH_WATER = 4 * CHUNK_BYTES
"""Received and not yet handed on: above this the socket is not read."""
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_NO_BODY = frozenset((204, 304))
_USER_AGENT = f"llm-cost-exporter/{__version__}"


class HttpError(Exception):
    """The server's answer is not HTTP as the exporter reads it, or the connection ended
    before the answer did."""


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


@functools.lru_cache(maxsize=256)
def _origin_and_target(url: str) -> tuple[_Origin, str, str]:
    """The origin, the request target (path and query) and the Host header of `url`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    return _Origin(scheme, host, port), target, shown if port == default else f"{shown}:{port}"


class _Connection(asyncio.BufferedProtocol):
    """One TCP (or TLS) connection: what it received, waiting to be read.

    The socket is read into one buffer kept for the connection's life, rather than
    into a new 256 kB one per read."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self._pieces: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self._inbox = memoryview(bytearray(_RECEIVE_BYTES))

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._inbox

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._inbox[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._pieces.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    # reading

    @property
    def usable(self) -> bool:
        """Open, with nothing unread: a connection the server has not closed."""
        return not self._closed and not self._pieces and self.transport is not None

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.transport.write(request)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _received(self) -> bool:
        """Wait until there is something to read; False once the connection ended."""
        while not self._pieces:
            if self._closed:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return True

    def _take(self, limit: int) -> bytes:
        piece = self._pieces.popleft()
        if len(piece) > limit:
            self._pieces.appendleft(piece[limit:])
            piece = piece[:limit]
        self._size -= len(piece)
        if self._paused and self._size <= CHUNK_BYTES and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    def _unread(self, piece: bytes) -> None:
        if piece:
            self._pieces.appendleft(piece)
            self._size += len(piece)

    async def some(self, limit: int = CHUNK_BYTES) -> bytes:
        """Up to `limit` bytes as they come; b"" once the connection ended."""
        if not await self._received():
            return b""
        return self._take(limit)

    async def line(self, limit: int, ending: bytes = b"\r\n") -> bytes:
        """Bytes up to `ending` (taken, not returned), at most `limit` of them."""
        held = b""
        while True:
            piece = await self.some(limit + len(ending))
            if not piece:
                raise HttpError("the connection closed in the middle of the answer")
            held = held + piece if held else piece
            end = held.find(ending)
            if end != -1:
                self._unread(held[end + len(ending) :])
                return held[:end]
            if len(held) > limit:
                raise HttpError(f"a line of the answer is longer than {limit} bytes")


class Response:
    """An answer's head, and its body read a piece at a time with `read()`.

    The body is read by plain coroutines rather than async generators: asyncio tracks
    every async generator in a weak set and finalizes it, a cost paid several times
    per read, on every engine, every cycle."""

    def __init__(
        self, connection: _Connection, status: int, reason: str, headers: dict[str, str]
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        """Lower-case names; a repeated header's values joined with `, `."""
        self._connection = connection
        self.content_length = _content_length(headers) if status not in _NO_BODY else 0
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left = self.content_length
        """Bytes of the body (or, chunked, of the current chunk) not read yet."""
        self._chunk_ends = False
        """Chunked: the CRLF after a chunk's data is still to be read."""
        self._inflate: _Inflater | None = None
        self._inflated: Iterator[bytes] | None = None
        self._started = False
        self.complete = False
        """The body was read to its end: the connection may serve another request."""

    async def read(self) -> bytes:
        """The next piece of the body as it arrives, decoded, at most CHUNK_BYTES; b""
        once the body has ended."""
        if not self._started:  # an unasked-for coding fails the body, not the head
            self._inflate = _inflater(self.headers.get("content-encoding", ""))
            self._started = True
        while not self.complete:
            if self._inflated is not None:
                plain = next(self._inflated, None)
                if plain is not None:
                    return plain
                self._inflated = None
            piece = await self._raw()
            if not piece:
                if self._inflate is not None:
                    self._inflate.check_end()
                self.complete = True
                return b""
            if self._inflate is None:
                return piece
            self._inflated = self._inflate.pieces(piece)
        return b""

    async def _raw(self) -> bytes:
        """The next piece of the body as sent; b"" at its end."""
        connection = self._connection
        if self._chunked:
            if not self._left and not await self._next_chunk():
                return b""
        elif self._left is None:
            return await connection.some()
        elif not self._left:
            return b""
        piece = await connection.some(min(self._left, CHUNK_BYTES))
        if not piece:
            raise HttpError("the connection closed in the middle of the answer")
        self._left -= len(piece)
        return piece

    async def _next_chunk(self) -> bool:
        """Reads up to the next chunk's data; False after the last chunk (its trailer is
        read and dropped)."""
        connection = self._connection
        if self._chunk_ends and await connection.line(2) != b"":
            raise HttpError("a chunk is longer than its size says")
        size_line = await connection.line(1024)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            size = -1
        if size < 0 or not size_text.isalnum():
            raise HttpError(f"bad chunk size {size_line[:40]!r}")
        if size == 0:
            while await connection.line(MAX_HEAD_BYTES):
                pass  # trailer fields, up to the empty line
            return False
        self._left = size
        self._chunk_ends = True
        return True

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry the next request once the body is read."""
        framed = self._chunked or self.content_length is not None
        return (
            self.complete and framed and "close" not in self.headers.get("connection", "").lower()
        )


def _content_length(headers: Mapping[str, str]) -> int | None:
    if "transfer-encoding" in headers:
        return None  # the transfer coding frames the body, whatever the length says
    value = headers.get("content-length")
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (length := values.pop()).isdigit() or not length.isascii():
        raise HttpError(f"bad Content-Length {value[:40]!r}")
    return int(length)


class _Inflater:
    """A gzip or deflate body inflated a bounded piece at a time."""

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits
        self._inflater: zlib._Decompress | None = (
            zlib.decompressobj(wbits) if wbits is not None else None
        )

    def pieces(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            # deflate, named for zlib's format but sent raw by some servers: the first
            # two bytes tell which.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        inflater = self._inflater
        try:
            while data:
                plain = inflater.decompress(data, CHUNK_BYTES)
                data = inflater.unconsumed_tail
                if plain:
                    yield plain
                if inflater.eof:
                    return
        except zlib.error as error:
            raise HttpError(f"the page's compression is corrupt: {error}") from None

    def check_end(self) -> None:
        if self._inflater is not None and not self._inflater.eof:
            raise HttpError("the compressed page ends before its compressed stream does")


def _inflater(encoding: str) -> _Inflater | None:
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return _Inflater(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Inflater(None)
    raise HttpError(f"the page is encoded as {encoding[:40]!r}, which was not asked for")


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status, reason and headers of an answer's head (its lines without the empty one)."""
    status_line, *lines = head.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise HttpError(f"not an HTTP/1.1 answer: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise HttpError(f"malformed header line: {line[:60]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(code), reason.decode("latin-1").strip(), headers


class HttpClient:
    """GETs over connections kept open between requests, one per request in flight.

    Use as an async context manager: leaving it closes the connections kept. A request
    cancelled or failed half-way closes its connection, so a late answer can never be
    read as the next request's.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._ssl = ssl_context
        self._resolved: dict[str, tuple[float, list[str]]] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def get(self, url: str, headers: Mapping[str, str]) -> _Get:
        """The answer to GET `url` with `headers` (redirects followed; credentials kept
        only while the origin stays the same), as an async context manager; its body must
        be read inside the block for the connection to be kept."""
        return _Get(self, url, headers)

    async def _request(self, url: str, headers: Mapping[str, str]) -> tuple[_Connection, Response]:
        origin, target, host = _origin_and_target(url)
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {_USER_AGENT}\r\n"
            "Accept-Encoding: identity\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode("latin-1")
        connection = self._kept(origin)
        if connection is not None:
            try:
                return connection, await self._exchange(connection, request)
            except HttpError:
                # The server closed the kept connection as the request went out (its
                # keep-alive ran out): a GET is safe to send again, once, on a new one.
                connection.close()
            except BaseException:
                connection.close()
                raise
        connection = await self._connect(origin)
        try:
            return connection, await self._exchange(connection, request)
        except BaseException:
            connection.close()
            raise

    async def _exchange(self, connection: _Connection, request: bytes) -> Response:
        connection.send(request)
        while True:
            head = await connection.line(MAX_HEAD_BYTES, b"\r\n\r\n")
            status, reason, headers = _parse_head(head)
            if status >= 200:
                return Response(connection, status, reason, headers)
            if status == 101:
                raise HttpError("the server switched protocols")
            # 1xx: an interim answer; the final one follows.

    async def _connect(self, origin: _Origin) -> _Connection:
        """A new connection to the first of `origin`'s addresses that answers."""
        context = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        addresses = await self._addresses(origin)
        for index, address in enumerate(addresses):
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    address,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context else None,
                )
            except OSError:
                if index == len(addresses) - 1:
                    self._resolved.pop(origin.host, None)
                    raise
                continue
            transport = connection.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection
        raise OSError(f"{origin.host} resolves to no address")

    async def _addresses(self, origin: _Origin) -> list[str]:
        """The host's addresses, looked up at most once a RESOLVE_SECONDS: a name such as
        `localhost` would otherwise cost a lookup in a thread on every new connection."""
        try:
            ipaddress.ip_address(origin.host)
            return [origin.host]
        except ValueError:
            pass
        known = self._resolved.get(origin.host)
        now = time.monotonic()
        if known is not None and now - known[0] < RESOLVE_SECONDS:
            return known[1]
        infos = await asyncio.get_running_loop().getaddrinfo(
            origin.host, origin.port, type=socket.SOCK_STREAM
        )
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._resolved[origin.host] = (now, addresses)
        return addresses

    def _kept(self, origin: _Origin) -> _Connection | None:
        """The most recently used open connection to `origin`; stale ones are closed."""
        kept = self._idle.get(origin)
        now = time.monotonic()
        while kept:
            connection = kept.pop()
            if connection.usable and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def _done(self, connection: _Connection, response: Response) -> None:
        """Keep the connection for the next request if its answer was read whole."""
        if not (response.reusable and connection.usable):
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)
        if sum(map(len, self._idle.values())) > MAX_IDLE:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        origin, index = min(
            ((o, i) for o, kept in self._idle.items() for i in range(len(kept))),
            key=lambda at: self._idle[at[0]][at[1]].idle_since,
        )
        self._idle[origin].pop(index).close()
        if not self._idle[origin]:
            del self._idle[origin]


class _Get:
    """One GET and its redirects, as `async with client.get(...) as response`."""

    def __init__(self, client: HttpClient, url: str, headers: Mapping[str, str]) -> None:
        self._client = client
        self._url = url
        self._headers = headers
        self._held: tuple[_Connection, Response] | None = None

    async def __aenter__(self) -> Response:
        client = self._client
        current, sent = self._url, dict(self._headers)
        origin = _origin_and_target(current)[0]
        for _ in range(MAX_REDIRECTS + 1):
            connection, response = await client._request(current, sent)
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or not location:
                self._held = connection, response
                return response
            try:
                while await response.read():
                    pass
            finally:
                client._done(connection, response)
            current = urljoin(current, location)
            if _origin_and_target(current)[0] != origin:
                sent.pop("Authorization", None)
        raise HttpError(f"more than {MAX_REDIRECTS} redirects")

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            self._client._done(*self._held)
            self._held = None
