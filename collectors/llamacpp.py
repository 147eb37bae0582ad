"""llama.cpp `llama-server` `/metrics` collector: tokens by kind and queue depth.

`llama-server` serves its page only when started with `--metrics`; otherwise
`/metrics` answers HTTP 501. The page has no labels: one server, one model,
named by `/v1/models` (`data[0].id`) unless `engines[].model` names it.

When the counters move (tools/server/server-context.cpp):
- `llamacpp:prompt_tokens_total` counts prompt tokens computed, cached ones
  excluded, after every decode batch: it follows a prefill as it runs.
- `llamacpp:prompt_tokens_cached_total` counts the prompt tokens reused from
  the slot's cache, when a request's prompt starts; builds before it have no
  count of cached tokens (they are then in no counter at all).
- `llamacpp:tokens_predicted_total` counts a request's generated tokens when
  it ends (its slot is released), so generation lags by the requests running.

Values above 999,999 are printed with six significant digits (`1.23457e+06`):
such counters still only grow, in steps. `requests_processing` and
`requests_deferred` are the running and waiting requests. Only old builds
(2024) report the KV cache (`kv_cache_usage_ratio`, `kv_cache_tokens`). There
is no `_created` series: restarts are seen as counter drops.
"""

from __future__ import annotations

from llm_cost_exporter.collectors.engine_page import (
    EngineReader,
    Key,
    MetricsOff,
    Series,
    read_whole,
    token_keys,
)
from llm_cost_exporter.collectors.promtext import Labels
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings
from llm_cost_exporter.collectors.served_model import (
    OneModelCollector,
    openai_model_id,
)

PROMPT = "llamacpp:prompt_tokens_total"  # computed only, cached excluded
CACHED = "llamacpp:prompt_tokens_cached_total"
GENERATION = "llamacpp:tokens_predicted_total"
RUNNING = "llamacpp:requests_processing"
WAITING = "llamacpp:requests_deferred"
KV_USAGE = "llamacpp:kv_cache_usage_ratio"  # old builds: used cells / context size
KV_TOKENS = "llamacpp:kv_cache_tokens"  # old builds

SERIES = (
    Series(PROMPT),
    Series(CACHED),
    Series(GENERATION),
    Series(RUNNING),
    Series(WAITING),
    Series(KV_USAGE, upper=1.0),
    Series(KV_TOKENS),
)

MODELS_PATH = "/v1/models"
METRICS_OFF = MetricsOff(
    "http_status", "HTTP 501", "llama-server serves /metrics only when started with --metrics"
)


def _one_model(labels: Labels) -> Key:
    """Every series is the server's one model; its name comes from elsewhere."""
    return "", ""


class LlamaCppPageReader(EngineReader):
    """Reads one `llama-server` page fed in chunks: one unnamed reading, and rejections."""

    SERIES = SERIES
    key = staticmethod(_one_model)

    def interpret(self) -> list[EngineReading]:
        computed, generation, cached, running, waiting, usage, kv_tokens = self._page.sums(
            PROMPT, GENERATION, CACHED, RUNNING, WAITING, KV_USAGE, KV_TOKENS
        )
        keys = token_keys(
            computed,
            generation,
            "no llamacpp:* token counters on the page (wrong URL, or llama-server run "
            "without --metrics?)",
        )
        readings = []
        for key in keys:
            if key in cached.rejected:
                continue
            cached_tokens = cached.values.get(key, 0.0)
            readings.append(
                EngineReading(
                    model="",
                    engine="",
                    prompt_tokens=computed.values[key] + cached_tokens,
                    cached_prompt_tokens=cached_tokens,
                    generation_tokens=generation.values[key],
                    running=running.get(key),
                    waiting=waiting.get(key),
                    kv_usage_ratio=usage.get(key),
                    kv_capacity_tokens=None,
                    kv_tokens=kv_tokens.get(key),
                    started_at=None,
                )
            )
        return readings


def parse_llamacpp_page(page: str | bytes) -> EngineReadings:
    """Read a whole `llama-server` page (its reading's model is ""); CollectorError if
    it is not one."""
    return read_whole(LlamaCppPageReader(), page)


class LlamaCppCollector(OneModelCollector):
    """Reads one `llama-server`'s `/metrics` page, and its model's name from `/v1/models`."""

    name = "llamacpp"
    READER = LlamaCppPageReader
    METRICS_OFF = METRICS_OFF
    MODEL_DOCUMENT = MODELS_PATH
    pick_model = staticmethod(openai_model_id)
