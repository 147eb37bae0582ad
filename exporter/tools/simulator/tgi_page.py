"""Hugging Face TGI's page format (3.3.7, rendered from its own metric definitions)."""

from __future__ import annotations

import math
from decimal import Decimal

from .page import PageState, PageTemplate, _Sample, _SeriesStats

FAILURES = "tgi_request_failure"


class TgiPage(PageTemplate):
    """TGI's router page: token histograms, counters without `_total`, no model label.

    A prompt's length is recorded when the request is admitted (it follows the live
    count), its generated tokens when it succeeds (the finished count). TGI counts
    no prefix-cache hits. The model is named only by `/info`.
    """

    TEMPLATE = "tgi-3.3.7.prom"
    REQUESTS = "tgi_request_success"
    CACHES_PROMPTS = False

    def value_text(self, value: float) -> str:
        """As Rust prints an f64: no exponent, and no `.0` on whole numbers."""
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")

    def documents(self, state: PageState) -> dict[str, object]:
        return {"/info": {"model_id": state.model, "router": "text-generation-router"}}

    def _admitted(self, state: PageState) -> int:
        """Requests past validation: finished ones, and those running or queued."""
        return state.requests + state.running + state.waiting

    def counter_value(self, s: _Sample, state: PageState) -> float:
        if s.name == "tgi_request_success":
            return state.requests
        if s.name == "tgi_request_count":
            failures = sum(
                self.by_requests(f.value, state) for f in self.samples if f.name == FAILURES
            )
            return self._admitted(state) + failures
        return super().counter_value(s, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "tgi_queue_size":
            return state.waiting
        if name == "tgi_batch_current_size":
            return state.running
        if name == "tgi_batch_current_max_tokens":
            return state.used_blocks * state.block_size
        if name == "tgi_batch_max_total_tokens":
            return state.num_gpu_blocks * state.block_size
        return super().gauge_value(s, state)

    def kv_usage(self, state: PageState) -> float:
        return state.used_blocks / max(state.num_gpu_blocks, 1)

    def count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        if family in ("tgi_request_input_length", "tgi_request_max_new_tokens"):
            return self._admitted(state)
        if family == "tgi_request_skipped_tokens":  # one observation per generated token
            return state.generation_tokens
        return super().count(family, stats, state)

    def sum(self, family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
        if family == "tgi_request_input_length":
            return float(state.prompt_tokens)
        if family == "tgi_request_generated_tokens":
            return float(state.finished_generation_tokens)
        return super().sum(family, stats, count, state)
