"""SGLang `/metrics` collector (0.5.x, served only with `--enable-metrics`).

SGLang prints two kinds of series. Its scheduler counts prompt tokens as each
prefill batch runs (`prefill_effective_tokens_total`, which leaves out the
re-prefill of retracted requests, else `realtime_tokens_total`), labelled with
`tp_rank`, `pp_rank` and `dp_rank`; its tokenizer counts a request's tokens
only when it finishes (`prompt_tokens_total`, `generation_tokens_total`), with
no rank label. Prompt tokens are read live from the scheduler where the page
has its counters. Generated tokens are read from the tokenizer: the
scheduler's `decode` count leaves out the token each prefill samples, one per
request, so it would undercount short answers badly.

Every scheduler of one data-parallel rank reports the same batch (all tensor
ranks with `--enable-metrics-for-all-schedulers`, every pipeline stage
always), so one of them is read per `dp_rank`, and the ranks are summed: the
tokenizer's counts are for the whole server, so SGLang gives one reading per
model. Under disaggregation, a decode server (`engine_type="decode"`) counts
in its tokenizer the prompts its prefill server computed: those are its
transferred prompt tokens. Pages are multiprocess renders without `_created`
series, so restarts show as counter drops.
"""

from __future__ import annotations

from collections.abc import Iterable

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.engine_page import (
    EngineReader,
    Key,
    MetricsOff,
    PageCollector,
    Series,
    Summed,
    read_whole,
    sum_parts,
    token_keys,
)
from llm_cost_exporter.collectors.promtext import Labels
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings

# Tokenizer: counted when a request finishes, for the whole server.
PROMPT = "sglang:prompt_tokens_total"  # cached included
GENERATION = "sglang:generation_tokens_total"
CACHED = "sglang:cached_tokens_total"  # cache_source: device, host, storage, or total; disjoint
# Scheduler: counted per prefill or decode batch, per rank.
EFFECTIVE = "sglang:prefill_effective_tokens_total"  # mode: input (computed) and *_hit
REALTIME = "sglang:realtime_tokens_total"  # mode: prefill_compute, prefill_cache, decode
RETRACTED = "sglang:num_retracted_requests_total"
RUNNING = "sglang:num_running_reqs"
WAITING = "sglang:num_queue_reqs"
TOKEN_USAGE = "sglang:token_usage"
KV_USED = "sglang:kv_used_tokens"
KV_CAPACITY = "sglang:max_total_num_tokens"

EFFECTIVE_HITS = ("device_hit", "host_hit", "storage_hit")
SCHEDULER_GAUGES = (RUNNING, WAITING, TOKEN_USAGE, KV_USED, KV_CAPACITY)

SERIES = (
    Series(PROMPT),
    Series(GENERATION),
    Series(CACHED, part="cache_source"),
    Series(EFFECTIVE, part="mode"),
    Series(REALTIME, part="mode"),
    Series(RETRACTED),
    Series(RUNNING),
    Series(WAITING),
    Series(TOKEN_USAGE, upper=1.0),
    Series(KV_USED),
    Series(KV_CAPACITY),
)

TOKENIZER = "tokenizer"
"""The raw rank of the tokenizer's series, which carry no rank label."""

METRICS_OFF = MetricsOff(
    "http_status",
    "HTTP 404",
    "SGLang serves /metrics on its HTTP port (30000 by default) only when started with "
    "--enable-metrics",
)
MISSING = "no sglang:* series on the page (wrong URL, or SGLang started without --enable-metrics?)"


def _number(text: str) -> tuple[int, str]:
    """A rank label's value, ordered numerically where it is a number."""
    return (int(text), "") if text.isdigit() else (1 << 62, text)


