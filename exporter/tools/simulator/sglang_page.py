"""SGLang 0.5.23's page format: live scheduler counters beside end-of-request ones."""

from __future__ import annotations

from functools import cached_property

from .page import PageState, PageTemplate, _Sample, _scaled, _SeriesStats

INTER_TOKEN = "sglang:inter_token_latency_seconds"
GENERATION = "sglang:generation_tokens_total"


class SglangPage(PageTemplate):
    """SGLang's page: the tokenizer counts finished requests' tokens (split by
    `is_streaming` as in the template), the scheduler counts tokens as batches run.

    Latency histograms: time to first token and end-to-end latency take one observation
    per request; inter-token latency one per token streamed after a request's first,
    as the tokenizer sees them arrive, so its count follows the live generated tokens
    in the template's proportion (streamed tokens past the first, of all generated).
    """

    TEMPLATE = "sglang-0.5.23.prom"
    REQUESTS = "sglang:num_requests_total"
    MODEL_LABEL = "model_name"

    def _share(self, s: _Sample, value: int) -> int:
        """`value` split over the family's `is_streaming` series as the template splits it;
        the last series takes the remainder, so the parts add up exactly."""
        family = [x for x in self.samples if x.name == s.name]
        total = int(sum(x.value for x in family))
        before = sum(_scaled(int(x.value), value, total) for x in family[: family.index(s)])
        if s is family[-1]:
            return value - before
        return _scaled(int(s.value), value, total)

    def counter_value(self, s: _Sample, state: PageState) -> float:
        computed = state.prompt_tokens - state.cached_prompt_tokens
        name, mode = s.name, s.label("mode")
        if name == "sglang:prompt_tokens_total":
            return self._share(s, state.finished_prompt_tokens)
        if name == GENERATION:
            return self._share(s, state.finished_generation_tokens)
        if name == "sglang:num_requests_total":
            return self._share(s, state.requests)
        if name == "sglang:cached_tokens_total":
            return state.finished_cached_prompt_tokens
        if name == "sglang:realtime_tokens_total":
            by_mode = {
                "prefill_compute": computed,
                "prefill_cache": state.cached_prompt_tokens,
                "decode": state.generation_tokens,
            }
            return by_mode.get(mode or "", 0)
        if name == "sglang:prefill_effective_tokens_total":
            by_mode = {"input": computed, "device_hit": state.cached_prompt_tokens}
            return by_mode.get(mode or "", 0)
        return super().counter_value(s, state)

    @cached_property
    def _generated(self) -> int:
        """The template's generated tokens."""
        return int(self.total(GENERATION))

    def count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        if family == INTER_TOKEN:
            return _scaled(stats.count, state.generation_tokens, self._generated)
        return super().count(family, stats, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        used = state.used_blocks * state.block_size
        capacity = state.num_gpu_blocks * state.block_size
        by_name = {
            "sglang:num_running_reqs": state.running,
            "sglang:num_queue_reqs": state.waiting,
            "sglang:token_usage": self.kv_usage(state),
            "sglang:full_token_usage": self.kv_usage(state),
            "sglang:num_used_tokens": used,
            "sglang:kv_used_tokens": used,
            "sglang:kv_available_tokens": capacity - used,
            "sglang:max_total_num_tokens": capacity,
        }
        if s.name in by_name:
            return float(by_name[s.name])
        return super().gauge_value(s, state)
