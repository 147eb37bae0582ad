"""Accepting connections so that no client can take the server down.

Each accepted socket is counted against a connection limit set below the
process's file-descriptor limit, so the engines' connections and the state
file always find a descriptor. When the limit is reached, the connection idle
longest (one that never sent a full request first) is closed for the new one:
a flood of idle connections cannot lock Prometheus out. Request lines and
headers are bounded and answered 400 without a traceback; a connection that
sends no whole request within FIRST_REQUEST_TIMEOUT of opening (idle, or a
slow trickle of headers), or stays idle past the keep-alive timeout, is
closed, as is one that does not read its response.

With TLS, each connection is wrapped with the context the web configuration
gives at that moment (web_reload), so a rotated certificate or a changed TLS
setting applies to the next connection without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import ssl
import sys
from collections import OrderedDict
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from llm_cost_exporter.daemon.client_errors import RateLimitedLog, printable
from llm_cost_exporter.daemon.fair_queue import EAGER_GAP
from llm_cost_exporter.daemon.tls_context import peer_has_allowed_san
from llm_cost_exporter.daemon.token_bucket import TokenBucket
from llm_cost_exporter.daemon.web_reload import LiveWebConfig

SERVER_NAME = "llm-cost-exporter"
"""The `Server` header: no library or Python version."""
FIRST_REQUEST_TIMEOUT = 10.0
"""Seconds a new connection has to finish the TLS handshake and send a whole request."""
HANDSHAKE_TIMEOUT = FIRST_REQUEST_TIMEOUT
SEND_TIMEOUT = 30.0
"""Seconds a response may sit unread by its client before the connection is closed."""
TLS_SHUTDOWN_TIMEOUT = 5.0
_TLS_SHUTDOWN = (
    {"ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT} if sys.version_info >= (3, 11) else {}
)
MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELD = 8190
MAX_HEADERS = 32
MAX_CONNECTIONS = 512
LISTEN_BACKLOG = 128
ACCEPT_RATE = 100.0
"""New connections taken in a second, after a burst of ACCEPT_BURST."""
ACCEPT_BURST = 100
ACCEPT_RETRY = 0.1
OUTGOING_RESERVE = 64
"""Descriptors kept for the engines' connection pool (its limit)."""
SPARE_RESERVE = 32
"""Descriptors kept for the state file, NVML, logging and name resolution."""
MIN_CONNECTIONS = 8
NEW_CONNECTION_CREDIT = 1.0
"""A new connection's first request queues as if its connection was served this many
seconds before it opened (see fair_queue)."""

log = logging.getLogger("llm-cost-exporter")


def connection_limit(fd_limit: int, open_fds: int) -> int:
    """Connections to serve at once: what the descriptor limit leaves after the
    descriptors already open and the reserves, at most MAX_CONNECTIONS."""
    room = fd_limit - open_fds - OUTGOING_RESERVE - SPARE_RESERVE
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, room))


