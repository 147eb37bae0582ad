"""What each node of a simulated fleet is: its GPUs, engines, traffic and outages.

A fleet test or benchmark needs many different nodes, and the truth about them
known apart from anything the exporter computes. Every node here is drawn
deterministically from its index: a GPU model (H100, A100, L40S, B200) rented
at its own price, 1-8 GPUs, 1-8 engines of every page format the traffic
simulator serves (vLLM V1 and V0, SGLang, llama.cpp, TGI, LMDeploy, Triton),
each serving one model on its own GPUs, a traffic shape (diurnal, flat,
bursty), and outages: a few nodes whose exporter does not answer, a few
engines that are down.

Traffic is a level (share of capacity) constant within each slot of
``SLOT_SECONDS``, aligned to the Unix epoch, so the tokens served up to any
instant are exact sums: ``traffic(t)`` is the integral of the level in
level-seconds, and an engine serves ``capacity * traffic(t)`` tokens by then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property

from llm_cost_exporter.tools.simulator.formats import PAGE_FORMATS as TEMPLATES

from .synthetic_month import diurnal_level

SLOT_SECONDS = 300
"""Traffic level changes at most this often: bursts last five minutes at least."""
UNIT_TOKENS = 1000
"""Tokens of one request; an engine's mix says how many are prompt, cached, generated."""
OVERHEAD_RATIO = 0.3
SHAPES = ("diurnal", "flat", "bursty")


@dataclass(frozen=True)
class GpuModel:
    key: str  # the price key of cost.gpus
    nvml_name: str  # what NVML calls it
    price_per_hour: float  # list price; each node pays its own, near it
    power_watts: float
    memory_bytes: float


GPU_MODELS = (
    GpuModel("H100", "NVIDIA H100 80GB HBM3", 2.49, 520.0, 85_899_345_920.0),
    GpuModel("A100", "NVIDIA A100-SXM4-80GB", 1.29, 310.0, 85_899_345_920.0),
    GpuModel("L40S", "NVIDIA L40S", 0.86, 270.0, 48_305_799_168.0),
    GpuModel("B200", "NVIDIA B200", 4.99, 820.0, 192_000_000_000.0),
)
PAGE_FORMATS = {
    "v1": "vllm",
    "v0": "vllm",
    "sglang": "sglang",
    "llamacpp": "llamacpp",
    "tgi": "tgi",
    "lmdeploy": "lmdeploy",
    "triton": "triton",
}
"""The traffic simulator's page format, and the exporter's engine type reading it."""
FORMAT_WEIGHTS = ("v1",) * 6 + ("sglang", "sglang", "v0", "llamacpp", "tgi", "lmdeploy", "triton")
MODELS = (
    "llama-3.1-70b-instruct",
    "qwen2.5-72b-instruct",
    "llama-3.1-8b-instruct",
    "mistral-small-24b",
    "gemma-2-27b-it",
    "deepseek-r1-distill-qwen-32b",
)
API_PRICES = {"input": 0.80, "cached_input": 0.08, "output": 4.00}
"""The API price every model is compared with (USD per million tokens)."""
MIXES = ((600, 150, 400), (700, 350, 300), (500, 50, 500), (800, 400, 200))
"""(prompt, of which cached, generation) tokens of one request; prompt + generation is
UNIT_TOKENS."""


def unit(index: int, salt: int) -> float:
    """A deterministic number in [0, 1) for (index, salt): cheap, no RNG state."""
    x = (index * 2_654_435_761 + salt * 40_503 + 12_345) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return (x ^ (x >> 16)) / 2**32


@dataclass(frozen=True)
class EngineSpec:
    page_format: str
    model: str
    gpus: tuple[int, ...]
    capacity: int  # tokens/s at full load, a multiple of 100
    mix: tuple[int, int, int]
    down: bool = False  # its page does not answer (connection refused)

    @property
    def engine_type(self) -> str:
        return PAGE_FORMATS[self.page_format]


