"""`--demo`: the real exporter against an in-process simulated node.

A new user with no GPU and no engine sees live figures at once: two simulated
engines of two kinds (a vLLM serving a diurnal B2B model and an SGLang serving
a spiky one, an hour of traffic every minute, at real-time token rates), each
on its own A100, compared with a small frontier API model. The A100s are
simulated too: each follows the load of the engine on it, read by a GPU collector
named `simulated_gpu` in place of NVML, so the demo never reads the host's GPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import ClassVar

from aiohttp import web

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.collectors.readings import (
    CLOCK_EVENT_REASONS,
    FEATURES,
    GpuReading,
    GpuSnapshot,
)
from llm_cost_exporter.collectors.sglang import SglangCollector
from llm_cost_exporter.collectors.vllm import VllmCollector
from llm_cost_exporter.config import Config, config_from_mapping, split_listen_address
from llm_cost_exporter.daemon.assembly import serve
from llm_cost_exporter.tools.simulator.engine import SimulatedEngine
from llm_cost_exporter.tools.simulator.gpus import (
    LLAMA_3_1_8B,
    QWEN_2_5_7B,
    GpuState,
    SimulatedGpu,
)
from llm_cost_exporter.tools.simulator.profiles import make_profile
from llm_cost_exporter.tools.simulator.server import build_simulator_app

DEMO_LISTEN_ADDRESS = "127.0.0.1:9478"
DEMO_ACCELERATION = 60.0
DEMO_API_PRICES = {"input": 0.80, "cached_input": 0.08, "output": 4.00}
DEMO_GPU_PRICE_KEY = "A100*80GB*"
"""Matches the simulated GPUs' name and the model cost.gpus declares alike."""
DEMO_ENGINE_TYPES = (VllmCollector.name, SglangCollector.name)
"""The engine type of each demo engine: the page format it serves and the collector
that reads it."""
DEMO_FOOTPRINTS = (LLAMA_3_1_8B, QWEN_2_5_7B)
"""What each demo engine's model keeps in the memory of its GPU."""


def demo_engines() -> list[SimulatedEngine]:
    return [
        SimulatedEngine(
            "llama-3.1-8b",
            2000,
            make_profile("diurnal", peak_to_trough=12),
            acceleration=DEMO_ACCELERATION,
            tokens_in_wall_time=True,
        ),
        SimulatedEngine(
            "qwen2.5-7b",
            2000,
            make_profile("spiky", seed=7),
            acceleration=DEMO_ACCELERATION,
            tokens_in_wall_time=True,
            seed=7,
            restart_every=6 * 3600,
            page_format="sglang",
        ),
    ]


def demo_gpus(engines: Sequence[SimulatedEngine]) -> list[SimulatedGpu]:
    """GPU i carries engine i, as the demo configuration's engines[].gpus claims."""
    return [
        SimulatedGpu(index, engine, footprint)
        for index, (engine, footprint) in enumerate(zip(engines, DEMO_FOOTPRINTS, strict=True))
    ]


def gpu_reading(state: GpuState) -> GpuReading:
    """A simulated GPU's state as NVML's collector would read it."""
    return GpuReading(
        state.index,
        state.uuid,
        state.name,
        busy_utilization=state.busy_utilization,
        memory_used_bytes=float(state.memory_used_bytes),
        memory_total_bytes=float(state.memory_total_bytes),
        power_watts=state.power_watts,
        energy_joules=state.energy_joules,
        temperature_celsius=state.temperature_celsius,
        sm_clock_hertz=state.sm_clock_hertz,
        clock_event_reasons=CLOCK_EVENT_REASONS["gpu_idle"] if state.idle else 0,
        sm_activity=state.sm_activity,
        mig_enabled=False,
        supported=dict.fromkeys(FEATURES, True),
    )


class SimulatedGpuCollector:
    """The demo node's GPUs, read from the simulator in place of NVML."""

    name: ClassVar[str] = "simulated_gpu"
    target = "local"

    def __init__(self, gpus: Sequence[SimulatedGpu]) -> None:
        self.gpus = list(gpus)

    async def collect(self) -> GpuSnapshot:
        return GpuSnapshot(
            driver_version="simulated",
            gpus=tuple(gpu_reading(gpu.read()) for gpu in self.gpus),
        )


def demo_config(simulator_port: int, listen_address: str) -> Config:
    return config_from_mapping(
        {
            "web": {"listen_address": listen_address},
            "engines": [
                {
                    "url": f"http://127.0.0.1:{simulator_port}/engine/{i}/metrics",
                    "type": engine_type,
                    "gpus": [i],
                    "capacity_tokens_per_second": 2000,
                }
                for i, engine_type in enumerate(DEMO_ENGINE_TYPES)
            ],
            # The demo's GPUs are simulated: never read nor bill the real ones of the host.
            "nvml": {"enabled": False},
            "metrics": {"gpu_diagnostics": True},
            "collection": {"interval": "2s", "timeout": "1s"},
            "cost": {
                # Billed as declared until the simulated GPUs are first read, then as
                # they report themselves (NVML's name, "NVIDIA A100-SXM4-80GB").
                "gpus": [{"model": "A100-80GB", "count": 2}],
                "gpu_prices_per_hour": {DEMO_GPU_PRICE_KEY: 3.20},
                "overhead_ratio": 0.3,
            },
            "api_prices": {"default": DEMO_API_PRICES},
            "capacity": {"tokens_per_second": 4000},
            "projection": {"utilization": 0.6, "cost_per_million_tokens": 0.75},
            "windows": ["1m", "5m", "1h"],
        }
    )


async def _run(listen_address: str) -> None:
    engines = demo_engines()
    gpus = SimulatedGpuCollector(demo_gpus(engines))
    runner = web.AppRunner(build_simulator_app(engines), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = demo_config(port, listen_address)
    host, port_shown = split_listen_address(listen_address)
    shown = "127.0.0.1" if host in (None, "0.0.0.0", "::") else host
    print(
        "llm-cost-exporter demo: a simulated node of 2 A100s, a vLLM and an SGLang engine, "
        f"traffic shape at {DEMO_ACCELERATION:g}x time.\n"
        f"  live figures: http://{shown}:{port_shown}/\n"
        f"  metrics:      http://{shown}:{port_shown}/metrics\n"
        f"  engines:      http://127.0.0.1:{port}/engine/0/metrics (ground truth: /ground-truth)\n"
        "Ctrl-C to stop.",
        flush=True,
    )
    try:
        await serve(config, {}, ApiPrices(**DEMO_API_PRICES), gpus=gpus)
    finally:
        await runner.cleanup()


def run_demo(listen_address: str | None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(listen_address or DEMO_LISTEN_ADDRESS))
    return 0
