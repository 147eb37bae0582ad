"""Deterministic `/metrics` pages for the golden tests.

Three nodes, each driven through the real collection loop with a fixed clock
and fixed inputs (real vLLM pages, fixed NVML readings): a rented node with
two engines, an unpriced model and a dead engine, an owned node with GPUs
read through NVML, and that node on Kubernetes, the kubelet naming the pods
that hold its GPUs. The page is what `/metrics` serves, less the process
metrics (they describe the test process) and with the build version replaced
by a placeholder.

Regenerate after an intended change of the page, and review the diff:

    python tests/golden_pages.py --write
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

from conftest import fixture_page  # noqa: E402
from realparts.kubelet import Pod, pod, response  # noqa: E402

from llm_cost_exporter.accounting.costmodel import ApiPrices  # noqa: E402
from llm_cost_exporter.accounting.gpu_inventory import build_inventory  # noqa: E402
from llm_cost_exporter.accounting.node import NodeState  # noqa: E402
from llm_cost_exporter.collectors.base import CollectorError  # noqa: E402
from llm_cost_exporter.collectors.kubelet.devices import pod_devices  # noqa: E402
from llm_cost_exporter.collectors.readings import (  # noqa: E402
    GpuReading,
    GpuSnapshot,
    MigInstance,
    PodDevices,
)
from llm_cost_exporter.collectors.vllm import VllmCollector  # noqa: E402
from llm_cost_exporter.config import config_from_mapping  # noqa: E402
from llm_cost_exporter.config.settings import DEFAULT_POD_RESOURCES_SOCKET  # noqa: E402
from llm_cost_exporter.daemon.assembly import resolve_prices  # noqa: E402
from llm_cost_exporter.daemon.loop import CollectionLoop  # noqa: E402
from llm_cost_exporter.outputs.base import Output  # noqa: E402
from llm_cost_exporter.outputs.prometheus import PrometheusPage  # noqa: E402

GOLDEN = TESTS / "golden"
WALL_START = 1_795_340_000.0
"""2026-11-21 08:53:20 UTC: after the fixture engines' `_created` time."""
CYCLE_TIMES = (1000.0, 1060.0, 1360.0)
VERSION_PLACEHOLDER = "(version)"


class _Clock:
    def __init__(self) -> None:
        self.now = CYCLE_TIMES[0]

    def __call__(self) -> float:
        return self.now


class _FixturePages:
    """A PageSource answering each cycle with a fixed page, or a CollectorError."""

    def __init__(self, answers: list[Callable[[], str]]) -> None:
        self._answers = answers
        self.cycle = 0

    async def read(self, feed: Callable[[bytes], None]) -> None:
        feed(self._answers[self.cycle]().encode())


class _FixedGpus:
    """A GpuCollector answering each cycle with a fixed snapshot."""

    name = "nvml"
    target = "local"

    def __init__(self, snapshots: list[GpuSnapshot]) -> None:
        self._snapshots = snapshots
        self.cycle = 0

    async def collect(self) -> GpuSnapshot:
        return self._snapshots[self.cycle]


class _FixedPods:
    """A pod-resources collector whose kubelet answers each cycle with fixed pods, or
    fails."""

    name = "pod_resources"
    target = DEFAULT_POD_RESOURCES_SOCKET

    def __init__(self, answers: list[list[Pod] | CollectorError]) -> None:
        self._answers = answers
        self.cycle = 0

    def wanted(self) -> bool:
        return True

    async def collect(self) -> PodDevices:
        answer = self._answers[self.cycle]
        if isinstance(answer, CollectorError):
            raise answer
        return pod_devices(response(answer))


def _page(name: str) -> Callable[[], str]:
    text = fixture_page(name)
    return lambda: text


def _grown(name: str, factor: float) -> Callable[[], str]:
    """A fixture page with every vLLM token and request counter scaled by `factor`."""
    scaled = re.compile(
        r"^(vllm:(?:prompt_tokens|generation_tokens|prompt_tokens_cached|prefix_cache_hits"
        r"|prompt_tokens_by_source|prompt_tokens_cached_by_source|request_success"
        r"|num_preemptions)_total\{[^}]*\}) (\S+)$",
        re.M,
    )
    text = scaled.sub(lambda m: f"{m.group(1)} {float(m.group(2)) * factor!r}", fixture_page(name))
    return lambda: text


def _serving(name: str, model: str) -> Callable[[], str]:
    """A fixture page whose one model is called `model`."""
    text = re.sub(r'model_name="[^"]*"', f'model_name="{model}"', fixture_page(name))
    return lambda: text


def _down(reason: str, message: str) -> Callable[[], str]:
    def answer() -> str:
        raise CollectorError(reason, message)

    return answer