class SglangPageReader(EngineReader):
    """Reads one SGLang page fed in chunks: one reading per model, and rejections."""

    SERIES = SERIES
    KEY_OF_LABELS_ALONE = False  # `key` notes each model's engine type and each rank

    def __init__(self) -> None:
        self._engine_types: dict[str, str] = {}
        self._ranks: dict[str, tuple[str, str, str]] = {}
        """A scheduler series' raw rank: its (dp, tp, pp) rank labels."""
        super().__init__()

    def key(self, labels: Labels) -> Key | None:
        """Scheduler series by (dp, tp, pp) rank, tokenizer series as one."""
        model = labels.get("model_name", "")
        if "engine_type" in labels:
            self._engine_types[model] = labels["engine_type"]
        if "tp_rank" not in labels:
            return model, TOKENIZER
        if labels.get("priority", ""):
            return None  # a per-priority share of a queue gauge; the total has priority=""
        ranks = (labels.get("dp_rank", ""), labels["tp_rank"], labels.get("pp_rank", ""))
        rank = repr(ranks)
        self._ranks[rank] = ranks
        return model, rank

    def _scheduler_sums(self) -> dict[str, Summed | None]:
        page = self._page
        sums: dict[str, Summed | None] = {name: page.get(name) for name in SCHEDULER_GAUGES}
        sums[RETRACTED] = page.get(RETRACTED)
        sums["effective"] = sum_parts(page, EFFECTIVE)
        sums["effective_hits"] = sum_parts(page, EFFECTIVE, EFFECTIVE_HITS)
        sums["realtime_prompt"] = sum_parts(page, REALTIME, ("prefill_compute", "prefill_cache"))
        sums["realtime_cached"] = sum_parts(page, REALTIME, ("prefill_cache",))
        return sums

    def _replicas(self, sums: Iterable[Summed | None]) -> dict[Key, str]:
        """The scheduler read for each (model, dp rank): its lowest tensor and pipeline rank."""
        best: dict[Key, tuple[tuple, str]] = {}
        for summed in sums:
            for model, rank in _keys(summed):
                if rank == TOKENIZER:
                    continue
                dp, tp, pp = self._ranks[rank]
                order = (_number(tp), _number(pp))
                if (model, dp) not in best or order < best[(model, dp)][0]:
                    best[(model, dp)] = (order, rank)
        return {key: rank for key, (_, rank) in best.items()}

    def interpret(self) -> list[EngineReading]:
        page = self._page
        sums = self._scheduler_sums()
        replicas = self._replicas(sums.values())
        models = {model for model, _ in replicas}
        for name in (PROMPT, GENERATION):
            models |= {model for model, _ in _keys(page.get(name))}
        if not models:
            raise CollectorError("no_engine_metrics", MISSING)
        if page.has(EFFECTIVE):
            live_prompt, live_cached = sums["effective"], sums["effective_hits"]
        elif page.has(REALTIME):
            live_prompt, live_cached = sums["realtime_prompt"], sums["realtime_cached"]
        else:
            live_prompt = live_cached = None

        def server(summed: Summed | None, counter: bool = False) -> Summed:
            return _per_server(summed, replicas, models, counter)

        finished_prompt = server(page.get(PROMPT), counter=True)
        generation = server(page.get(GENERATION), counter=True)
        if live_prompt is not None:
            prompt, cached = server(live_prompt, True), server(live_cached, True)
        else:
            prompt, cached = finished_prompt, server(sum_parts(page, CACHED), True)
        running, waiting = server(sums[RUNNING]), server(sums[WAITING])
        kv_used, kv_capacity = server(sums[KV_USED]), server(sums[KV_CAPACITY])
        usage = server(sums[TOKEN_USAGE])
        retracted = sums[RETRACTED]
        preemptions = server(retracted, True) if retracted is not None else None

        readings = []
        for key in token_keys(prompt, generation, MISSING):
            model = key[0]
            decode_server = self._engine_types.get(model) == "decode"
            transferred = None
            if decode_server:
                # Its tokenizer counts prompts the prefill server computed.
                if key in finished_prompt.rejected:
                    continue
                transferred = finished_prompt.values.get(key, 0.0)
                if live_prompt is None:
                    prompt = _zeroed(prompt, key)
                    cached = _zeroed(cached, key)
            if key in cached.rejected:
                continue
            ranks = sum(1 for m, _ in replicas if m == model)
            tokens, capacity = kv_used.get(key), kv_capacity.get(key)
            ratio = usage.get(key) if ranks == 1 else None
            if ranks > 1 and tokens is not None and capacity:
                ratio = min(tokens / capacity, 1.0)
            # Transferred tokens are counted in prompt and cached, as EngineReading has it.
            received = transferred or 0.0
            readings.append(
                EngineReading(
                    model=model,
                    engine="",
                    prompt_tokens=prompt.values.get(key, 0.0) + received,
                    cached_prompt_tokens=cached.values.get(key, 0.0) + received,
                    generation_tokens=generation.values.get(key, 0.0),
                    running=running.get(key),
                    waiting=waiting.get(key),
                    kv_usage_ratio=ratio,
                    kv_capacity_tokens=capacity,
                    kv_tokens=tokens,
                    started_at=None,
                    preemptions=preemptions.get(key) if preemptions is not None else None,
                    transferred_prompt_tokens=transferred,
                )
            )
        return readings


def _per_server(
    summed: Summed | None, replicas: dict[Key, str], models: set[str], counter: bool
) -> Summed:
    """`summed` as one value per model: the read scheduler of each data-parallel rank
    added up, or the tokenizer's value; a rejected part spoils the model's value.

    SGLang prints a counter's series once it first moves, so a counter the page
    lacks for a model it names reads 0; a gauge it lacks is unknown.
    """
    server = Summed()
    for model in models:
        key = (model, "")
        ranks = [rank for (m, _), rank in replicas.items() if m == model] + [TOKENIZER]
        present = _keys(summed)
        found = [(model, rank) for rank in ranks if (model, rank) in present]
        if not found and not counter:
            continue
        values = summed.values if summed is not None else {}
        server.values[key] = sum(values.get(raw, 0.0) for raw in found)
        if summed is not None and any(raw in summed.rejected for raw in found):
            server.rejected.add(key)
    return server


def _keys(summed: Summed | None) -> set[Key]:
    return summed.keys() if summed is not None else set()


def _zeroed(summed: Summed, key: Key) -> Summed:
    """`summed` with `key` at 0: a decode server without live counters computed no prompt."""
    return Summed({**summed.values, key: 0.0}, summed.rejected - {key})


def parse_sglang_page(page: str | bytes) -> EngineReadings:
    """Read a whole SGLang page; raise CollectorError if it is not one."""
    return read_whole(SglangPageReader(), page)


class SglangCollector(PageCollector):
    """Reads one SGLang server's `/metrics` page."""

    name = "sglang"
    READER = SglangPageReader
    METRICS_OFF = METRICS_OFF
