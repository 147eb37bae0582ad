"""vLLM `/metrics` collector: tokens by kind, requests, preemptions, queue depth and
KV-resident tokens.

Understands the V0 engine's names (0.6 era) and the V1 names through 0.32,
including renames, and data-parallel pages where every series carries an
`engine` rank label.

Disaggregated serving (a prefill instance computes the prompt and sends its KV
cache to a decode instance, e.g. through NIXL) is counted once: the decode
instance counts the transferred prompt tokens in `vllm:prompt_tokens_total` and
`vllm:prompt_tokens_cached_total`, and this collector reports them as
`transferred_prompt_tokens` for the accounting to take out of both. They are
the `p2p` source of `vllm:prompt_tokens_cached_by_source_total` (0.32+: KV
"transferred from another vLLM instance"); on pages without that family, the
`external_kv_transfer` source of `vllm:prompt_tokens_by_source_total`, which
cannot tell a transfer from a hit in the instance's own offload tier (LMCache
CPU or disk): there such hits are taken as transfers, and left out too.
Nothing on the page tells a prefill-only instance apart, so the one token it
generates per request (generated again by the decode instance) stays counted.

The page is read as it streams in. Whatever it holds yields readings or a
CollectorError: a page that is not vLLM's or is malformed fails whole, while a
series of a sound page whose value cannot be used (NaN, infinite, negative,
beyond what it can count) is rejected alone and counted by reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_cost_exporter.collectors.engine_page import (
    EMPTY,
    MAX_COUNT,
    EngineReader,
    PageCollector,
    Series,
    Summed,
    label_key,
    read_whole,
    token_keys,
    value_problem,
)
from llm_cost_exporter.collectors.promtext import Labels
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
REQUESTS = "vllm:request_success_total"  # V0 and V1, one series per finished_reason: summed
PREEMPTIONS = "vllm:num_preemptions_total"  # V0 and V1
CACHED_BY_SOURCE = "vllm:prompt_tokens_cached_by_source_total"  # 0.32+, counted at admission
TRANSFERRED_TIER = "p2p"  # "transferred from another vLLM instance"
BY_SOURCE = "vllm:prompt_tokens_by_source_total"  # counted with the prompt tokens
TRANSFERRED_SOURCE = "external_kv_transfer"  # KV connector loads: transfers and offload tiers

COUNTS = (PROMPT, GENERATION, CACHED, PREFIX_HITS, RUNNING, WAITING, REQUESTS, PREEMPTIONS)
BY_PART = (CACHED_BY_SOURCE, BY_SOURCE)
WANTED = (*COUNTS, *BY_PART, *KV_USAGE, CACHE_CONFIG, *CREATED)


def _underscored(name: str) -> str:
    """Ray's metric wrappers, and OpenMetrics name escaping, print `vllm_` for `vllm:`."""
    return name.replace("vllm:", "vllm_", 1)


def _series(name: str, **how: object) -> tuple[Series, Series]:
    return Series(name, **how), Series(_underscored(name), **how)  # type: ignore[arg-type]


SERIES = (
    *(s for name in COUNTS for s in _series(name)),
    *(s for name in BY_PART for s in _series(name, part="source")),
    *(s for name in KV_USAGE for s in _series(name, upper=1.0)),
    *(s for name in CREATED for s in _series(name, upper=math.inf)),
    *_series(CACHE_CONFIG, info=True),
)


@dataclass(frozen=True)
class _KvGeometry:
    usable_blocks: float
    block_size: float


class VllmPageReader(EngineReader):
    """Reads one vLLM page fed in chunks: readings per model and rank, and rejections."""

    SERIES = SERIES
    key = staticmethod(label_key("model_name", "engine"))

    def _first_of(self, names: tuple[str, ...]) -> Summed:
        """The first of `names` on the page under its `vllm:` name, else its `vllm_` one."""
        for name in names:
            found = self._page.get(name) or self._page.get(_underscored(name))
            if found is not None:
                return found
        return EMPTY

    def _transferred(self) -> tuple[Summed, bool]:
        """Prompt tokens whose KV came from another instance, and whether the page counts
        them: the `p2p` tier where the page splits cached tokens by tier, else the
        `external_kv_transfer` source."""
        for name, part in ((CACHED_BY_SOURCE, TRANSFERRED_TIER), (BY_SOURCE, TRANSFERRED_SOURCE)):
            for shown in (name, _underscored(name)):
                if self._page.has(shown):
                    return self._page.get(shown, part) or EMPTY, True
        return EMPTY, False

    def interpret(self) -> list[EngineReading]:
        prompt = self._first_of((PROMPT,))
        generation = self._first_of((GENERATION,))
        keys = token_keys(
            prompt,
            generation,
            "no vllm:* token counters on the page "
            "(wrong URL, or vLLM run with --disable-log-stats?)",
        )
        cached = self._first_of((CACHED, PREFIX_HITS))
        running = self._first_of((RUNNING,))
        waiting = self._first_of((WAITING,))
        kv_usage = self._first_of(KV_USAGE)
        created = self._first_of(CREATED)
        requests = self._first_of((REQUESTS,))
        preemptions = self._first_of((PREEMPTIONS,))
        transferred, counts_transfers = self._transferred()
        geometry = self._kv_geometry()
        readings = []
        for key in keys:
            if key in cached.rejected or key in transferred.rejected:
                continue
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
                    requests=requests.get(key),
                    preemptions=preemptions.get(key),
                    transferred_prompt_tokens=(
                        transferred.values.get(key, 0.0) if counts_transfers else None
                    ),
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
        configs = self._page.infos(CACHE_CONFIG) or self._page.infos(_underscored(CACHE_CONFIG))
        ranks = max(len(configs), 1)
        geometry: dict[str, _KvGeometry] = {}
        for labels in configs:
            blocks = self._geometry_number(labels, "num_gpu_blocks")
            block_size = self._geometry_number(labels, "block_size")
            if not blocks or not block_size:
                continue
            per_rank = blocks / ranks - (1 if "kv_cache_size_tokens" in labels else 0)
            if per_rank <= 0:
                self._reject_config("out_of_range", labels, "num_gpu_blocks")
                continue
            geometry[labels.get("engine", "")] = _KvGeometry(per_rank, block_size)
        return geometry

    def _geometry_number(self, labels: Labels, label: str) -> float | None:
        """A block count or size from its label; None when vLLM left it unset or it is unusable."""
        text = labels.get(label)
        if text in (None, "", "None"):
            return None
        try:
            value = float(text)
        except ValueError:
            self._reject_config("malformed", labels, label)
            return None
        problem = value_problem(value, MAX_COUNT)
        if problem is not None:
            self._reject_config(problem, labels, label)
            return None
        return math.floor(value)

    def _reject_config(self, reason: str, labels: Labels, label: str) -> None:
        engine, shown = labels.get("engine", "")[:80], labels.get(label, "")[:80]
        self._page.reject(reason, f"{CACHE_CONFIG}{{engine={engine!r}}} {label}={shown!r}")


def parse_vllm_page(page: str | bytes) -> EngineReadings:
    """Read every engine on a whole vLLM page; raise CollectorError if it is not one."""
    return read_whole(VllmPageReader(), page)


class VllmCollector(PageCollector):
    """Reads one vLLM server's `/metrics` page."""

    name = "vllm"
    READER = VllmPageReader
