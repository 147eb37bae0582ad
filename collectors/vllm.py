"""vLLM `/metrics` collector: tokens by kind, queue depth and KV-resident tokens.

Understands the V0 engine's names (0.6 era) and the V1 names through 0.32,
including renames, and data-parallel pages where every series carries an
`engine` rank label.

The page is read as it streams in. Whatever it holds yields readings or a
CollectorError: a page that is not vLLM's or is malformed fails whole, while a
series of a sound page whose value cannot be used (NaN, infinite, negative,
beyond what it can count) is rejected alone and counted by reason.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from llm_cost_exporter.collectors.base import CollectorError, PageSource
from llm_cost_exporter.collectors.promtext import ExpositionError, Sample, SelectiveParser
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings

PROMPT = "vllm:prompt_tokens_total"
GENERATION = "vllm:generation_tokens_total"
CACHED = "vllm:prompt_tokens_cached_total"  # 0.18+: local and external cache hits
PREFIX_HITS = "vllm:prefix_cache_hits_total"  # 0.9.2+, in tokens; the only cached count before 0.18
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # new name first
CACHE_CONFIG = "vllm:cache_config_info"
CREATED = ("vllm:generation_tokens_created", "vllm:prompt_tokens_created")

WANTED = (PROMPT, GENERATION, CACHED, PREFIX_HITS, RUNNING, WAITING, CACHE_CONFIG)
WANTED += KV_USAGE + CREATED
# Ray's metric wrappers, and OpenMetrics name escaping, print `vllm_` for `vllm:`.
UNDERSCORED = {name.replace("vllm:", "vllm_", 1): name for name in WANTED}
UNDERSCORED_CACHE_CONFIG = CACHE_CONFIG.replace("vllm:", "vllm_", 1)
_READ_FROM_PAGE = frozenset((*WANTED, *UNDERSCORED))

MAX_COUNT = float(2**53)
"""Largest token count, request count or KV block count taken: beyond it a float
no longer counts in ones (at a million tokens a second, 285 years of traffic)."""

UPPER_BOUNDS: dict[str, float] = {
    **dict.fromkeys((PROMPT, GENERATION, CACHED, PREFIX_HITS, RUNNING, WAITING), MAX_COUNT),
    **dict.fromkeys(KV_USAGE, 1.0),
    **dict.fromkeys(CREATED, math.inf),
}
"""The largest value of each summed metric's series; every one must also be finite
and not negative."""

Key = tuple[str, str]
"""(model, engine rank): what one reading is about."""


def _problem(value: float, upper: float) -> str | None:
    """Why a value cannot be used (a REJECT_REASONS entry), or None."""
    if math.isnan(value) or math.isinf(value):
        return "non_finite"
    if value < 0:
        return "negative"
    if value > upper:
        return "out_of_range"
    return None


@dataclass
class _Summed:
    """One metric's series summed per (model, rank); a rejected series spoils its key."""

    values: dict[Key, float] = field(default_factory=dict)
    rejected: set[Key] = field(default_factory=set)

    def keys(self) -> set[Key]:
        return self.values.keys() | self.rejected

    def get(self, key: Key) -> float | None:
        return None if key in self.rejected else self.values.get(key)


@dataclass(frozen=True)
class _CacheConfig:
    """The labels of one `vllm:cache_config_info` series that give KV geometry."""

    engine: str
    num_gpu_blocks: str | None
    block_size: str | None
    reserves_a_block: bool


@dataclass(frozen=True)
class _KvGeometry:
    usable_blocks: float
    block_size: float


