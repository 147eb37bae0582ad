"""vLLM `/metrics` collector: tokens by kind, queue depth and KV-resident tokens.

Understands the V0 engine's names (0.6 era) and the V1 names through 0.32,
including renames, and data-parallel pages where every series carries an
`engine` rank label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_cost_exporter.collectors.base import CollectorError, PageSource
from llm_cost_exporter.collectors.promtext import ExpositionError, Sample, parse_selected
from llm_cost_exporter.collectors.readings import EngineReading

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
_READ_FROM_PAGE = frozenset((*WANTED, *UNDERSCORED))


@dataclass(frozen=True)
class _KvGeometry:
    usable_blocks: float
    block_size: int


def _series_key(sample: Sample) -> tuple[str, str]:
    return sample.labels.get("model_name", ""), sample.labels.get("engine", "")


def _by_engine(samples: list[Sample] | None) -> dict[tuple[str, str], float]:
    result: dict[tuple[str, str], float] = {}
    for sample in samples or ():
        key = _series_key(sample)
        result[key] = result.get(key, 0.0) + sample.value
    return result


def _as_int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "None", "") else None
    except ValueError:
        return None


def _kv_geometry(samples: list[Sample] | None) -> dict[str, _KvGeometry]:
    """KV-cache block geometry per engine rank, from `vllm:cache_config_info`.

    With data parallelism the front end labels one summed CacheConfig once per
    rank, so `num_gpu_blocks` is divided by the number of ranks. Pages that
    carry `kv_cache_size_tokens` (0.32+) compute usage over num_gpu_blocks-1
    (one block is reserved); older ones over num_gpu_blocks.
    """
    configs = samples or []
    ranks = max(len(configs), 1)
    geometry: dict[str, _KvGeometry] = {}
    for sample in configs:
        blocks = _as_int(sample.labels.get("num_gpu_blocks"))
        block_size = _as_int(sample.labels.get("block_size"))
        if not blocks or not block_size:
            continue
        per_rank = blocks / ranks
        if "kv_cache_size_tokens" in sample.labels:
            per_rank -= 1
        geometry[sample.labels.get("engine", "")] = _KvGeometry(per_rank, block_size)
    return geometry


def _check_counter(name: str, value: float) -> float:
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ExpositionError(f"{name} has the impossible value {value}")
    return value


def parse_vllm_page(text: str) -> list[EngineReading]:
    """Read every engine on a vLLM page; raise CollectorError if it is not one."""
    try:
        found = parse_selected(text, _READ_FROM_PAGE)
    except ExpositionError as error:
        raise CollectorError("parse", str(error)) from None
    for underscored, name in UNDERSCORED.items():
        if underscored in found:
            found.setdefault(name, found.pop(underscored))
    prompt = _by_engine(found.get(PROMPT))
    generation = _by_engine(found.get(GENERATION))
    if not prompt and not generation:
        raise CollectorError(
            "no_engine_metrics",
            "no vllm:* token counters on the page "
            "(wrong URL, or vLLM run with --disable-log-stats?)",
        )
    if prompt.keys() != generation.keys():
        raise CollectorError(
            "parse", "page has prompt and generation counters for different engines"
        )
    cached = _by_engine(found.get(CACHED) or found.get(PREFIX_HITS))
    running = _by_engine(found.get(RUNNING))
    waiting = _by_engine(found.get(WAITING))
    kv_name = next((name for name in KV_USAGE if name in found), None)
    kv_usage = _by_engine(found.get(kv_name)) if kv_name else {}
    created = _by_engine(next((found[name] for name in CREATED if name in found), None))
    geometry = _kv_geometry(found.get(CACHE_CONFIG))
    readings = []
    try:
        for key in sorted(prompt):
            model, engine = key
            usage = kv_usage.get(key)
            kv = geometry.get(engine)
            kv_tokens = kv_capacity = None
            if kv is not None:
                kv_capacity = kv.usable_blocks * kv.block_size
                if usage is not None:
                    kv_tokens = round(usage * kv.usable_blocks) * kv.block_size
            readings.append(
                EngineReading(
                    model=model,
                    engine=engine,
                    prompt_tokens=_check_counter(PROMPT, prompt[key]),
                    cached_prompt_tokens=_check_counter(CACHED, cached.get(key, 0.0)),
                    generation_tokens=_check_counter(GENERATION, generation[key]),
                    running=running.get(key),
                    waiting=waiting.get(key),
                    kv_usage_ratio=usage,
                    kv_capacity_tokens=kv_capacity,
                    kv_tokens=kv_tokens,
                    started_at=created.get(key),
                )
            )
    except ExpositionError as error:
        raise CollectorError("parse", str(error)) from None
    return readings


class VllmCollector:
    """Reads one vLLM server's `/metrics` page."""

    name = "vllm"

    def __init__(self, target: str, page: PageSource) -> None:
        self.target = target
        self._page = page

    async def collect(self) -> list[EngineReading]:
        return parse_vllm_page(await self._page.fetch())
