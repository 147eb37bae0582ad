"""Serve the `/metrics` pages of a whole simulated fleet from one process on loopback.

One HTTP server answers ``/nodes/<index>/metrics`` for every node; Prometheus
and vmagent scrape each path as its own target with the node's ``instance``
label (:meth:`Fleet.scrape_config`). Each page is the node's real exporter
page (see :mod:`fleet_render`) advanced to the instant of the request; a node
whose exporter is down answers 503, as a proxy in front of a dead one would.

``align`` makes a node's page the one of the scrape slot the request falls in
(counted from its first request, ``align`` seconds apart): Prometheus stamps
samples on its own schedule (within 2 ms), so the rates it computes are then
exactly the node's, which lets a test compare fleet totals to the cent.

Run as a script it serves N nodes until stopped, for a benchmark to measure
its CPU apart from everything else::

    python tests/realparts/fleet.py --nodes 1000 --port-file PATH
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "realparts"  # noqa: A001

from .fleet_nodes import NodeSpec, fleet_specs
from .fleet_render import NodePage, render_node
from .loopback_http import LoopbackHttp, QuietHandler

PATH_PREFIX = "/nodes/"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Fleet:
    """N nodes' pages, each built once by the exporter and advanced on request."""

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        t0: float | None = None,
        *,
        clock: Callable[[], float] = time.time,
        align: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.t0 = clock() if t0 is None else t0
        self.align = align
        self.pages: list[NodePage] = []
        for spec in specs:
            self.pages.append(render_node(spec, self.t0))
            if progress:
                progress(len(self.pages))
        self._first: dict[int, float] = {}
        self._lock = threading.Lock()
        self.served = 0

    @classmethod
    def of(cls, pages: Sequence[NodePage], *, clock: Callable[[], float] = time.time) -> Fleet:
        """A fleet of pages already rendered (a part of a larger fleet, say)."""
        fleet = cls([], t0=min((p.t0 for p in pages), default=0.0), clock=clock)
        fleet.pages = list(pages)
        return fleet

    @property
    def specs(self) -> list[NodeSpec]:
        return [p.spec for p in self.pages]

    def instant(self, index: int, t: float) -> float:
        """The instant node ``index``'s page is computed for, asked at ``t``."""
        if self.align is None:
            return t
        with self._lock:
            first = self._first.setdefault(index, t)
        return first + round((t - first) / self.align) * self.align

    def page(self, index: int, t: float | None = None) -> bytes | None:
        """Node ``index``'s page now (or at ``t``); None while its exporter is down."""
        page = self.pages[index]
        if page.spec.down:
            return None
        self.served += 1
        return page.render(self.instant(index, self.clock() if t is None else t))

    def up(self) -> list[NodeSpec]:
        return [p.spec for p in self.pages if not p.spec.down]

    def hourly_cost(self) -> float:
        """What the answering nodes cost an hour: the truth for the fleet's cost rate."""
        return math.fsum(s.hourly_cost for s in self.up())

    def scrape_config(self, url: str, job: str = "llm-cost", interval: str = "15s") -> dict:
        """One scrape job for Prometheus or vmagent: a target per node, named by it."""
        host = url.removeprefix("http://")
        return {
            "job_name": job,
            "scrape_interval": interval,
            "static_configs": [
                {
                    "targets": [host],
                    "labels": {
                        "__metrics_path__": f"{PATH_PREFIX}{s.index}/metrics",
                        "instance": s.instance,
                    },
                }
                for s in self.specs
            ],
        }


class _Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        fleet: Fleet = self.server.owner
        parts = self.path.split("/")
        body: bytes | None = None
        status = 404
        if len(parts) == 4 and self.path.startswith(PATH_PREFIX) and parts[3] == "metrics":
            try:
                index = int(parts[2])
            except ValueError:
                index = -1
            if 0 <= index < len(fleet.pages):
                body = fleet.page(index)
                status = 200 if body is not None else 503
        body = body if body is not None else f"{status}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A scraper that stopped mid-answer asks again at its next scrape.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class FleetServer(LoopbackHttp):
    """The fleet's pages over HTTP on 127.0.0.1 (a context manager, or start/stop)."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(_Handler, fleet, name="fleet")
        self.fleet = fleet


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    started = time.process_time()
    fleet = Fleet(fleet_specs(args.nodes))
    rendered = time.process_time() - started
    server = FleetServer(fleet).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Written last and whole: the reader waits for it to exist.
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(f"{server.url} {rendered:.3f}\n")
    tmp.rename(args.port_file)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