class VllmPageReader:
    """Reads one vLLM page fed in chunks: readings per model and rank, and rejections."""

    def __init__(self) -> None:
        self._parser = SelectiveParser(_READ_FROM_PAGE)
        self._summed: dict[str, _Summed] = {}
        """By the name on the page (`vllm:` or `vllm_`)."""
        self._configs: dict[str, list[_CacheConfig]] = {}
        self._rejected: Counter[str] = Counter()
        self._first_rejected = ""

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the page; CollectorError if it is malformed."""
        try:
            found = self._parser.feed(chunk)
        except ExpositionError as error:
            raise CollectorError("parse", str(error)) from None
        self._take(found)

    def readings(self) -> EngineReadings:
        """The page's readings once it is all fed, or CollectorError."""
        try:
            found = self._parser.close()
        except ExpositionError as error:
            raise CollectorError("parse", str(error)) from None
        self._take(found)
        self._rejected["duplicate"] += self._parser.duplicates
        if self._parser.duplicates and not self._first_rejected:
            self._first_rejected = "a series repeated on the page (duplicate)"
        return EngineReadings(self._interpret(), self._rejected, self._first_rejected)

    def _reject(self, reason: str, name: str, sample: Sample, shown: object) -> None:
        self._rejected[reason] += 1
        if not self._first_rejected:
            labels = ",".join(f"{k}={v[:80]!r}" for k, v in sorted(sample.labels.items())[:4])
            self._first_rejected = f"{name}{{{labels}}} {shown} ({reason})"

    def _take(self, found: list[tuple[str, Sample]]) -> None:
        for page_name, sample in found:
            name = UNDERSCORED.get(page_name, page_name)
            if name == CACHE_CONFIG:
                self._take_cache_config(page_name, sample)
                continue
            summed = self._summed.setdefault(page_name, _Summed())
            key = (sample.labels.get("model_name", ""), sample.labels.get("engine", ""))
            problem = _problem(sample.value, UPPER_BOUNDS[name])
            if problem is not None:
                self._reject(problem, page_name, sample, sample.value)
                summed.rejected.add(key)
            else:
                summed.values[key] = summed.values.get(key, 0.0) + sample.value

    def _take_cache_config(self, page_name: str, sample: Sample) -> None:
        labels = sample.labels
        self._configs.setdefault(page_name, []).append(
            _CacheConfig(
                labels.get("engine", ""),
                labels.get("num_gpu_blocks"),
                labels.get("block_size"),
                "kv_cache_size_tokens" in labels,
            )
        )

    def _metric(self, name: str) -> _Summed | None:
        """A metric under its `vllm:` name, else its `vllm_` one, else None."""
        return self._summed.get(name) or self._summed.get(name.replace("vllm:", "vllm_", 1))

    def _first_of(self, names: tuple[str, ...]) -> _Summed:
        return next((m for m in map(self._metric, names) if m is not None), _Summed())

    def _interpret(self) -> list[EngineReading]:
        prompt = self._metric(PROMPT) or _Summed()
        generation = self._metric(GENERATION) or _Summed()
        if not prompt.keys() and not generation.keys():
            raise CollectorError(
                "no_engine_metrics",
                "no vllm:* token counters on the page "
                "(wrong URL, or vLLM run with --disable-log-stats?)",
            )
        if prompt.keys() != generation.keys():
            raise CollectorError(
                "parse", "page has prompt and generation counters for different engines"
            )
        cached = self._first_of((CACHED, PREFIX_HITS))
        running = self._first_of((RUNNING,))
        waiting = self._first_of((WAITING,))
        kv_usage = self._first_of(KV_USAGE)
        created = self._first_of(CREATED)
        geometry = self._kv_geometry()
        # A partial token count would read as a drop, hence as an engine restart.
        unusable = prompt.rejected | generation.rejected | cached.rejected
        readings = []
        for key in sorted(prompt.keys() - unusable):
            model, engine = key
            usage = kv_usage.get(key)
            kv = geometry.get(engine)
            kv_tokens = kv_capacity = None
            if kv is not None:
                kv_capacity = kv.usable_blocks * kv.block_size
                if usage is not None:
                    kv_tokens = float(round(usage * kv.usable_blocks)) * kv.block_size
            readings.append(
                EngineReading(
                    model=model,
                    engine=engine,
                    prompt_tokens=prompt.values[key],
                    cached_prompt_tokens=cached.values.get(key, 0.0),
                    generation_tokens=generation.values[key],
                    running=running.get(key),
                    waiting=waiting.get(key),
                    kv_usage_ratio=usage,
                    kv_capacity_tokens=kv_capacity,
                    kv_tokens=kv_tokens,
                    started_at=created.get(key),
                )
            )
        return readings

    def _kv_geometry(self) -> dict[str, _KvGeometry]:
        """KV-cache block geometry per engine rank, from `vllm:cache_config_info`.

        With data parallelism the front end labels one summed CacheConfig once per
        rank, so `num_gpu_blocks` is divided by the number of ranks. Pages that
        carry `kv_cache_size_tokens` (0.32+) compute usage over num_gpu_blocks-1
        (one block is reserved); older ones over num_gpu_blocks.
        """
        page_name = CACHE_CONFIG if CACHE_CONFIG in self._configs else UNDERSCORED_CACHE_CONFIG
        configs = self._configs.get(page_name, [])
        ranks = max(len(configs), 1)
        geometry: dict[str, _KvGeometry] = {}
        for config in configs:
            blocks = self._geometry_number(config, "num_gpu_blocks", config.num_gpu_blocks)
            block_size = self._geometry_number(config, "block_size", config.block_size)
            if not blocks or not block_size:
                continue
            per_rank = blocks / ranks - (1 if config.reserves_a_block else 0)
            if per_rank <= 0:
                self._reject_config("out_of_range", config, "num_gpu_blocks", str(blocks))
                continue
            geometry[config.engine] = _KvGeometry(per_rank, block_size)
        return geometry

    def _geometry_number(self, config: _CacheConfig, label: str, text: str | None) -> float | None:
        """A block count or size from its label; None when vLLM left it unset or it is unusable."""
        if text in (None, "", "None"):
            return None
        try:
            value = float(text)
        except ValueError:
            self._reject_config("malformed", config, label, text)
            return None
        problem = _problem(value, MAX_COUNT)
        if problem is not None:
            self._reject_config(problem, config, label, text)
            return None
        return math.floor(value)

    def _reject_config(self, reason: str, config: _CacheConfig, label: str, shown: str) -> None:
        self._rejected[reason] += 1
        if not self._first_rejected:
            self._first_rejected = (
                f"{CACHE_CONFIG}{{engine={config.engine[:80]!r}}} {label}={shown[:80]!r} ({reason})"
            )


def parse_vllm_page(page: str | bytes) -> EngineReadings:
    """Read every engine on a whole vLLM page; raise CollectorError if it is not one."""
    reader = VllmPageReader()
    reader.feed(page.encode("utf-8", "surrogatepass") if isinstance(page, str) else page)
    return reader.readings()


class VllmCollector:
    """Reads one vLLM server's `/metrics` page."""

    name = "vllm"

    def __init__(self, target: str, page: PageSource) -> None:
        self.target = target
        self._page = page

    async def collect(self) -> EngineReadings:
        reader = VllmPageReader()
        await self._page.read(reader.feed)
        return reader.readings()