def process_connection_limit() -> int:
    """`connection_limit` for this process's soft RLIMIT_NOFILE and open descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    try:
        open_fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = 16
    limit = connection_limit(soft, open_fds)
    log.info("at most %d HTTP connections at once (file descriptor limit %d)", limit, soft)
    if limit < 64:
        log.warning(
            "the file descriptor limit (%d) leaves room for only %d HTTP connections; "
            "raise it (ulimit -n, LimitNOFILE=) to at least 1024",
            soft,
            limit,
        )
    return limit


class Connections:
    """The open connections, counted against `limit`, idle ones ordered for closing."""

    def __init__(self, limit: int, errors: RateLimitedLog) -> None:
        self.limit = limit
        self._errors = errors
        self._fresh: OrderedDict[GuardedRequestHandler, None] = OrderedDict()
        """Idle, no request answered yet (accepted, in handshake, or headers pending)."""
        self._served: OrderedDict[GuardedRequestHandler, None] = OrderedDict()
        """Idle after answering at least one request."""
        self._busy: set[GuardedRequestHandler] = set()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._served) + len(self._busy)

    def make_room(self) -> bool:
        """Room for one more connection, made by closing the one idle longest when the
        limit is reached; False when every connection is busy."""
        if len(self) < self.limit:
            return True
        idle = self._fresh or self._served
        if not idle:
            self._errors.note("connection limit", f"all {self.limit} connections busy: refused one")
            return False
        victim, _ = idle.popitem(last=False)
        self._errors.note(
            "connection limit",
            f"connection limit {self.limit} reached: closed the connection idle longest",
        )
        victim.abort()
        return True

    def add(self, conn: GuardedRequestHandler) -> None:
        self._fresh[conn] = None

    def busy(self, conn: GuardedRequestHandler) -> None:
        if conn in self._fresh or conn in self._served:
            self._fresh.pop(conn, None)
            self._served.pop(conn, None)
            self._busy.add(conn)

    def idle(self, conn: GuardedRequestHandler) -> None:
        if conn in self._busy:
            self._busy.discard(conn)
            self._served[conn] = None

    def release(self, conn: GuardedRequestHandler) -> None:
        self._fresh.pop(conn, None)
        self._served.pop(conn, None)
        self._busy.discard(conn)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 protocol, counted, TLS-wrapped per connection, its client
    errors answered and logged in one rate-limited line."""

    __slots__ = ("_guard_live", "_guard_conns", "_guard_errors", "_guard_raw",
                 "_guard_pending", "_guard_early", "_guard_lost", "_guard_send_timer",
                 "_guard_first_request", "served_at", "back_to_back")  # fmt: skip

    def __init__(
        self,
        manager: web.Server,
        *,
        live: LiveWebConfig,
        connections: Connections,
        errors: RateLimitedLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard_live = live
        self._guard_conns = connections
        self._guard_errors = errors
        self._guard_raw: asyncio.Transport | None = None
        self._guard_pending = False
        self._guard_early: list[bytes] = []
        self._guard_lost = False
        self._guard_send_timer: asyncio.TimerHandle | None = None
        self._guard_first_request: asyncio.TimerHandle | None = None
        self.served_at = self._loop.time() - NEW_CONNECTION_CREDIT
        """When this connection's last response was handed over (its turn in fair_queue)."""
        self.back_to_back = 0
        """Requests in a row that came within EAGER_GAP of the previous answer."""

    # -- connection lifecycle ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = transport  # the accepted socket, before any TLS
        assert isinstance(raw, asyncio.Transport)
        self._guard_raw = raw
        self._guard_conns.add(self)
        self._guard_first_request = self._loop.call_later(
            FIRST_REQUEST_TIMEOUT, self._first_request_timed_out
        )
        if not self._guard_live.tls_enabled:
            super().connection_made(raw)
            return
        raw.pause_reading()  # the ClientHello is for the TLS layer, not for HTTP
        self._guard_pending = True
        asyncio.ensure_future(self._start_tls(raw))

    async def _start_tls(self, raw: asyncio.Transport) -> None:
        peer = _peer(raw)
        try:
            tls = await self._loop.start_tls(
                raw,
                self,
                self._guard_live.ssl_context(),
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                **_TLS_SHUTDOWN,
            )
        except asyncio.CancelledError:
            self._guard_forget()
            raw.abort()
            raise
        except Exception as error:  # ssl.SSLError, a reset, the handshake timeout
            closed_on_purpose = self._guard_lost  # for the connection limit
            self._guard_forget()
            raw.abort()
            if closed_on_purpose:
                return
            if isinstance(error, OSError):
                reason = _tls_reason(error)
            else:
                reason = f"{type(error).__name__}: {error}"
            self._guard_errors.note(
                "tls handshake", f"TLS handshake from {peer} failed: {printable(reason)}"
            )
            return
        self._guard_pending = False
        if self._guard_lost or tls is None:
            return
        sans = (
            self._guard_live.config.tls.client_allowed_sans if self._guard_live.config.tls else ()
        )
        if sans and not peer_has_allowed_san(tls.get_extra_info("peercert"), sans):
            self._guard_errors.note(
                "client certificate", f"client certificate from {peer} names no allowed SAN"
            )
            tls.abort()
            return
        super().connection_made(tls)
        early, self._guard_early = self._guard_early, []
        for data in early:
            super().data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._guard_pending:
            self._guard_early.append(data)  # decrypted before start_tls returned
            return
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard_forget()
        super().connection_lost(exc)

    def _guard_forget(self) -> None:
        """The connection is gone (or never got past TLS): uncount it, stop its timers."""
        self._guard_lost = True
        self._guard_conns.release(self)
        for timer in (self._guard_send_timer, self._guard_first_request):
            if timer is not None:
                timer.cancel()

    def _first_request_timed_out(self) -> None:
        self._guard_first_request = None
        self._guard_errors.note(
            "no request", f"{_peer(self._guard_raw)} sent no whole request in "
            f"{FIRST_REQUEST_TIMEOUT:g}s: closed"
        )  # fmt: skip
        self.abort()

    def abort(self) -> None:
        """Close at once, whatever state the connection is in."""
        self._guard_lost = True
        if self._guard_raw is not None:
            self._guard_raw.abort()

    # -- requests (called by the app's middleware) ----------------------------

    def request_started(self) -> None:
        if self._guard_first_request is not None:
            self._guard_first_request.cancel()
            self._guard_first_request = None
        quick = self._loop.time() - self.served_at < EAGER_GAP
        self.back_to_back = self.back_to_back + 1 if quick else 0
        self._guard_conns.busy(self)

    def request_finished(self) -> None:
        self.served_at = self._loop.time()
        self._guard_conns.idle(self)

    # -- a client that does not read its response ----------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._guard_send_timer = self._loop.call_later(SEND_TIMEOUT, self._send_timed_out)

    def resume_writing(self) -> None:
        if self._guard_send_timer is not None:
            self._guard_send_timer.cancel()
            self._guard_send_timer = None
        super().resume_writing()

    def _send_timed_out(self) -> None:
        self._guard_send_timer = None
        peer = _peer(self._guard_raw)
        self._guard_errors.note(
            "unread response", f"{peer} read no response for {SEND_TIMEOUT:g}s: closed"
        )
        self.abort()

    # -- malformed requests --------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """One rate-limited line instead of aiohttp's traceback, and a plain answer
        whose Server header names no version."""
        reason = printable(str(getattr(exc, "message", None) or exc or message or ""), 120)
        if status >= 500:
            self._guard_errors.note("internal error", f"{status} for {request.path}: {reason}")
        else:
            self._guard_errors.note(
                "bad request", f"{status} to {request.remote}: {type(exc).__name__}: {reason}"
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        phrase = HTTPStatus(status).phrase
        response = web.Response(
            status=status, text=f"{status} {phrase}\n", headers={"Server": SERVER_NAME}
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's other error reports (a handler that failed), rate-limited too."""
        message = str(args[0]) % args[1:] if len(args) > 1 else " ".join(map(str, args))
        exc = kw.get("exc_info")
        if isinstance(exc, BaseException):
            message = f"{message}: {type(exc).__name__}: {exc}"
        self._guard_errors.note("server error", printable(message))


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown peer"


def _tls_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    return str(error) or type(error).__name__


class _Listener:
    """The listening sockets and the tasks accepting on them (what BaseSite stops)."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
            sock.close()


def listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for `host` (None: every interface), as
    asyncio's create_server makes them."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class GuardedSite(web.BaseSite):
    """A TCP listener that accepts at a bounded pace, within the connection limit, and
    serves each connection with a GuardedRequestHandler.

    Accepting is this site's own loop rather than asyncio's, so that a flood of
    new connections (each answered 400, or each opened to be closed) is taken
    in at ACCEPT_RATE at most: the rest wait in the kernel's listen queue while
    the connections already open, a scraper's among them, are served.
    """

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        live: LiveWebConfig,
        errors: RateLimitedLog,
        limit: int,
        idle_timeout: float,
    ) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host = host
        self._port = port
        self._idle_timeout = idle_timeout
        self.live = live
        self.connections = Connections(limit, errors)
        self._errors = errors
        self._pace = TokenBucket(ACCEPT_RATE, ACCEPT_BURST)

    @property
    def name(self) -> str:
        scheme = "https" if self.live.tls_enabled else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    def _protocol(self) -> GuardedRequestHandler:
        manager = self._runner.server
        assert manager is not None
        return GuardedRequestHandler(
            manager,
            loop=asyncio.get_running_loop(),
            live=self.live,
            connections=self.connections,
            errors=self._errors,
            keepalive_timeout=self._idle_timeout,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_HEADER_FIELD,
            max_headers=MAX_HEADERS,
            access_log=None,
        )

    async def start(self) -> None:
        await super().start()
        listener = _Listener(listening_sockets(self._host, self._port))
        self._server = listener  # type: ignore[assignment]  # closed by BaseSite.stop
        loop = asyncio.get_running_loop()
        listener.tasks = [loop.create_task(self._accept(sock)) for sock in listener.sockets]

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._pace.wait())
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as error:  # out of descriptors, or aborted before accepted
                self._errors.note("accept", f"accepting a connection failed: {error}")
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            self._pace.take()
            if not self.connections.make_room():
                sock.close()
                continue
            try:
                await loop.connect_accepted_socket(self._protocol, sock)
            except OSError:
                sock.close()  # gone before it was served
