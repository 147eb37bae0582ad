"""LMDeploy `/metrics` collector (`lmdeploy serve api_server`, 0.9.2 and later).

LMDeploy's metrics are on by default since 0.11 (`--disable-metrics` turns them off;
0.9.2 to 0.10 need `--enable-metrics`) and are served on the API port (23333). Every
series carries `model_name` and `engine`, the data-parallel rank: with `--dp` each
rank runs its own API server, so a page holds one rank and ranks are summed across
pages. Tensor-parallel workers report nothing of their own.

When each counter moves, which decides what a reading lags:
- `lmdeploy:prompt_tokens_total`: the whole prompt, prefix-cache hits included,
  added when the request's first token comes out;
- `lmdeploy:generation_tokens_total`: every output, as tokens are generated;
- `lmdeploy:cached_tokens_total` (0.14+): the request's prefix-cache hits, added
  when it finishes. Older pages have no cached count: their prompts read as computed;
- `lmdeploy:request_success_total{finished_reason="ResponseType.FINISH"}`: at the end
  of a request that finished (the other reasons are declared but never counted).
Running, waiting and KV usage are refreshed every 10 s. The counters have no
`_created` series (LMDeploy disables them), so restarts show as counter drops.
"""

from __future__ import annotations

from llm_cost_exporter.collectors.engine_page import (
    EMPTY,
    EngineReader,
    MetricsOff,
    PageCollector,
    Series,
    label_key,
    read_whole,
    token_keys,
)
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings

PROMPT = "lmdeploy:prompt_tokens_total"
GENERATION = "lmdeploy:generation_tokens_total"
CACHED = "lmdeploy:cached_tokens_total"
RUNNING = "lmdeploy:num_requests_running"
WAITING = "lmdeploy:num_requests_waiting"
KV_USAGE = "lmdeploy:gpu_cache_usage_perc"
SUCCESS = "lmdeploy:request_success_total"
FINISHED = "ResponseType.FINISH"

SERIES = (
    Series(PROMPT),
    Series(GENERATION),
    Series(CACHED),
    Series(RUNNING),
    Series(WAITING),
    Series(KV_USAGE, upper=1.0),
    Series(SUCCESS, part="finished_reason"),
)

METRICS_OFF = MetricsOff(
    "http_status",
    "HTTP 404",
    "LMDeploy serves /metrics on its API port unless started with --disable-metrics "
    "(before 0.11, only with --enable-metrics)",
)


class LmdeployPageReader(EngineReader):
    """Reads one LMDeploy page fed in chunks: readings per model and rank, and rejections."""

    SERIES = SERIES
    key = staticmethod(label_key("model_name", "engine"))

    def interpret(self) -> list[EngineReading]:
        page = self._page
        prompt, generation, cached, running, waiting, kv_usage = page.sums(
            PROMPT, GENERATION, CACHED, RUNNING, WAITING, KV_USAGE
        )
        keys = token_keys(
            prompt, generation, f"no lmdeploy:* token counters on the page: {METRICS_OFF}"
        )
        finished = page.get(SUCCESS, FINISHED) or EMPTY
        readings = []
        for key in keys:
            if key in cached.rejected:
                continue
            model, engine = key
            readings.append(
                EngineReading(
                    model=model,
                    engine=engine,
                    prompt_tokens=prompt.values[key],
                    cached_prompt_tokens=cached.values.get(key, 0.0),
                    generation_tokens=generation.values[key],
                    running=running.get(key),
                    waiting=waiting.get(key),
                    kv_usage_ratio=kv_usage.get(key),
                    kv_capacity_tokens=None,
                    kv_tokens=None,
                    started_at=None,
                    requests=finished.get(key),
                )
            )
        return readings


def parse_lmdeploy_page(page: str | bytes) -> EngineReadings:
    """Read every engine on a whole LMDeploy page; raise CollectorError if it is not one."""
    return read_whole(LmdeployPageReader(), page)


class LmdeployCollector(PageCollector):
    """Reads one LMDeploy API server's `/metrics` page."""

    name = "lmdeploy"
    READER = LmdeployPageReader
    METRICS_OFF = METRICS_OFF
