"""Hugging Face TGI (text-generation-inference) `/metrics` collector.

TGI's router always serves `/metrics` on its HTTP port, rendered by the Rust
`metrics-exporter-prometheus` crate: counters without a `_total` suffix, and
families that appear only once first touched (`tgi_request_success` after the
first successful request). The page has no model label: one router, one model,
named by `/info` (`model_id`) unless `engines[].model` names it.

TGI counts no tokens as counters; the token histograms' `_sum` are read:
- `tgi_request_input_length` is recorded when a request passes validation
  (router/src/validation.rs), so it counts the prompts of requests still
  queued or running, and of requests that fail later; all prompt tokens are
  computed ones, as TGI has no count of prefix-cache hits;
- `tgi_request_generated_tokens` is recorded when a request succeeds
  (router/src/server.rs): generation lags by the requests running, and the
  tokens of failed or cancelled requests are never counted.

`tgi_request_success` counts successful requests; `tgi_batch_current_size`
and `tgi_queue_size` are the running and queued requests;
`tgi_batch_current_max_tokens` is the KV-cache token budget the running batch
holds, out of `tgi_batch_max_total_tokens`. There is no `_created` series:
restarts are seen as counter drops.
"""

from __future__ import annotations

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.engine_page import (
    EngineReader,
    Key,
    Series,
    read_whole,
)
from llm_cost_exporter.collectors.promtext import Labels
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings
from llm_cost_exporter.collectors.served_model import (
    OneModelCollector,
    tgi_model_id,
)

INPUT = "tgi_request_input_length_sum"
GENERATED = "tgi_request_generated_tokens_sum"
SUCCESS = "tgi_request_success"
COUNT = "tgi_request_count"
RUNNING = "tgi_batch_current_size"
WAITING = "tgi_queue_size"
BATCH_TOKENS = "tgi_batch_current_max_tokens"
CAPACITY = "tgi_batch_max_total_tokens"  # set at start by the v3 backend

SERIES = tuple(
    Series(name)
    for name in (INPUT, GENERATED, SUCCESS, COUNT, RUNNING, WAITING, BATCH_TOKENS, CAPACITY)
)

INFO_PATH = "/info"
KEY: Key = ("", "")


def _one_model(labels: Labels) -> Key:
    """Every series is the router's one model; its name comes from elsewhere."""
    return KEY


class TgiPageReader(EngineReader):
    """Reads one TGI page fed in chunks: one unnamed reading, and rejections."""

    SERIES = SERIES
    key = staticmethod(_one_model)

    def _value(self, name: str) -> tuple[bool, float | None]:
        """Whether `name` is on the page, and its value (None when rejected)."""
        summed = self._page.get(name)
        return (False, None) if summed is None else (True, summed.get(KEY))

    def interpret(self) -> list[EngineReading]:
        if not any(self._page.has(s.name) for s in SERIES):
            raise CollectorError(
                "no_engine_metrics", "no tgi_* metrics on the page (wrong URL, or not TGI?)"
            )
        has_input, prompt = self._value(INPUT)
        has_generated, generation = self._value(GENERATED)
        has_success, requests = self._value(SUCCESS)
        if (has_input and prompt is None) or (has_generated and generation is None):
            return []  # a rejected token sum: this cycle is sat out
        succeeded = bool(requests)
        if succeeded and not (has_input and has_generated):
            # A success records both histograms: the page is caught between the two.
            return []
        running, waiting = self._value(RUNNING)[1], self._value(WAITING)[1]
        batch_tokens, capacity = self._value(BATCH_TOKENS)[1], self._value(CAPACITY)[1]
        usage = None
        if batch_tokens is not None and capacity and batch_tokens <= capacity:
            usage = batch_tokens / capacity
        return [
            EngineReading(
                model="",
                engine="",
                prompt_tokens=prompt or 0.0,
                cached_prompt_tokens=0.0,
                generation_tokens=generation or 0.0,
                running=running,
                waiting=waiting,
                kv_usage_ratio=usage,
                kv_capacity_tokens=capacity,
                kv_tokens=batch_tokens,
                started_at=None,
                requests=requests if has_success else 0.0,
            )
        ]


def parse_tgi_page(page: str | bytes) -> EngineReadings:
    """Read a whole TGI page (its reading's model is ""); CollectorError if it is not one."""
    return read_whole(TgiPageReader(), page)


class TgiCollector(OneModelCollector):
    """Reads one TGI router's `/metrics` page, and its model's name from `/info`."""

    name = "tgi"
    READER = TgiPageReader
    MODEL_DOCUMENT = INFO_PATH
    pick_model = staticmethod(tgi_model_id)
