"""The HTTP side: `/metrics`, `/healthz` and the landing page.

Handlers only read what the collection loop left in memory: a scrape never
triggers I/O, so it stays fast under many concurrent scrapers and cannot be
slowed by a sick engine. `/metrics` answers from ready bytes, gzip-compressed
once per page for the scrapers that accept it.

The web configuration (web_config) decides TLS (connections), basic auth, the
request rate limit and extra response headers. `/healthz` stays open without
credentials so liveness probes need none; it tells only whether the loop runs.
"""

from __future__ import annotations

import gzip
import logging

from aiohttp import web

from llm_cost_exporter.daemon.basic_auth import BasicAuth, Verdict
from llm_cost_exporter.daemon.client_errors import RateLimitedLog, printable
from llm_cost_exporter.daemon.connections import (
    SERVER_NAME,
    GuardedRequestHandler,
    GuardedSite,
    process_connection_limit,
)
from llm_cost_exporter.daemon.fair_queue import FairQueue
from llm_cost_exporter.daemon.landing import render_landing
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.daemon.token_bucket import TokenBucket
from llm_cost_exporter.daemon.web_config import RateLimit
from llm_cost_exporter.daemon.web_reload import LiveWebConfig
from llm_cost_exporter.outputs.prometheus import CONTENT_TYPE, PrometheusPage

LOOP_KEY = web.AppKey("loop", CollectionLoop)
PAGE_KEY = web.AppKey("page", PrometheusPage)
OPEN_PATHS = frozenset({"/healthz"})
"""Served without credentials or rate limit."""

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


class _Gate:
    """Credentials, the rate limit and the configured headers, for every request."""

    def __init__(self, live: LiveWebConfig, errors: RateLimitedLog) -> None:
        self._live = live
        self._errors = errors
        self._auth = BasicAuth()
        self._bucket: TokenBucket | None = None
        self._bucket_for: RateLimit | None = None
        self._queue = FairQueue()

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        conn = request.protocol if isinstance(request.protocol, GuardedRequestHandler) else None
        if conn is not None:
            conn.request_started()
        config = self._live.current()
        try:
            if request.path not in OPEN_PATHS:
                await self._admit(request, config.users, config.rate_limit)
            if conn is not None:
                await self._queue.acquire(conn.served_at, conn.back_to_back)
            else:
                await self._queue.acquire(0.0)
            try:
                response = await handler(request)
            finally:
                self._queue.release()
        except web.HTTPException as exc:
            exc.headers.update(config.headers)
            exc.headers["Server"] = SERVER_NAME
            raise
        finally:
            if conn is not None:
                conn.request_finished()
        response.headers.update(config.headers)
        response.headers["Server"] = SERVER_NAME
        return response

    async def _admit(self, request: web.Request, users, rate_limit: RateLimit | None) -> None:
        if rate_limit is not None:
            if self._bucket is None or self._bucket_for != rate_limit:
                self._bucket = TokenBucket(1 / rate_limit.interval, rate_limit.burst)
                self._bucket_for = rate_limit
            if not self._bucket.take():
                raise web.HTTPTooManyRequests(text="429 Too Many Requests\n")
        if not users:
            return
        verdict = await self._auth.check(request.headers.get("Authorization"), users)
        if verdict is Verdict.GRANTED:
            return
        if verdict is Verdict.BUSY:
            raise web.HTTPTooManyRequests(text="429 Too Many Requests\n")
        if verdict is Verdict.REFUSED:
            self._errors.note(
                "unauthorized", f"401 to {request.remote} for {printable(request.path)}: "
                f"{verdict.value}"
            )  # fmt: skip
        raise web.HTTPUnauthorized(
            text="401 Unauthorized\n",
            headers={"WWW-Authenticate": 'Basic realm="llm-cost-exporter"'},
        )


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[PAGE_KEY].body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=request.app[_GZIP_KEY].of(body),
            headers={
                "Content-Type": CONTENT_TYPE,
                "Content-Encoding": "gzip",
                "Vary": "Accept-Encoding",
            },
        )
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
    )


async def _healthz(request: web.Request) -> web.Response:
    """200 `ok`, or `starting` until the first cycle ends; 503 once the loop stalls."""
    health = request.app[LOOP_KEY].health()
    if health.alive:
        return web.Response(text=f"{health.state}\n")
    return web.Response(
        status=503, text=f"collection loop stalled: no cycle for {health.age_seconds:.0f}s\n"
    )


async def _landing(request: web.Request) -> web.Response:
    loop = request.app[LOOP_KEY]
    return web.Response(
        text=render_landing(loop.state, loop.health()), content_type="text/html", charset="utf-8"
    )


_GZIP_KEY = web.AppKey("gzip", _Gzipped)


def build_app(
    loop: CollectionLoop,
    page: PrometheusPage | None,
    live: LiveWebConfig | None = None,
    errors: RateLimitedLog | None = None,
) -> web.Application:
    """`page` is the loop's Prometheus output: `/metrics` serves its last body (none on a
    node that only pushes OTLP). `live` is the web configuration (default: no auth, no
    extra headers)."""
    gate = _Gate(live or LiveWebConfig(None), errors or RateLimitedLog(log))
    app = web.Application(middlewares=[gate.middleware])
    app[LOOP_KEY] = loop
    app[PAGE_KEY] = page
    app[_GZIP_KEY] = _Gzipped()
    if page is not None:
        app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/", _landing)
    return app


class HttpServer:
    """The app behind a GuardedSite: start to listen, stop to close every connection."""

    def __init__(
        self, loop: CollectionLoop, page: PrometheusPage | None, live: LiveWebConfig
    ) -> None:
        self.live = live
        self.errors = RateLimitedLog(log)
        self.runner = web.AppRunner(build_app(loop, page, live, self.errors), access_log=None)
        self.site: GuardedSite | None = None

    async def start(self, host: str | None, port: int, idle_timeout: float) -> None:
        """Listen; an OSError (address in use, permission) leaves nothing open."""
        await self.runner.setup()
        self.site = GuardedSite(
            self.runner,
            host,
            port,
            self.live,
            self.errors,
            process_connection_limit(),
            idle_timeout,
        )
        try:
            await self.site.start()
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        self.errors.close()
        await self.runner.cleanup()
