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
    if request.app[LOOP_KEY].healthy():
        return web.Response(text="ok\n")
    return web.Response(status=503, text="collection loop stalled\n")


async def _landing(request: web.Request) -> web.Response:
    loop = request.app[LOOP_KEY]
    return web.Response(
        text=render_landing(loop.state, loop.healthy()), content_type="text/html", charset="utf-8"
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