def _run(
    state: NodeState,
    engines: dict[str, list[Callable[[], str]]],
    gpus: _FixedGpus | None = None,
    pods: _FixedPods | None = None,
    outputs: Sequence[Output] = (),
) -> bytes:
    """The page after the fixed cycles; `outputs` get every cycle's families beside it."""
    clock = _Clock()
    sources = {url: _FixturePages(answers) for url, answers in engines.items()}
    collectors = [VllmCollector(url, source) for url, source in sources.items()]
    page = PrometheusPage()
    loop = CollectionLoop(
        state,
        collectors,
        gpus,
        [page, *outputs],
        interval=5.0,
        timeout=3.0,
        clock=clock,
        pods=pods,
    )
    for cycle, now in enumerate(CYCLE_TIMES):
        clock.now = now
        for source in [*sources.values(), *[s for s in (gpus, pods) if s]]:
            source.cycle = cycle
        asyncio.run(loop.run_once())
    return page.body


def rented_node(outputs: Sequence[Output] = ()) -> bytes:
    """Two engines on one A100 each, a third that is down, one model without a price."""
    config = config_from_mapping(
        {
            "engines": [
                {"url": "http://127.0.0.1:8000/metrics", "gpus": [0]},
                {
                    "url": "http://127.0.0.1:8001/metrics",
                    "gpus": [1],
                    "capacity_tokens_per_second": 5000,
                },
                {"url": "http://127.0.0.1:8002/metrics", "gpus": [2]},
            ],
            "nvml": {"enabled": False},
            "cost": {
                "gpus": [{"model": "A100-80GB", "count": 3}],
                "gpu_prices_per_hour": {"A100-80GB": 3.20},
                "node_extra_per_hour": 0.40,
                "overhead_ratio": 0.3,
                "fixed_per_month": 730,
            },
            "api_prices": {
                "models": {"tiny-llama": {"input": 0.80, "cached_input": 0.08, "output": 4.00}}
            },
            "capacity": {"tokens_per_second": 8000},
            "projection": {
                "utilization": 0.6,
                "tokens_per_month": 5e9,
                "cost_per_million_tokens": 0.75,
                "token_mix": {"prompt": 0.6, "cached_prompt": 0.1, "generation": 0.3},
            },
            "windows": ["5m", "1h"],
        }
    )
    models, default = resolve_prices(config)
    state = NodeState(config, models, default, wall_clock=lambda: WALL_START)
    engines = {
        "http://127.0.0.1:8000/metrics": [
            _page("vllm-0.32.0-cpu-idle.prom"),
            _page("vllm-0.32.0-cpu-busy.prom"),
            _grown("vllm-0.32.0-cpu-busy.prom", 3.0),
        ],
        "http://127.0.0.1:8001/metrics": [
            _page("vllm-0.10.0-dp2-reconstructed.prom"),
            _grown("vllm-0.10.0-dp2-reconstructed.prom", 2.0),
            _grown("vllm-0.10.0-dp2-reconstructed.prom", 3.0),
        ],
        "http://127.0.0.1:8002/metrics": [_down("connection", "Connection refused")] * 2
        + [_down("timeout", "no answer")],
    }
    return _run(state, engines, outputs=outputs)


def _gpu(index: int, cycle: int, **extra: object) -> GpuReading:
    fields: dict[str, object] = {
        "index": index,
        "uuid": f"GPU-0000000{index}-1111-2222-3333-444444444444",
        "name": "NVIDIA H100 80GB HBM3",
        "busy_utilization": 0.9 - 0.2 * index,
        "memory_used_bytes": 60e9 + index * 1e9,
        "memory_total_bytes": 85899345920.0,
        "power_watts": 500.0 + 25 * cycle,
        "energy_joules": 1.0e9 + cycle * 30_000.0 * (index + 1),
        "temperature_celsius": 61.0 + index,
        "sm_clock_hertz": 1.98e9,
        "clock_event_reasons": 0x4 if index else 0x0,
        "sm_activity": 0.55 - 0.1 * index,
        "sm_occupancy": 0.3,
        "mig_enabled": False,
        "supported": {"busy_utilization": True, "gpm": True, "mig": True, "energy": True},
    }
    fields.update(extra)
    return GpuReading(**fields)  # type: ignore[arg-type]


def _snapshot(cycle: int) -> GpuSnapshot:
    mig = (
        MigInstance("MIG-aaaaaaaa-0000-1111-2222-333333333333", 1, 10e9, 20e9),
        MigInstance("MIG-bbbbbbbb-0000-1111-2222-333333333333", 2, None, 20e9),
    )
    gpus = [_gpu(0, cycle), _gpu(1, cycle, mig_enabled=True, mig_instances=mig, mig_slices=7)]
    if cycle == 2:
        gpus[1] = _gpu(1, cycle, healthy=False, error="gpu_lost", busy_utilization=None)
    return GpuSnapshot("550.54.15", tuple(gpus))


