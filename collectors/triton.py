"""Triton Inference Server collector for models served by the TensorRT-LLM backend.

Triton serves its metrics on port 8002 (`/metrics`) unless started with
`--allow-metrics=false`. Every series carries `model` and `version`, naming a Triton
model (`tensorrt_llm`, `ensemble`, ...), not the served LLM. Tokens are read only from
the models that count them: those run by the TensorRT-LLM backend (C++ backend 0.16 /
Triton 24.12 and later, or its Python-backend `tensorrt_llm` model), which observe per
request, when it ends:
- `nv_llm_input_token_len{response_metric_type="total_input_tokens"}`: the prompt's
  length, prefix-cache hits included; its `_sum` is all prompt tokens;
- `nv_llm_output_token_len{response_metric_type="total_output_tokens"}`: tokens
  generated (of every beam); its `_sum` is all generated tokens.
An ensemble in front of the model reports no tokens, so nothing is counted twice.
Triton's `model` label is the reading's model unless `engines[].model` names it, and
its `version` is the reading's rank; model instances share their series.

Also read: `nv_inference_request_success` of the same model (requests ended without
error), `nv_trt_llm_request_metrics` (scheduled = running; waiting, or active minus
scheduled before the backend had it) and `nv_trt_llm_kv_cache_block_metrics` (used,
max and tokens per block; `fraction` where served). The backend's `reused` KV blocks
is a gauge of blocks, not a count of prompt tokens: cached prompt tokens are not read,
and every prompt token counts as computed. The page has no `_created` series, so
restarts show as counter drops.
"""

from __future__ import annotations

from llm_cost_exporter.collectors.engine_page import (
    EMPTY,
    EngineReader,
    Key,
    MetricsOff,
    PageCollector,
    Series,
    Summed,
    read_whole,
    token_keys,
    value_problem,
)
from llm_cost_exporter.collectors.promtext import Labels
from llm_cost_exporter.collectors.readings import EngineReading, EngineReadings

INPUT = "nv_llm_input_token_len_sum"
OUTPUT = "nv_llm_output_token_len_sum"
SUCCESS = "nv_inference_request_success"
REQUEST_METRICS = "nv_trt_llm_request_metrics"
KV_BLOCKS = "nv_trt_llm_kv_cache_block_metrics"

SERIES = (
    Series(INPUT, part="response_metric_type"),
    Series(OUTPUT, part="response_metric_type"),
    Series(SUCCESS),
    Series(REQUEST_METRICS, part="request_type"),
    Series(KV_BLOCKS, part="kv_cache_block_type"),
)

METRICS_OFF = MetricsOff(
    "connection",
    "",
    "Triton serves metrics on port 8002 unless started with --allow-metrics=false",
)


def _key(labels: Labels) -> Key:
    return labels.get("model", ""), labels.get("version", "")


class TritonPageReader(EngineReader):
    """Reads one Triton page fed in chunks: a reading per TensorRT-LLM model, and rejections."""

    SERIES = SERIES
    key = staticmethod(_key)

    def _part(self, name: str, part: str) -> Summed:
        return self._page.get(name, part) or EMPTY

    def interpret(self) -> list[EngineReading]:
        page = self._page
        prompt = self._part(INPUT, "total_input_tokens")
        generation = self._part(OUTPUT, "total_output_tokens")
        if page.has(REQUEST_METRICS):
            missing = (
                "no TensorRT-LLM token metrics on the page (nv_llm_input_token_len): "
                "a TensorRT-LLM backend before 0.16 (Triton 24.12) serves no token counts"
            )
        else:
            missing = (
                "no TensorRT-LLM token metrics on the page (nv_llm_input_token_len / "
                "nv_llm_output_token_len): is a model served by the tensorrtllm backend "
                "loaded, and is it 0.16 (Triton 24.12) or later?"
            )
        keys = token_keys(prompt, generation, missing)
        success = page.get(SUCCESS) or EMPTY
        scheduled = self._part(REQUEST_METRICS, "scheduled")
        waiting = self._part(REQUEST_METRICS, "waiting")
        active = self._part(REQUEST_METRICS, "active")
        used = self._part(KV_BLOCKS, "used")
        most = self._part(KV_BLOCKS, "max")
        per_block = self._part(KV_BLOCKS, "tokens_per")
        fraction = self._part(KV_BLOCKS, "fraction")
        readings = []
        for key in keys:
            model, version = key
            capacity = _product(most.get(key), per_block.get(key))
            usage = self._usage(key, fraction, used, most)
            readings.append(
                EngineReading(
                    model=model,
                    engine=version,
                    prompt_tokens=prompt.values[key],
                    cached_prompt_tokens=0.0,
                    generation_tokens=generation.values[key],
                    running=scheduled.get(key),
                    waiting=self._waiting(key, waiting, active, scheduled),
                    kv_usage_ratio=usage,
                    kv_capacity_tokens=capacity,
                    kv_tokens=_kv_tokens(used.get(key), per_block.get(key), capacity),
                    started_at=None,
                    requests=success.get(key),
                )
            )
        return readings

    @staticmethod
    def _waiting(key: Key, waiting: Summed, active: Summed, scheduled: Summed) -> float | None:
        """Requests the batcher holds but did not schedule (backends before 0.18 lack it)."""
        reported = waiting.keys()
        if key in reported:
            return waiting.get(key)
        holding, running = active.get(key), scheduled.get(key)
        if holding is None or running is None or holding < running:
            return None
        return holding - running

    def _usage(self, key: Key, fraction: Summed, used: Summed, most: Summed) -> float | None:
        """The used share of KV blocks: `fraction` where served, else used over max."""
        reported = fraction.keys()
        if key in reported:
            share = fraction.get(key)
            if share is not None and value_problem(share, 1.0) is not None:
                self._page.reject("out_of_range", f"{KV_BLOCKS}{{model={key[0]!r}}} {share}")
                return None
            return share
        blocks, total = used.get(key), most.get(key)
        if blocks is None or not total or blocks > total:
            return None
        return blocks / total


def _product(a: float | None, b: float | None) -> float | None:
    """a * b, or None where either is unknown or the engine has not reported it yet (0)."""
    if not a or not b:
        return None
    return a * b


def _kv_tokens(
    blocks: float | None, per_block: float | None, capacity: float | None
) -> float | None:
    """Tokens in the used KV blocks, where the capacity is known."""
    if capacity is None or blocks is None or per_block is None:
        return None
    return blocks * per_block


def parse_triton_page(page: str | bytes) -> EngineReadings:
    """Read every TensorRT-LLM model on a whole Triton page; CollectorError if none."""
    return read_whole(TritonPageReader(), page)


class TritonCollector(PageCollector):
    """Reads one Triton server's metrics page (`:8002/metrics`)."""

    name = "triton"
    READER = TritonPageReader
    METRICS_OFF = METRICS_OFF
