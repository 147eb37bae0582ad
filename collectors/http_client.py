"""A lean HTTP/1.1 client for engine pages: GETs over kept-alive connections.

Every cycle the exporter GETs the same few URLs, each a page of tens of kB. A
general client spends more CPU on its own machinery (request objects, URL
parsing, cookie jars, tracing hooks, stream readers) than the kernel spends
moving the bytes, on every request. This one does only what an engine page
needs: one GET, its answer's head checked and its body handed on as it arrives
(Content-Length, chunked, or up to the close; gzip and deflate decoded when the
engine sends them), over a connection kept for the next cycle.

The whole answer is read in the connection's callbacks: the caller says up front
how to judge the head and where the body goes, and its coroutine wakes once, when
the answer has ended.

It asks for no compression: the page crosses the node or the cluster network,
where a few kB a second cost nothing, while gzip costs the engine a compression
and the exporter an inflate on every read. A compressed answer is still read,
and inflated a bounded piece at a time so the caller's size limit holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple
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
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_NO_BODY = frozenset((204, 304))
_USER_AGENT = f"llm-cost-exporter/{__version__}"


class HttpError(Exception):
    """The server's answer is not HTTP as the exporter reads it, or the connection ended
    before the answer did."""


class _Origin(NamedTuple):
    """Where connections go: a tuple, so that keying the kept connections by it hashes
    in C, as every read does twice."""

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
    """One TCP (or TLS) connection, reading the answer in flight as its bytes arrive.

    The socket is read into its client's buffer, and each read is decoded in the same
    callback: the answer's head once it is whole, then its body, handed straight to
    the caller's sink. No coroutine has to wake to take the bytes: the caller wakes
    once, when the answer has ended."""

    def __init__(self, origin: _Origin, inbox: bytearray) -> None:
        """`inbox` is shared by the client's connections: a read is copied out of it in
        the callback that filled it, before any other connection reads, so one buffer
        serves them all and stays in the cache from one page to the next."""
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.answer: Response | None = None
        """The answer being read; bytes arriving while there is none spoil the connection."""
        self.closed = False
        self.stray = False
        """Bytes came that no request asked for: the connection cannot be reused."""
        self.idle_since = 0.0
        self._buffer = inbox
        self._inbox = memoryview(inbox)

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._inbox

    def buffer_updated(self, nbytes: int) -> None:
        answer = self.answer
        if answer is None:
            self.stray = True
            return
        inbox = self._inbox
        if answer.in_head:
            # Cut at the head's end: the body is then copied out of the buffer once,
            # not once with the head and again without it.
            end = self._buffer.find(b"\r\n\r\n", 0, nbytes)
            if end != -1 and end + 4 < nbytes:
                answer.received(bytes(inbox[: end + 4]))
                if self.answer is not answer:  # done (no body) or failed: the rest is stray
                    self.stray = True
                    return
                inbox = inbox[end + 4 : nbytes]
                nbytes -= end + 4
        answer.received(bytes(inbox[:nbytes]))

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        if self.answer is not None:
            self.answer.closed()

    # use

    @property
    def usable(self) -> bool:
        """Open, with no answer in flight and nothing unasked-for received."""
        return (
            not self.closed
            and not self.stray
            and self.answer is None
            and self.transport is not None
        )

    def close(self) -> None:
        self.closed = True
        if self.answer is not None:
            self.answer.abandon()
        if self.transport is not None:
            self.transport.close()

    def ask(self, request: bytes, check: Check, sink: Sink) -> Response:
        """Send `request`; its answer is read from here on, judged by `check` and its body
        handed to `sink` (Response)."""
        assert self.transport is not None
        answer = self.answer = Response(self, check, sink)
        self.transport.write(request)
        return answer


_HEAD, _BODY, _SIZE, _DATA_END, _TRAILER, _DONE = range(6)
"""Where the reading of an answer stands: in its head, in its body (or a chunk's data),
in a chunk's size line, at the CRLF after a chunk's data, in the trailer, done."""


Sink = Callable[[bytes], None]
"""Where an answer's body goes, a piece at a time; what it raises ends the answer."""
Check = Callable[["Response"], None]
"""Judges an answer's head (status, headers) before any of its body reaches the sink;
what it raises ends the answer."""


def _dropped(piece: bytes) -> None:
    """The sink of a redirect's body."""


class Response:
    """An answer, decoded as its bytes arrive: its head, judged by `check` once whole
    (a redirect's is not: its body is dropped), then its body, handed to `sink` a piece
    of at most CHUNK_BYTES at a time. `ended` is done when the answer is read whole or
    has failed (`error`)."""

    def __init__(self, connection: _Connection, check: Check, sink: Sink) -> None:
        self._connection = connection
        self._check = check
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        """Lower-case names; a repeated header's values joined with `, `."""
        self.content_length: int | None = None
        self.complete = False
        """The body was read to its end: the connection may serve another request."""
        self.location: str | None = None
        """Where a redirect points; its body was dropped, not handed to the sink."""
        self._chunked = False
        self._state = _HEAD
        self._line = b""
        """The unfinished head, size line or trailer line received so far."""
        self._left: int | None = 0
        """Bytes of the body (or, chunked, of the current chunk) still to come; None for
        a body that ends with the connection."""
        self._inflate: _Inflater | None = None
        self._sink: Sink | None = sink
        self.error: BaseException | None = None
        """Why the answer failed: the connection's, the answer's or what `check` or the
        sink raised."""
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # what the connection reports

    def received(self, data: bytes) -> None:
        try:
            self._decode(data)
        except Exception as error:  # a broken answer, or the sink refusing the page
            self._fail(error)

    def closed(self) -> None:
        """The connection closed: the end of a body framed by the close, else a failure."""
        if self._state == _DONE or self.error is not None:
            return
        if self._state == _BODY and self._left is None:
            try:
                self._finish()
            except Exception as error:  # the compressed stream ended early
                self._fail(error)
        else:
            self._fail(HttpError("the connection closed in the middle of the answer"))

    def abandon(self) -> None:
        """The connection is closed under the answer (a timeout, a refused page): nothing
        more reaches the sink, and the caller still waiting fails."""
        self._sink = None
        if self._state != _DONE and self.error is None:
            self.error = HttpError("the connection was closed before the answer ended")
        self._end()

    @property
    def in_head(self) -> bool:
        """Whether the bytes received next may still be the head's."""
        return self._state == _HEAD

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry the next request once the body is read."""
        framed = self._chunked or self.content_length is not None
        return (
            self.complete and framed and "close" not in self.headers.get("connection", "").lower()
        )

    # ending

    def _end(self) -> None:
        """Wake the caller; the outcome is in `complete` and `error`, not in the future,
        which a cancelled caller no longer awaits."""
        if not self.ended.done():
            self.ended.set_result(None)

    def _finish(self) -> None:
        """The body has ended: the sink's inflater checks that the compressed stream
        ended too."""
        sink = self._sink
        if sink is not None:
            self._deliver(b"", sink)
        self._state = _DONE
        self.complete = True
        if self._connection.answer is self:
            self._connection.answer = None
        self._end()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._sink = None
        if self._connection.answer is self:
            self._connection.answer = None
        self._connection.close()
        self._end()

    # decoding

    def _decode(self, data: bytes) -> None:
        while data and self.error is None:
            state = self._state
            if state == _BODY:
                data = self._body(data)
            elif state == _HEAD:
                data = self._head(data)
            elif state == _SIZE:
                data = self._size_line(data)
            elif state == _DATA_END:
                data = self._data_end(data)
            elif state == _TRAILER:
                data = self._trailer(data)
            else:
                self._connection.stray = True
                return

    def _line_of(
        self, data: bytes, limit: int, ending: bytes = b"\r\n"
    ) -> tuple[bytes | None, bytes]:
        """The line that `data` completes (up to `ending`, which is dropped) and what
        follows it; while the line is not complete, its bytes are kept and the line is
        None."""
        held = self._line + data if self._line else data
        end = held.find(ending)
        if end > limit or (end == -1 and len(held) > limit):
            raise HttpError(f"a line of the answer is longer than {limit} bytes")
        if end == -1:
            self._line = held
            return None, b""
        self._line = b""
        return held[:end], held[end + len(ending) :]

    def _head(self, data: bytes) -> bytes:
        head, rest = self._line_of(data, MAX_HEAD_BYTES, b"\r\n\r\n")
        if head is None:
            return b""
        status, reason, headers = _parse_head(head)
        if status == 101:
            raise HttpError("the server switched protocols")
        if status < 200:
            return rest  # an interim answer; the final one follows
        self.status, self.reason, self.headers = status, reason, headers
        self.content_length = self._left = _content_length(headers) if status not in _NO_BODY else 0
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._state = _SIZE if self._chunked else _BODY
        location = headers.get("location")
        if status in _REDIRECTS and location:
            self.location = location
            self._sink = _dropped
        else:
            self._check(self)
            # An unasked-for coding fails the body, not the head (and its status).
            self._inflate = _inflater(headers.get("content-encoding", ""))
        if self._left == 0 and not self._chunked:
            self._finish()
        return rest

    def _body(self, data: bytes) -> bytes:
        left = self._left
        rest = b""
        if left is not None:
            if len(data) > left:
                data, rest = data[:left], data[left:]
            self._left = left = left - len(data)
        sink = self._sink
        if sink is not None:
            self._deliver(data, sink)
        if left == 0:
            if self._chunked:
                self._state = _DATA_END
            else:
                self._finish()
        return rest

    def _size_line(self, data: bytes) -> bytes:
        size_line, rest = self._line_of(data, 1024)
        if size_line is None:
            return b""
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            size = -1
        if size < 0 or not size_text.isalnum():
            raise HttpError(f"bad chunk size {size_line[:40]!r}")
        if size:
            self._left = size
            self._state = _BODY
        else:
            self._state = _TRAILER
        return rest

    def _data_end(self, data: bytes) -> bytes:
        held = self._line + data if self._line else data
        if len(held) < 2:
            self._line = held
            return b""
        self._line = b""
        if held[:2] != b"\r\n":
            raise HttpError("a chunk is longer than its size says")
        self._state = _SIZE
        return held[2:]

    def _trailer(self, data: bytes) -> bytes:
        """Trailer fields are read and dropped, up to the empty line."""
        line, rest = self._line_of(data, MAX_HEAD_BYTES)
        if line == b"":
            self._finish()
        return rest

    def _deliver(self, piece: bytes, sink: Sink) -> None:
        """Hand `piece` of the body to `sink`, inflated if it is compressed; b"" is the
        body's end, where an inflater checks that its stream ended too."""
        inflate = self._inflate
        if inflate is None:
            if piece:
                sink(piece)
        elif piece:
            for plain in inflate.pieces(piece):
                sink(plain)
        else:
            inflate.check_end()


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


_BLANKS = " \t\n\r\x0b\x0c"
"""What `bytes.strip()` strips (ASCII whitespace), for header text decoded as Latin-1."""


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status, reason and headers of an answer's head (its lines without the empty one).
    The header lines are decoded once, as Latin-1, each byte one character."""
    status_line, more, fields = head.partition(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise HttpError(f"not an HTTP/1.1 answer: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    for line in fields.decode("latin-1").split("\r\n") if more else ():
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name or name != name.strip(_BLANKS):
            raise HttpError(f"malformed header line: {line.encode('latin-1')[:60]!r}")
        key = name.lower()
        value = value.strip(_BLANKS)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
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
        self._inbox = bytearray(CHUNK_BYTES)
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

    async def get(self, url: str, headers: Mapping[str, str], check: Check, sink: Sink) -> None:
        """GET `url` with `headers`, redirects followed (credentials kept only while the
        origin stays the same): the final answer's head is judged by `check`, then its
        body handed to `sink` as it arrives; returns once the body has ended. What `check`
        or `sink` raises ends the GET, and is raised here.

        One coroutine for it all, redirects and the retry included: every frame between
        the collector and the answer is entered and left again on every page."""
        current, sent = url, headers
        first: _Origin | None = None
        for _ in range(MAX_REDIRECTS + 1):
            origin, target, host = _origin_and_target(current)
            if first is None:
                first = origin
            elif origin != first and "Authorization" in sent:
                sent = {name: value for name, value in sent.items() if name != "Authorization"}
            request = (
                f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {_USER_AGENT}\r\n"
                "Accept-Encoding: identity\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in sent.items())
                + "\r\n"
            ).encode("latin-1")
            connection = self._kept(origin)
            kept = connection is not None
            while True:
                if connection is None:
                    connection = await self._connect(origin)
                response = connection.ask(request, check, sink)
                try:
                    await response.ended
                except BaseException:  # cancelled (a timeout): a late answer must not be read
                    connection.close()
                    raise
                error = response.error
                if error is None:
                    break
                if not (kept and isinstance(error, HttpError) and response.in_head):
                    raise error
                # The server closed the kept connection as the request went out (its
                # keep-alive ran out): before any answer came, a GET is safe to send again,
                # once, on a new one.
                connection, kept = None, False
            self._done(connection, response)
            if response.location is None:
                return
            current = urljoin(current, response.location)
        raise HttpError(f"more than {MAX_REDIRECTS} redirects")

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
                    lambda: _Connection(origin, self._inbox),
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
        kept = self._idle.get(connection.origin)
        if kept is None:
            kept = self._idle[connection.origin] = []
        kept.append(connection)
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