def owned_node(
    pods: _FixedPods | None = None, outputs: Sequence[Output] = (), optional: bool = True
) -> bytes:
    """Two bought H100s read through NVML (one lost in the last cycle), one engine; with
    the optional families unless ``optional`` is false."""
    config = config_from_mapping(
        {
            "engines": [{"url": "http://127.0.0.1:8000/metrics"}],
            "cost": {
                "gpus": [{"model": "H100", "count": 2}],
                "owned": {
                    "purchase_prices": {"H100": 30000},
                    "amortization_months": 36,
                    "energy_price_per_kwh": 0.15,
                    "pue": 1.3,
                },
                "overhead_ratio": 0.25,
            },
            "api_prices": {"default": {"input": 0.80, "cached_input": 0.08, "output": 4.00}},
            "capacity": {"learn": True, "learn_window": "1m"},
            "windows": ["1m", "5m"],
            # The optional families, so a golden page holds every family there is.
            "metrics": {"gpu_diagnostics": optional, "model_gauges": optional},
        }
    )
    inventory = build_inventory(
        [(g.index, g.uuid, g.name) for g in _snapshot(0).gpus],
        [(g.model, g.count) for g in config.cost.gpus],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    state = NodeState(
        config,
        {},
        ApiPrices(0.80, 0.08, 4.00),
        wall_clock=lambda: WALL_START,
        gpus=inventory,
    )
    engines = {
        "http://127.0.0.1:8000/metrics": [
            _page("vllm-0.32.0-cpu-idle.prom"),
            _page("vllm-0.32.0-cpu-busy.prom"),
            _grown("vllm-0.32.0-cpu-busy.prom", 2.0),
        ]
    }
    return _run(state, engines, _FixedGpus([_snapshot(c) for c in range(3)]), pods, outputs)


def kubernetes_node(outputs: Sequence[Output] = ()) -> bytes:
    """The owned node on Kubernetes: GPU 0 held by the engine's pod, GPU 1's MIG devices
    by a 3g notebook and, from the second cycle, a 2g job; the kubelet does not
    answer in the last cycle (its last answer stands)."""
    gpu0, gpu1 = (g.uuid for g in _snapshot(0).gpus)
    mig_a, mig_b = (m.uuid for m in _snapshot(0).gpus[1].mig_instances)
    serving = pod("serving", "vllm-0", gpu0)
    notebook = pod("research", "notebook-7", mig_a, resource="nvidia.com/mig-3g.40gb")
    job = pod("research", "eval-job", mig_b, resource="nvidia.com/mig-2g.20gb")
    restarting = CollectorError("connection", "UNAVAILABLE: the kubelet is restarting")
    return owned_node(
        _FixedPods([[serving, notebook], [serving, notebook, job], restarting]), outputs
    )


SCENARIOS: dict[str, Callable[[], bytes]] = {
    "rented-node.prom": rented_node,
    "owned-node.prom": owned_node,
    "kubernetes-node.prom": kubernetes_node,
}


def sized_node(engines: int, gpus: int, models: int | None = None) -> bytes:
    """A rented node of ``engines`` engines on ``gpus`` H100s, read through NVML, as a
    fleet would hold it: each engine serves the real busy vLLM 0.32 page under its
    model's name (``models`` distinct names, one per engine by default; idle, then
    busy), every GPU healthy. What one node costs in series is measured on it."""
    models = models or engines
    names = [f"model-{i % models}" for i in range(engines)]
    config = config_from_mapping(
        {
            "engines": [
                {"url": f"http://127.0.0.1:{8000 + i}/metrics", "gpus": [i % gpus]}
                for i in range(engines)
            ],
            "cost": {
                "gpus": [{"model": "H100", "count": gpus}],
                "gpu_prices_per_hour": {"H100": 2.50},
                "overhead_ratio": 0.3,
            },
            "api_prices": {"default": {"input": 0.80, "cached_input": 0.08, "output": 4.00}},
            "capacity": {"tokens_per_second": 2000 * gpus},
        }
    )
    snapshots = [
        GpuSnapshot("550.54.15", tuple(_gpu(i, cycle) for i in range(gpus))) for cycle in range(3)
    ]
    inventory = build_inventory(
        [(g.index, g.uuid, g.name) for g in snapshots[0].gpus],
        [(g.model, g.count) for g in config.cost.gpus],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    state = NodeState(
        config, {}, ApiPrices(0.80, 0.08, 4.00), wall_clock=lambda: WALL_START, gpus=inventory
    )
    # Idle, then busy in the last cycle: the windows have traffic, so every live figure
    # a serving node exports is there.
    pages = {
        f"http://127.0.0.1:{8000 + i}/metrics": [
            *[_serving("vllm-0.32.0-cpu-idle.prom", name)] * (len(CYCLE_TIMES) - 1),
            _serving("vllm-0.32.0-cpu-busy.prom", name),
        ]
        for i, name in enumerate(names)
    }
    return _run(state, pages, _FixedGpus(snapshots))


def normalized(page: bytes) -> bytes:
    """The page less the process metrics, the build version replaced by a placeholder."""
    lines = [
        line
        for line in page.decode().splitlines(keepends=True)
        if not re.match(r"(# (HELP|TYPE) )?process_", line)
    ]
    text = "".join(lines)
    text = re.sub(
        r'^llmcost_build_info\{version="[^"]*"\}',
        f'llmcost_build_info{{version="{VERSION_PLACEHOLDER}"}}',
        text,
        flags=re.M,
    )
    return text.encode()


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    GOLDEN.mkdir(exist_ok=True)
    for name, scenario in SCENARIOS.items():
        (GOLDEN / name).write_bytes(normalized(scenario()))
        print(GOLDEN / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
