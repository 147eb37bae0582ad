"""One client connection: TLS, its requests answered in order, and its timeouts.

A connection is HTTP/1.1 kept alive (HTTP/1.0 only when asked), its requests
answered one at a time in the order they came, pipelined or not. It is closed
when the client asks (`Connection: close`), when it sends something that is not
a request (answered 400 and logged in one rate-limited line, never a
traceback), when it sends no whole request within FIRST_REQUEST_TIMEOUT of
opening (idle, or a slow trickle of headers) or within the keep-alive timeout
of its last answer, and when it leaves an answer unread for SEND_TIMEOUT.

With TLS, each connection is wrapped with the context the web configuration
gives at that moment (web_reload), so a rotated certificate or a changed TLS
setting applies to the next connection without a restart.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from llm_cost_exporter.daemon.client_errors import RateLimitedLog, printable
from llm_cost_exporter.daemon.fair_queue import EAGER_GAP
from llm_cost_exporter.daemon.http_request import BadRequest, Request, RequestParser
from llm_cost_exporter.daemon.http_response import CONTINUE, Response, encode, error_response
from llm_cost_exporter.daemon.tls_context import peer_has_allowed_san
from llm_cost_exporter.daemon.web_reload import LiveWebConfig

if TYPE_CHECKING:
    from llm_cost_exporter.daemon.connections import Connections

FIRST_REQUEST_TIMEOUT = 10.0
"""Seconds a new connection has to finish the TLS handshake and send a whole request."""
HANDSHAKE_TIMEOUT = FIRST_REQUEST_TIMEOUT
SEND_TIMEOUT = 30.0
"""Seconds a response may sit unread by its client before the connection is closed."""
TLS_SHUTDOWN_TIMEOUT = 5.0
_TLS_SHUTDOWN = (
    {"ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT} if sys.version_info >= (3, 11) else {}
)
LINGER_TIMEOUT = 2.0
"""Seconds a connection refused with a 400 is read (and dropped) after the answer, so
that closing it does not reset the connection before the client read the answer."""
NEW_CONNECTION_CREDIT = 1.0
"""A new connection's first request queues as if its connection was served this many
seconds before it opened (see fair_queue)."""
HIGH_WATER = 64 * 1024
"""Bytes received ahead of the request being answered beyond which reading pauses."""

_INBOX = memoryview(bytearray(64 * 1024))
"""Where every connection's socket is read into before its bytes are taken: reads are
handed over at once, one at a time, so one buffer serves all connections."""

Handler = Callable[[Request, "HttpConnection"], Awaitable[Response]]


class HttpConnection(asyncio.BufferedProtocol):
    """The protocol of one accepted connection, counted in `connections`."""

    def __init__(
        self,
        handler: Handler,
        live: LiveWebConfig,
        connections: Connections,
        errors: RateLimitedLog,
        idle_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._live = live
        self._connections = connections
        self._errors = errors
        self._idle_timeout = idle_timeout
        self._parser = RequestParser()
        self._raw: asyncio.Transport | None = None
        """The accepted socket, before any TLS."""
        self._transport: asyncio.Transport | None = None
        """Where requests are read and answers written (the TLS layer, with TLS)."""
        self._task: asyncio.Task[None] | None = None
        self._data: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._lost = False
        self._lingering = False
        self._deadline: float | None = None
        self._deadline_kind = ""
        self._timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self.peer = "unknown peer"
        self.served_at = self._loop.time() - NEW_CONNECTION_CREDIT
        """When this connection's last response was handed over (its turn in fair_queue)."""
        self.back_to_back = 0
        """Requests in a row that came within EAGER_GAP of the previous answer."""

    # -- asyncio.BufferedProtocol ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0])
        self._connections.add(self)
        self._set_deadline(FIRST_REQUEST_TIMEOUT, "first")
        if self._live.tls_enabled:
            transport.pause_reading()  # the ClientHello is for the TLS layer, not for HTTP
        else:
            self._transport = transport
        self._task = self._loop.create_task(self._run())

    def get_buffer(self, sizehint: int) -> memoryview:
        return _INBOX

    def buffer_updated(self, nbytes: int) -> None:
        if self._lingering:
            return
        self._parser.feed(_INBOX[:nbytes])
        if self._data is not None:
            self._wake()
        elif self._parser.pending > HIGH_WATER:
            self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Plain TCP stays open to answer what was asked before the client's end; TLS
        # cannot stay half-open.
        return not self._lingering and self._transport is self._raw

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._connections.release(self)
        for timer in (self._timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._send_timer = None
        self._wake()
        self._drain_done()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._send_timer is not None:
            self._send_timer.cancel()
        self._send_timer = self._loop.call_later(SEND_TIMEOUT, self._send_timed_out)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self._drain_done()

    # -- closing ----------------------------------------------------------------

    def abort(self) -> None:
        """Close at once, whatever state the connection is in."""
        self._lost = True
        if self._raw is not None:
            self._raw.abort()

    def _close(self) -> None:
        """Close once what was written is sent."""
        if self._transport is not None:
            self._transport.close()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self._errors.note(
            "unread response", f"{self.peer} read no response for {SEND_TIMEOUT:g}s: closed"
        )
        self.abort()

    # -- deadlines: one timer, moved lazily -------------------------------------

    def _set_deadline(self, seconds: float, kind: str) -> None:
        when = self._loop.time() + seconds
        self._deadline, self._deadline_kind = when, kind
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:  # moved later since the timer was set
            self._timer = self._loop.call_at(self._deadline, self._deadline_passed)
            return
        self._deadline = None
        if self._deadline_kind == "first":
            self._errors.note(
                "no request",
                f"{self.peer} sent no whole request in {FIRST_REQUEST_TIMEOUT:g}s: closed",
            )
            self.abort()
        elif self._deadline_kind == "idle":
            self._close()
        else:  # the lingering after a 400 is over
            self.abort()

    # -- serving ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._transport is None:
                assert self._raw is not None
                self._transport = await self._start_tls(self._raw)
                if self._transport is None:
                    return
            await self._serve(self._transport)
        except Exception as error:  # a socket error, or a bug: one line, never a traceback
            self._errors.note(
                "server error",
                f"connection from {self.peer} closed: {type(error).__name__}: "
                f"{printable(str(error), 120)}",
            )
            self.abort()

    async def _start_tls(self, raw: asyncio.Transport) -> asyncio.Transport | None:
        """The TLS layer over `raw` once the handshake passed and the client
        certificate names an allowed SAN; None (and the connection closed) otherwise."""
        try:
            tls = await self._loop.start_tls(
                raw,
                self,
                self._live.ssl_context(),
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
                **_TLS_SHUTDOWN,
            )
        except asyncio.CancelledError:
            raw.abort()
            raise
        except Exception as error:  # ssl.SSLError, a reset, the handshake timeout
            closed_on_purpose = self._lost  # for the connection limit, or at stop
            raw.abort()
            if not closed_on_purpose:
                reason = _tls_reason(error) if isinstance(error, OSError) else (
                    f"{type(error).__name__}: {error}"
                )  # fmt: skip
                self._errors.note(
                    "tls handshake", f"TLS handshake from {self.peer} failed: {printable(reason)}"
                )
            return None
        if self._lost or tls is None:
            return None
        tls_config = self._live.config.tls
        sans = tls_config.client_allowed_sans if tls_config else ()
        if sans and not peer_has_allowed_san(tls.get_extra_info("peercert"), sans):
            self._errors.note(
                "client certificate", f"client certificate from {self.peer} names no allowed SAN"
            )
            tls.abort()
            return None
        return tls

    async def _serve(self, transport: asyncio.Transport) -> None:
        while True:
            request = await self._next_request(transport)
            if request is None:
                return
            self._request_started()
            try:
                response = await self._handler(request, self)
                keep = request.keep_alive
            except Exception as error:  # a bug: one line, and this connection closed
                self._errors.note(
                    "internal error",
                    f"500 for {printable(request.target, 120)}: {type(error).__name__}: "
                    f"{printable(str(error), 120)}",
                )
                response, keep = error_response(500), False
            if self._lost:
                return
            if not keep:
                connection: str | None = "close"
            else:
                connection = "keep-alive" if request.version == "HTTP/1.0" else None
            extra = self._live.current().headers
            with_body = request.method != "HEAD"
            transport.writelines(
                encode(response, extra, with_body=with_body, connection=connection)
            )
            self._request_finished()
            if not keep:
                transport.close()
                return
            if self._writing_paused:
                self._drained = self._loop.create_future()
                try:
                    await self._drained
                finally:
                    self._drained = None
                if self._lost:
                    return
            self._set_deadline(self._idle_timeout, "idle")

    async def _next_request(self, transport: asyncio.Transport) -> Request | None:
        """The next whole request; None once the connection is done with."""
        parser = self._parser
        while True:
            try:
                request = parser.next_request()
            except BadRequest as bad:
                self._refuse(transport, bad)
                return None
            if request is not None:
                return request
            if self._lost:
                return None
            if self._eof:
                transport.close()
                return None
            if parser.continue_wanted:
                parser.continue_wanted = False
                transport.write(CONTINUE)
            self._resume_reading()
            self._data = self._loop.create_future()
            try:
                await self._data
            finally:
                self._data = None

    def _refuse(self, transport: asyncio.Transport, bad: BadRequest) -> None:
        """Answer `bad` and close: what follows in the stream cannot be trusted to be
        a request. The client's remaining bytes are read and dropped for a moment, so
        that the close does not reset the connection under the answer."""
        self._errors.note("bad request", f"{bad.status} to {self.peer}: {printable(str(bad), 120)}")
        transport.writelines(
            encode(error_response(bad.status), self._live.current().headers, connection="close")
        )
        if not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        try:
            transport.write_eof()
        except OSError:  # the client is already gone
            transport.abort()
            return
        self._resume_reading()
        self._set_deadline(LINGER_TIMEOUT, "linger")

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _wake(self) -> None:
        """Let a wait for the client's bytes (or its end) go on."""
        if self._data is not None and not self._data.done():
            self._data.set_result(None)

    def _drain_done(self) -> None:
        """Let a wait for the answer to leave (or the connection to end) go on."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- turns in the fair queue ------------------------------------------------

    def _request_started(self) -> None:
        self._deadline = None
        quick = self._loop.time() - self.served_at < EAGER_GAP
        self.back_to_back = self.back_to_back + 1 if quick else 0
        self._connections.busy(self)

    def _request_finished(self) -> None:
        self.served_at = self._loop.time()
        self._connections.idle(self)


def _tls_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    return str(error) or type(error).__name__
