"""The HTTP side: `/metrics`, `/healthz` and the landing page.

Handlers only read what the collection loop left in memory: a scrape never
triggers I/O, so it stays fast under many concurrent scrapers and cannot be
slowed by a sick engine. `/metrics` answers from ready bytes, gzip-compressed
once per page for the scrapers that accept it.

The web configuration (web_config) decides TLS (http_connection), basic auth,
the request rate limit and extra response headers. `/healthz` stays open
without credentials so liveness probes need none; it tells only whether the
loop runs. Every path answers GET and HEAD; another method on a known path is
405, an unknown path 404 (both after the credentials, as any other path).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Callable

from llm_cost_exporter.daemon.basic_auth import BasicAuth, Verdict
from llm_cost_exporter.daemon.client_errors import RateLimitedLog, printable
from llm_cost_exporter.daemon.connections import Connections, Listener, process_connection_limit
from llm_cost_exporter.daemon.fair_queue import FairQueue
from llm_cost_exporter.daemon.http_connection import HttpConnection
from llm_cost_exporter.daemon.http_request import Request
from llm_cost_exporter.daemon.http_response import Response, text_response
from llm_cost_exporter.daemon.landing import render_landing
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.daemon.token_bucket import TokenBucket
from llm_cost_exporter.daemon.web_config import RateLimit
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.prometheus import CONTENT_TYPE, PrometheusPage

OPEN_PATHS = frozenset({"/healthz"})
"""Served without credentials or rate limit."""
METHODS = ("GET", "HEAD")
_NOT_FOUND = text_response(404, "404: Not Found")
_NOT_ALLOWED = text_response(405, "405: Method Not Allowed", {"Allow": ",".join(METHODS)})
_TOO_MANY = text_response(429, "429 Too Many Requests\n")
_UNAUTHORIZED = text_response(
    401, "401 Unauthorized\n", {"WWW-Authenticate": 'Basic realm="llm-cost-exporter"'}
)

log = logging.getLogger("llm-cost-exporter")


class _Gzipped:
    """The gzip form of the page's current body, compressed once per body."""

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._gzipped = b""

    def of(self, body: bytes) -> bytes:
        if body is not self._body:
            self._gzipped = gzip.compress(body, compresslevel=6, mtime=0)
            self._body = body
        return self._gzipped


class _Routes:
    """What each path answers, from what the loop and the page hold now."""

    def __init__(self, loop: CollectionLoop, page: PrometheusPage | None) -> None:
        self._loop = loop
        self._page = page
        self._gzipped = _Gzipped()
        self._paths: dict[str, Callable[[Request], Response]] = {
            "/healthz": self._healthz,
            "/": self._landing,
        }
        if page is not None:
            self._paths["/metrics"] = self._metrics

    def answer(self, request: Request) -> Response:
        route = self._paths.get(request.path)
        if route is None:
            return _NOT_FOUND
        if request.method not in METHODS:
            return _NOT_ALLOWED
        return route(request)

    def _metrics(self, request: Request) -> Response:
        assert self._page is not None
        body = self._page.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers = {
                "Content-Type": CONTENT_TYPE,
                "Content-Encoding": "gzip",
                "Vary": "Accept-Encoding",
            }
            return Response(200, self._gzipped.of(body), headers)
        return Response(200, body, {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"})

    def _healthz(self, request: Request) -> Response:
        """200 `ok`, or `starting` until the first cycle ends; 503 once the loop stalls."""
        health = self._loop.health()
        if health.alive:
            return text_response(200, f"{health.state}\n")
        return text_response(
            503, f"collection loop stalled: no cycle for {health.age_seconds:.0f}s\n"
        )

    def _landing(self, request: Request) -> Response:
        html = render_landing(self._loop.state, self._loop.health())
        return Response(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})


class _Gate:
    """Credentials and the rate limit, then a turn in the fair queue, for every request."""

    def __init__(self, routes: _Routes, live: LiveWebConfig, errors: RateLimitedLog) -> None:
        self._routes = routes
        self._live = live
        self._errors = errors
        self._auth = BasicAuth()
        self._bucket: TokenBucket | None = None
        self._bucket_for: RateLimit | None = None
        self._queue = FairQueue()

    async def __call__(self, request: Request, conn: HttpConnection) -> Response:
        if request.path not in OPEN_PATHS:
            refused = await self._admit(request, conn.peer)
            if refused is not None:
                return refused
        await self._queue.acquire(conn.served_at, conn.back_to_back)
        try:
            return self._routes.answer(request)
        finally:
            self._queue.release()

    async def _admit(self, request: Request, peer: str) -> Response | None:
        """None when the request may pass; otherwise the answer refusing it."""
        config = self._live.current()
        rate_limit = config.rate_limit
        if rate_limit is not None:
            if self._bucket is None or self._bucket_for != rate_limit:
                self._bucket = TokenBucket(1 / rate_limit.interval, rate_limit.burst)
                self._bucket_for = rate_limit
            if not self._bucket.take():
                return _TOO_MANY
        if not config.users:
            return None
        verdict = await self._auth.check(request.headers.get("authorization"), config.users)
        if verdict is Verdict.GRANTED:
            return None
        if verdict is Verdict.BUSY:
            return _TOO_MANY
        if verdict is Verdict.REFUSED:
            self._errors.note(
                "unauthorized",
                f"401 to {peer} for {printable(request.path)}: {verdict.value}",
            )
        return _UNAUTHORIZED


class HttpServer:
    """The routes behind the gate, served on guarded connections: start to listen,
    stop to close every connection."""

    def __init__(
        self, loop: CollectionLoop, page: PrometheusPage | None, live: LiveWebConfig
    ) -> None:
        self.live = live
        self.errors = RateLimitedLog(log)
        self._gate = _Gate(_Routes(loop, page), live, self.errors)
        self.listener: Listener | None = None

    async def start(self, host: str | None, port: int, idle_timeout: float) -> None:
        """Listen; an OSError (address in use, permission) leaves nothing open."""
        connections = Connections(process_connection_limit(), self.errors)

        def protocol() -> HttpConnection:
            return HttpConnection(self._gate, self.live, connections, self.errors, idle_timeout)

        self.listener = Listener(protocol, connections, self.errors)
        self.listener.start(host, port)

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, when started with 0)."""
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            await asyncio.sleep(0)  # the connections' ends run before the loop stops
        self.errors.close()
