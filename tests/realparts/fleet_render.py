"""A simulated node's `/metrics` page, rendered by the exporter itself and advanced cheaply.

Running the exporter's collection loop for every node of a 1,000-node fleet at
every scrape would cost more CPU than the machine has, so each node is
rendered a few times by the exporter's own loop and page (its engines serving
the traffic simulator's pages, read by the real collectors; its GPUs given as
NVML snapshots) and then advanced by arithmetic. The exporter's accounting is
linear in elapsed time and in tokens served, so every counter on the page is
``base + a * (t - t0) + b * (x(t) - x0)``, where ``x`` is the node's traffic in
level-seconds: four cycles measure ``a`` and ``b`` per series (a warm-up, the
base page at ``t0``, then from two copies of that state: ``dt`` later with no
traffic, and ``dt`` later with ``dx`` more). Gauges and the page's layout are
the base page's. Counters the exporter prints as whole numbers are served
rounded down, so they stay whole and monotonic.

:func:`NodePage.check` runs the exporter on to a later instant and compares its
page with the arithmetic, which is what keeps this honest.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.accounting.gpu_inventory import build_inventory
from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.readings import GpuReading, GpuSnapshot
from llm_cost_exporter.collectors.registry import engine_collector
from llm_cost_exporter.config import config_from_mapping
from llm_cost_exporter.daemon.loop import CollectionLoop
from llm_cost_exporter.outputs.prometheus import PrometheusPage
from llm_cost_exporter.tools.simulator.formats import page_template
from llm_cost_exporter.tools.simulator.page import PageState

from .fleet_nodes import API_PRICES, OVERHEAD_RATIO, UNIT_TOKENS, EngineSpec, NodeSpec

CYCLE_SECONDS = 5.0
"""The exporter's default collection interval: the probes are one cycle apart."""
PROBE_TRAFFIC = 1000.0
"""Level-seconds added in the traffic probe (a multiple of 100: whole requests)."""
BOOTED_BEFORE = 2 * 86400
"""The engines started this long before the fleet: counters do not begin at 0."""
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
COUNTER_TYPES = ("counter", "histogram", "summary")
EXPORTER_CPU_SHARE = 0.004
"""CPU seconds per second of a node's exporter (the daemon benchmark's figure): the
rendering process's own process metrics describe it, not a node's exporter."""


class _Now:
    """The instant and traffic the node's sources answer for, set before each cycle."""

    def __init__(self) -> None:
        self.t = 0.0
        self.x = 0.0  # level-seconds since the engines started

    def __call__(self) -> float:
        return self.t