@dataclass(frozen=True)
class NodeSpec:
    index: int
    gpu: GpuModel
    gpu_count: int
    price_per_hour: float  # per GPU, what this node's provider charges
    engines: tuple[EngineSpec, ...]
    shape: str
    peak: float  # the level at the busiest time
    utc_offset_hours: int  # diurnal traffic follows the users' day
    down: bool = False  # the exporter does not answer (HTTP 503)
    outages: tuple[tuple[int, int], ...] = ()
    """(start, end) Unix times in a month when the exporter is not scraped."""

    @property
    def name(self) -> str:
        return f"node-{self.index:04d}"

    @property
    def instance(self) -> str:
        return f"{self.name}:9478"

    @property
    def hourly_cost(self) -> float:
        """What the node costs an hour, GPUs plus overhead: the truth for money."""
        return self.gpu_count * self.price_per_hour * (1.0 + OVERHEAD_RATIO)

    def level(self, slot: int) -> float:
        """Share of capacity demanded in slot ``slot`` (of SLOT_SECONDS since the epoch)."""
        if self.shape == "flat":
            return self.peak
        if self.shape == "bursty":
            roll = unit(self.index, slot)
            return self.peak * (0.15 + 0.85 * unit(slot, self.index)) if roll < 0.2 else 0.08
        hour_start = (slot * SLOT_SECONDS // 3600) * 3600 + self.utc_offset_hours * 3600
        return min(1.0, self.peak * diurnal_level(hour_start, 0.1))

    def traffic(self, t: float) -> float:
        """Level-seconds from the epoch to ``t``: an engine has served ``capacity`` times
        this many tokens (less what it served before its start)."""
        slot, into = divmod(t, SLOT_SECONDS)
        slot = int(slot)
        return self._prefix(slot) + self.level(slot) * into

    def _prefix(self, slot: int) -> float:
        """Level-seconds from an origin (the first day asked about) to the start of
        ``slot``; only differences of traffic() mean anything."""
        cache = self._slots
        if slot not in cache:
            if slot - 1 in cache:
                cache[slot] = cache[slot - 1] + self.level(slot - 1) * SLOT_SECONDS
            else:
                per_day = 86400 // SLOT_SECONDS
                day = slot // per_day
                within = range(day * per_day, slot)
                cache[slot] = self._day_start(day) + SLOT_SECONDS * math.fsum(
                    self.level(s) for s in within
                )
        return cache[slot]

    def _day_level_seconds(self, day: int) -> float:
        per_day = 86400 // SLOT_SECONDS
        return SLOT_SECONDS * math.fsum(
            self.level(s) for s in range(day * per_day, (day + 1) * per_day)
        )

    def _day_start(self, day: int) -> float:
        days = self._days
        if not days:
            days[day] = 0.0
        while day not in days:
            if day > max(days):
                last = max(days)
                days[last + 1] = days[last] + self._day_level_seconds(last)
            else:
                first = min(days)
                days[first - 1] = days[first] - self._day_level_seconds(first - 1)
        return days[day]

    @cached_property
    def _days(self) -> dict[int, float]:
        return {}

    @cached_property
    def _slots(self) -> dict[int, float]:
        return {}

    def tokens_per_second(self, t: float) -> dict[tuple[str, str], float]:
        """Tokens/s by (model, kind) at ``t`` from the engines that answer: the truth for
        token rates (kinds as the exporter names them; prompt excludes cached)."""
        level = self.level(int(t // SLOT_SECONDS))
        out: dict[tuple[str, str], float] = {}
        for e in self.engines:
            if e.down:
                continue
            per_unit = e.capacity * level / UNIT_TOKENS
            prompt, cached, generation = e.mix
            for kind, n in (
                ("prompt", prompt - cached),
                ("cached_prompt", cached),
                ("generation", generation),
            ):
                out[(e.model, kind)] = out.get((e.model, kind), 0.0) + per_unit * n
        return out

    def api_equivalent_per_second(self, t: float) -> float:
        """What the answering engines' tokens would cost at the API prices, per second."""
        price = {
            "prompt": API_PRICES["input"],
            "cached_prompt": API_PRICES["cached_input"],
            "generation": API_PRICES["output"],
        }
        rates = self.tokens_per_second(t)
        return math.fsum(n * price[kind] / 1e6 for (_, kind), n in rates.items())


def _engines(index: int, gpus: int) -> tuple[EngineSpec, ...]:
    count = 1 + int(unit(index, 3) * gpus)
    per_engine = gpus // count
    engines = []
    for e in range(count):
        fmt = FORMAT_WEIGHTS[int(unit(index, 10 + e) * len(FORMAT_WEIGHTS))]
        model = MODELS[int(unit(index, 30 + e) * len(MODELS))]
        held = tuple(range(e * per_engine, (e + 1) * per_engine))
        capacity = 100 * per_engine * (10 + int(unit(index, 50 + e) * 20))
        prompt, cached, generation = MIXES[int(unit(index, 70 + e) * len(MIXES))]
        # An engine without a prefix cache (vLLM V0, Triton's page) computes every prompt.
        mix = (prompt, cached if TEMPLATES[fmt].CACHES_PROMPTS else 0, generation)
        down = e == 0 and index % 30 == 7
        engines.append(EngineSpec(fmt, model, held, capacity, mix, down))
    return tuple(engines)


def node_spec(index: int, month_start: float | None = None) -> NodeSpec:
    """Node ``index`` of any fleet: the same index is the same node in every fleet size.

    ``month_start`` places the node's exporter outages in the 31 days from it (one node
    in ten has one, of 1-6 hours); live fleets have none but their down nodes.
    """
    gpu = GPU_MODELS[int(unit(index, 1) * len(GPU_MODELS))]
    count = (1, 1, 2, 4, 4, 8, 8, 8)[int(unit(index, 2) * 8)]
    price = round(gpu.price_per_hour * (0.8 + 0.4 * unit(index, 4)), 2)
    shape = SHAPES[int(unit(index, 5) * len(SHAPES))]
    outages: tuple[tuple[int, int], ...] = ()
    if month_start is not None and unit(index, 7) < 0.1:
        start = int(month_start) + 3600 * int(unit(index, 8) * 24 * 30)
        outages = ((start, start + 3600 * (1 + int(unit(index, 9) * 6))),)
    return NodeSpec(
        index=index,
        gpu=gpu,
        gpu_count=count,
        price_per_hour=price,
        engines=_engines(index, count),
        shape=shape,
        peak=round(0.4 + 0.55 * unit(index, 6), 2),
        utc_offset_hours=(-8, -5, 0, 1, 8, 9)[int(unit(index, 11) * 6)],
        down=index % 50 == 17,
        outages=outages,
    )


def fleet_specs(nodes: int, month_start: float | None = None) -> list[NodeSpec]:
    return [node_spec(i, month_start) for i in range(nodes)]


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()
