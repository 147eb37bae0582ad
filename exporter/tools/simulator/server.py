"""HTTP front end of the simulator: engines' `/metrics` pages plus ground truth.

Each simulated engine stands for one separate engine server (vLLM, SGLang, ...,
by its page format), so every page is that of a single rank; engine i is served
under `/engine/i/metrics` with its other documents (a model list) beside it, and
`/metrics` is engine 0 for tools that expect a single engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .arguments import build_engines_from_args
from .engine import SimulatedEngine
from .profiles import PROFILE_NAMES, TrafficProfile, make_profile

# What a vLLM server's prometheus_client sends with its page: text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP_TEXT = """\
llm-cost-exporter traffic simulator: inference engines' metrics pages.

GET /metrics               engine 0's page
GET /engine/{i}/metrics    engine i's page (i = 0 .. {last})
GET /engine/{i}/PATH       engine i's JSON documents, where its engine serves one
                           (llama.cpp's /v1/models, TGI's /info)
GET /ground-truth          JSON: tokens really served per engine, for checking
GET /control               JSON: each engine's current traffic profile
POST /control              switch profile from now on, e.g. {"profile": "steady", "level": 0.05}
                           (other keys are profile parameters; "engines": [i, ...] picks engines)
"""

_CONTROL_KEYS = ("profile", "engines")


def split_listen_address(address: str) -> tuple[str | None, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) into host and port."""
    parts = urlsplit("//" + address)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = None
    if (
        port is None
        or not address.rpartition(":")[2].isdigit()  # no sign or spaces, whatever Python
        or parts.netloc != address  # no path, query or fragment
        or parts.username is not None
    ):
        raise ValueError(f"listen address {address!r} is not host:port")
    return parts.hostname or None, port


class ControlError(ValueError):
    """A `/control` request that cannot be applied; the message is one line."""


def _metrics_response(engine: SimulatedEngine) -> web.Response:
    return web.Response(body=engine.render(), headers={"Content-Type": CONTENT_TYPE})


def _profile_state(index: int, engine: SimulatedEngine) -> dict[str, Any]:
    profile = engine.profile
    params = dataclasses.asdict(profile) if dataclasses.is_dataclass(profile) else {}
    return {
        "index": index,
        "profile": profile.name,
        "params": params,
        "sim_time": engine.sim_time,
        "demand_tokens_per_second": engine.demand_rate(engine.sim_time),
        "served_tokens_per_second": engine.served_rate(engine.sim_time),
    }


def _parse_control(body: Any, engines: list[SimulatedEngine]) -> dict[int, TrafficProfile]:
    """Validate a `/control` body into the new profile of each chosen engine."""
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    name = body.get("profile")
    if not isinstance(name, str):
        raise ControlError(f'"profile" must be one of {", ".join(PROFILE_NAMES)}')
    chosen = body.get("engines", list(range(len(engines))))
    if (
        not isinstance(chosen, list)
        or not chosen
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen)
    ):
        raise ControlError('"engines" must be a non-empty list of engine indices')
    bad = [i for i in chosen if not 0 <= i < len(engines)]
    if bad:
        raise ControlError(f"no engine {bad[0]}; there are {len(engines)}")
    params = {k: v for k, v in body.items() if k not in _CONTROL_KEYS}
    for key, value in params.items():
        # NaN would pass the profiles' range checks and poison every counter.
        if isinstance(value, float) and not math.isfinite(value):
            raise ControlError(f"{key} must be a finite number")
    profiles = {}
    for i in chosen:
        # Like `--profile spiky`: engines burst on their own seeds unless told otherwise.
        extra = {"seed": engines[i].seed} if name == "spiky" and "seed" not in params else {}
        try:
            profiles[i] = make_profile(name, **params, **extra)
        except ValueError as exc:
            raise ControlError(" ".join(str(exc).split())) from None
    return profiles


def build_simulator_app(engines: list[SimulatedEngine]) -> web.Application:
    """An aiohttp app serving the pages and ground truth of `engines`."""
    if not engines:
        raise ValueError("the simulator needs at least one engine")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=_HELP_TEXT.replace("{last}", str(len(engines) - 1)))

    async def metrics(_: web.Request) -> web.Response:
        return _metrics_response(engines[0])

    def engine_of(request: web.Request) -> SimulatedEngine:
        raw = request.match_info["index"]
        if not raw.isdigit() or int(raw) >= len(engines):
            raise web.HTTPNotFound(text=f"no engine {raw}; there are {len(engines)}\n")
        return engines[int(raw)]

    async def engine_metrics(request: web.Request) -> web.Response:
        return _metrics_response(engine_of(request))

    async def engine_document(request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        documents = engine_of(request).documents()
        if path not in documents:
            raise web.HTTPNotFound(text=f"no {path} on this engine\n")
        return web.json_response(documents[path])

    async def ground_truth(_: web.Request) -> web.Response:
        truth = [{"index": i, **engine.ground_truth()} for i, engine in enumerate(engines)]
        return web.json_response({"engines": truth})

    async def control_state(_: web.Request) -> web.Response:
        return web.json_response({"engines": [_profile_state(i, e) for i, e in enumerate(engines)]})

    async def control(request: web.Request) -> web.Response:
        """Swap traffic profiles at runtime: engines keep running, counters stay continuous."""
        try:
            body = json.loads(await request.text())
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON\n") from None
        try:
            profiles = _parse_control(body, engines)
        except ControlError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        for i, profile in profiles.items():
            # Serve up to now under the old profile, so the new one applies from now on.
            engines[i].advance()
            engines[i].profile = profile
        return web.json_response(
            {
                "changed": sorted(profiles),
                "engines": [_profile_state(i, e) for i, e in enumerate(engines)],
            }
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/engine/{index}/metrics", engine_metrics)
    app.router.add_get("/engine/{index}/{path:.+}", engine_document)
    app.router.add_get("/ground-truth", ground_truth)
    app.router.add_get("/control", control_state)
    app.router.add_post("/control", control)
    return app


async def serve_simulator(
    args: argparse.Namespace, engines: list[SimulatedEngine], host: str | None, port: int
) -> None:
    """Serve the simulated engines until cancelled."""
    runner = web.AppRunner(build_simulator_app(engines), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (host, port)
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        print(
            f"simulating {len(engines)} engine(s), {args.profile} profile "
            f"x{args.acceleration:g}, on http://{shown}:{bound[1]}/metrics",
            flush=True,
        )
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run_simulate(args: argparse.Namespace) -> int:
    """Blocking entry point for `llm-cost-exporter simulate`; a bad option is one line."""
    try:
        engines = build_engines_from_args(args)
        host, port = split_listen_address(args.listen_address)
    except ValueError as error:
        raise SystemExit(f"simulate: {error}") from None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_simulator(args, engines, host, port))
    except OSError as error:
        raise SystemExit(
            f"simulate: cannot listen on {args.listen_address}: {error.strerror or error}"
        ) from None
    return 0