class _EnginePage:
    """A PageSource serving the traffic simulator's page of one engine at `now`."""

    def __init__(self, spec: EngineSpec, booted: float, now: _Now) -> None:
        self.spec, self.booted, self.now = spec, booted, now
        self.template = page_template(spec.page_format)

    def state(self) -> PageState:
        spec = self.spec
        requests = round(spec.capacity * self.now.x / UNIT_TOKENS)
        prompt, cached, generation = (n * requests for n in spec.mix)
        running = max(1, spec.capacity // 60)
        return PageState(
            model=spec.model,
            prompt_tokens=prompt,
            cached_prompt_tokens=cached,
            generation_tokens=generation,
            finished_prompt_tokens=prompt,
            finished_cached_prompt_tokens=cached,
            finished_generation_tokens=generation,
            requests_stop=requests - requests // 5,
            requests_length=requests // 5,
            running=running,
            waiting=0,
            used_blocks=running * 64,
            num_gpu_blocks=16384,
            block_size=16,
            start_time=self.booted,
            now=self.now.t,
        )

    async def read(self, feed: Callable[[bytes], None]) -> None:
        if self.spec.down:
            raise CollectorError("connection", "Connection refused")
        feed(self.template.render(self.state()))

    async def read_json(self, path: str) -> object:
        if self.spec.down:
            raise CollectorError("connection", "Connection refused")
        documents = self.template.documents(self.state())
        if path not in documents:
            raise CollectorError("http_status", f"404 for {path}")
        return documents[path]


class _Gpus:
    """An NVML collector answering with the node's GPUs, drawing constant power."""

    name = "nvml"
    target = "local"

    def __init__(self, spec: NodeSpec, booted: float, now: _Now) -> None:
        self.spec, self.booted, self.now = spec, booted, now

    def uuid(self, index: int) -> str:
        return f"GPU-{self.spec.index:08x}-{index:04x}-4000-8000-000000000000"

    async def collect(self) -> GpuSnapshot:
        spec, gpu = self.spec, self.spec.gpu
        readings = tuple(
            GpuReading(
                index=i,
                uuid=self.uuid(i),
                name=gpu.nvml_name,
                busy_utilization=0.35 + 0.6 * spec.peak * ((i % 3) + 1) / 3,
                memory_used_bytes=gpu.memory_bytes * 0.82,
                memory_total_bytes=gpu.memory_bytes,
                power_watts=gpu.power_watts,
                energy_joules=gpu.power_watts * (self.now.t - self.booted),
                temperature_celsius=55.0 + i,
                sm_clock_hertz=1.7e9,
                clock_event_reasons=0,
                mig_enabled=False,
                supported={"busy_utilization": True, "gpm": False, "mig": True, "energy": True},
            )
            for i in range(spec.gpu_count)
        )
        return GpuSnapshot("570.124.06", readings)


def node_config(spec: NodeSpec) -> dict:
    """The node's exporter configuration, as its operator would write it."""
    return {
        "engines": [
            {
                "url": f"http://127.0.0.1:{8000 + i}/metrics",
                "type": e.engine_type,
                "gpus": list(e.gpus),
                "capacity_tokens_per_second": e.capacity,
            }
            for i, e in enumerate(spec.engines)
        ],
        "cost": {
            "gpus": [{"model": spec.gpu.key, "count": spec.gpu_count}],
            "gpu_prices_per_hour": {spec.gpu.key: spec.price_per_hour},
            "overhead_ratio": OVERHEAD_RATIO,
        },
        "api_prices": {"default": dict(API_PRICES)},
    }


@dataclass
class _Line:
    """One sample line of the base page: its text before the value, and its model."""

    head: str
    base: float
    per_second: float
    per_traffic: float
    whole: bool


@dataclass(frozen=True)
class Series:
    """One series of the base page: its family and type, and its value (a counter's
    model, or a gauge's constant)."""

    family: str
    kind: str
    head: str
    value: _Line | float


@dataclass
class NodePage:
    """A node's page at any instant from ``t0`` on, and what it was built from."""

    spec: NodeSpec
    t0: float
    x0: float  # traffic at t0 (level-seconds since the engines started)
    booted: float
    parts: list[str | _Line]
    series: list[Series]
    loop: CollectionLoop
    now: _Now
    mismatches: list[str] = field(default_factory=list)

    @property
    def counters(self) -> list[_Line]:
        return [p for p in self.parts if isinstance(p, _Line)]

    def traffic(self, t: float) -> float:
        return self.spec.traffic(t) - self.spec.traffic(self.booted)

    def values(self, t: float) -> list[float]:
        """Every counter's value at ``t`` (>= t0), in page order."""
        dt, dx = t - self.t0, self.traffic(t) - self.x0
        out = []
        for line in self.counters:
            v = line.base + line.per_second * dt + line.per_traffic * dx
            out.append(math.floor(v) if line.whole else v)
        return out

    def render(self, t: float) -> bytes:
        """The page at ``t``: the base page with every counter advanced to ``t``."""
        dt, dx = t - self.t0, self.traffic(t) - self.x0
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v = part.base + part.per_second * dt + part.per_traffic * dx
            out.append(f"{part.head} {floatToGoString(math.floor(v) if part.whole else v)}\n")
        return "".join(out).encode()

    def check(self, t: float) -> float:
        """Run the exporter itself on to ``t``, a cycle every CYCLE_SECONDS as the daemon
        does, and return the largest difference between its counters and the
        arithmetic's, relative to the value; those above 1e-9 are kept in
        ``mismatches``. The node's exporter state moves to ``t``: call with increasing
        ``t``, whole cycles after ``t0``."""
        now = self.now
        body = ""
        while now.t + CYCLE_SECONDS <= t + 1e-6:
            at = now.t + CYCLE_SECONDS
            body = _cycle(self.loop, now, at, _whole_requests(self.traffic(at)))
        real = _sample_values(body)
        dt, dx = now.t - self.t0, now.x - self.x0
        worst = 0.0
        for line in self.counters:
            if line.head.startswith("process_"):
                continue
            predicted = line.base + line.per_second * dt + line.per_traffic * dx
            actual = real.get(line.head)
            if actual is None:
                self.mismatches.append(f"{line.head}: gone at {now.t}")
                continue
            error = abs(actual - predicted) / max(1.0, abs(actual))
            worst = max(worst, error)
            if error > 1e-9:
                self.mismatches.append(f"{line.head}: exporter {actual!r}, served {predicted!r}")
        return worst


def _whole_requests(x: float) -> float:
    """Traffic rounded down to level-seconds that are whole requests of every engine."""
    return math.floor(x / 100.0) * 100.0


def _sample_values(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            out[head] = float(value)
    return out


def _cycle(loop: CollectionLoop, now: _Now, t: float, x: float) -> str:
    now.t, now.x = t, x
    asyncio.run(loop.run_once())
    return loop.outputs[0].body.decode()


def _copy_loop(loop: CollectionLoop, now: _Now) -> CollectionLoop:
    """A loop over a copy of `loop`'s node state, sharing its (stateless) collectors."""
    return CollectionLoop(
        copy.deepcopy(loop.state),
        loop.engines,
        loop.gpus,
        [PrometheusPage()],
        interval=CYCLE_SECONDS,
        timeout=3.0,
        clock=now,
    )


def render_node(spec: NodeSpec, t0: float) -> NodePage:
    """Build node ``spec``'s exporter at ``t0`` and measure its counters' rates."""
    booted = t0 - BOOTED_BEFORE - 600 * (spec.index % 97)
    now = _Now()
    now.t = booted
    config = config_from_mapping(node_config(spec))
    gpus = _Gpus(spec, booted, now)
    inventory = build_inventory(
        [(i, gpus.uuid(i), spec.gpu.nvml_name) for i in range(spec.gpu_count)],
        [(g.model, g.count) for g in config.cost.gpus],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    prices = ApiPrices(API_PRICES["input"], API_PRICES["cached_input"], API_PRICES["output"])
    state = NodeState(config, {}, prices, wall_clock=now, gpus=inventory)
    collectors = [
        engine_collector(e.engine_type, c.url, _EnginePage(e, booted, now))
        for e, c in zip(spec.engines, config.engines, strict=True)
    ]
    loop = CollectionLoop(
        state,
        collectors,
        gpus,
        [PrometheusPage()],
        interval=CYCLE_SECONDS,
        timeout=3.0,
        clock=now,
    )
    traffic = lambda t: spec.traffic(t) - spec.traffic(booted)  # noqa: E731
    x0 = _whole_requests(traffic(t0))
    warm = max(0.0, _whole_requests(traffic(t0 - CYCLE_SECONDS)))
    _cycle(loop, now, t0 - CYCLE_SECONDS, min(warm, x0))
    base = _cycle(loop, now, t0, x0)
    idle = _sample_values(_cycle(_copy_loop(loop, now), now, t0 + CYCLE_SECONDS, x0))
    busy = _sample_values(
        _cycle(_copy_loop(loop, now), now, t0 + CYCLE_SECONDS, x0 + PROBE_TRAFFIC)
    )
    now.t, now.x = t0, x0
    parts = _parts(base, idle, busy)
    return NodePage(spec, t0, x0, booted, parts, _series(parts), loop, now)


def _parts(base: str, idle: dict[str, float], busy: dict[str, float]) -> list[str | _Line]:
    """The base page cut into static text and counter lines with their rates."""
    parts: list[str | _Line] = []
    static: list[str] = []
    kind = ""
    for line in base.splitlines():
        if line.startswith("# TYPE "):
            kind = line.split()[3]
        if line.startswith("#") or not line or kind not in COUNTER_TYPES:
            static.append(line + "\n")
            continue
        head, _, text = line.rpartition(" ")
        value = float(text)
        at_idle, at_busy = idle.get(head, value), busy.get(head, value)
        per_second = (at_idle - value) / CYCLE_SECONDS
        per_traffic = (at_busy - at_idle) / PROBE_TRAFFIC
        if head.startswith("process_"):
            at_idle = at_busy = value
            per_second, per_traffic = (EXPORTER_CPU_SHARE, 0.0) if "cpu" in head else (0.0, 0.0)
        if per_second < 0 or per_traffic < 0:
            raise AssertionError(f"{head} fell between cycles: {value}, {at_idle}, {at_busy}")
        if static:
            parts.append("".join(static))
            static = []
        whole = all(float(v).is_integer() for v in (value, at_idle, at_busy))
        parts.append(_Line(head, value, per_second, per_traffic, whole))
    if static:
        parts.append("".join(static))
    return parts


def _series(parts: list[str | _Line]) -> list[Series]:
    """Every series of the page in order, with its family (as its TYPE line names it)."""
    out: list[Series] = []
    counters = iter(p for p in parts if isinstance(p, _Line))
    family, kind = "", "untyped"
    for line in "".join(p if isinstance(p, str) else f"{p.head} counter\n" for p in parts).split(
        "\n"
    ):
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            continue
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if kind in COUNTER_TYPES:
            out.append(Series(family, kind, head, next(counters)))
        else:
            out.append(Series(family, kind, head, float(value)))
    return out
