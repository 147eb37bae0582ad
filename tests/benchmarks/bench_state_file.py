"""What writing the state file every cycle costs, against the cycle's own rendering.

A node of 8 engines, each serving several models, on 8 NVML GPUs, driven through
a few cycles in-process. Measured, median of many runs:

- on the event loop: taking the snapshot (`StateFile.document`);
- in the writer thread: JSON encoding, and the atomic write (temporary file,
  fsync, rename, fsync of the directory) into a temporary directory;
- the reference, in the same run: the rest of a cycle's work on the loop,
  accruing (`NodeState.advance`) and rendering the page (`node_families` and
  `PrometheusPage.publish`);
- the event loop's longest stall while 100 saves run back to back, against
  the same ticker with no save running (median of 5 alternating rounds).

    python tests/benchmarks/bench_state_file.py [--engines 8] [--models 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from golden_pages import _gpu  # noqa: E402

from llm_cost_exporter.accounting.costmodel import ApiPrices  # noqa: E402
from llm_cost_exporter.accounting.gpu_inventory import build_inventory  # noqa: E402
from llm_cost_exporter.accounting.node import NodeState  # noqa: E402
from llm_cost_exporter.collectors.readings import EngineReading, GpuSnapshot  # noqa: E402
from llm_cost_exporter.config import config_from_mapping  # noqa: E402
from llm_cost_exporter.daemon.state_file import StateFile, write_atomically  # noqa: E402
from llm_cost_exporter.outputs.node_families import node_families  # noqa: E402
from llm_cost_exporter.outputs.prometheus import PrometheusPage  # noqa: E402

GPUS = 8


def build_node(path: Path, engines: int, models: int) -> NodeState:
    config = config_from_mapping(
        {
            "engines": [
                {"url": f"http://127.0.0.1:{8000 + i}/metrics", "gpus": [i]} for i in range(engines)
            ],
            "cost": {
                "gpus": [{"model": "H100", "count": GPUS}],
                "gpu_prices_per_hour": {"H100": 2.49},
                "node_extra_per_hour": 1.1,
            },
            "api_prices": {"default": {"input": 0.8, "output": 4.0}},
            "windows": ["5m", "1h"],
            "limits": {"models_per_node": max(engines * models, 16)},
            "state_file": str(path),
        }
    )
    inventory = build_inventory(
        [
            (i, f"GPU-{i:08d}-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3")
            for i in range(GPUS)
        ],
        [(g.model, g.count) for g in config.cost.gpus],
        config.cost.gpu_hourly_by_key,
        nvml_available=True,
    )
    return NodeState(config, {}, ApiPrices(0.8, 0.8, 4.0), gpus=inventory)


def run_cycle(state: NodeState, cycle: int, engines: int, models: int) -> None:
    for engine in range(engines):
        readings = [
            EngineReading(
                f"model-{engine}-{m}",
                "0",
                1e6 * cycle,
                2e5 * cycle,
                3e5 * cycle,
                4,
                1,
                0.3,
                1e6,
                3e5,
                1.7e9,
            )  # fmt: skip
            for m in range(models)
        ]
        state.record_engine_readings(
            "vllm", f"http://127.0.0.1:{8000 + engine}/metrics", readings, 0.01
        )
    gpus = tuple(
        _gpu(i, cycle, uuid=f"GPU-{i:08d}-1111-2222-3333-444444444444") for i in range(GPUS)
    )
    state.record_gpu_snapshot("nvml", "local", GpuSnapshot("550", gpus), 0.01, cycle * 5.0)
    state.advance(cycle * 5.0)


def median_ms(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def longest_stall(save, saves: int) -> float:
    """The event loop's longest delay of a 1 ms ticker while `save` runs `saves` times."""
    stalls = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - before - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    for _ in range(saves):
        await save()
    stop.set()
    await task
    return max(stalls) * 1000


async def idle(saves: int) -> float:
    async def nothing() -> None:
        await asyncio.sleep(0.002)

    return await longest_stall(nothing, saves)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=8)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.json"
        state = build_node(path, args.engines, args.models)
        for cycle in range(1, 13):
            run_cycle(state, cycle, args.engines, args.models)
        state_file = StateFile(path)
        page = PrometheusPage()
        _, document = state_file.document(state, time.time())
        text = json.dumps(document, allow_nan=False)

        cycle = [13]

        def render() -> None:
            state.advance(cycle[0] * 5.0)
            cycle[0] += 1
            page.publish(node_families(state))

        snapshot = median_ms(lambda: state_file.document(state, time.time()), args.runs)
        encode = median_ms(lambda: json.dumps(document, allow_nan=False), args.runs)
        write = median_ms(lambda: write_atomically(path, text), args.runs)
        reference = median_ms(render, args.runs)
        quiet, busy = [], []
        for _ in range(5):  # alternating, so load from elsewhere weighs on both alike
            quiet.append(asyncio.run(idle(100)))
            busy.append(
                asyncio.run(longest_stall(lambda: state_file.save(state, timeout=1.0), 100))
            )

    print(f"node: {args.engines} engines x {args.models} models, {GPUS} GPUs")
    print(f"state file: {len(text):,} bytes")
    print(f"on the loop   snapshot              {snapshot:7.3f} ms")
    print(f"in the thread JSON encoding         {encode:7.3f} ms")
    print(f"in the thread atomic write + fsyncs {write:7.3f} ms")
    print(f"reference     advance + render page {reference:7.3f} ms")
    print(f"snapshot / reference: {snapshot / reference:.4f}x")
    print(
        f"longest loop stall (median of 5 rounds): {statistics.median(busy):.2f} ms during "
        f"100 saves, {statistics.median(quiet):.2f} ms with none"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
