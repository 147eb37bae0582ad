"""The HTTP side: `/metrics`, `/healthz` and the landing page.

Handlers only read what the collection loop left in memory: a scrape never
triggers I/O, so it stays fast under many concurrent scrapers and cannot be
slowed by a sick engine.
"""

from __future__ import annotations

from aiohttp import web

from llm_cost_exporter.daemon.landing import render_landing
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.outputs.prometheus import CONTENT_TYPE, PrometheusPage

LOOP_KEY = web.AppKey("loop", CollectionLoop)
PAGE_KEY = web.AppKey("page", PrometheusPage)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[PAGE_KEY].body
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


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


def build_app(loop: CollectionLoop, page: PrometheusPage) -> web.Application:
    """`page` is the loop's Prometheus output: `/metrics` serves its last body."""
    app = web.Application()
    app[LOOP_KEY] = loop
    app[PAGE_KEY] = page
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/", _landing)
    return app
