"""LMDeploy 0.18's page format (rendered by LMDeploy's own metrics classes)."""

from __future__ import annotations

from .page import PageState, PageTemplate, _Sample, _SeriesStats

FINISHED = "ResponseType.FINISH"


class LmdeployPage(PageTemplate):
    """LMDeploy 0.18's page: prompt and generation tokens as they are served, prefix-cache
    hits and requests when a request finishes, one data-parallel rank per page."""

    TEMPLATE = "lmdeploy-0.18.0.prom"
    REQUESTS = "lmdeploy:request_success_total"
    MODEL_LABEL = "model_name"
    RANK_LABEL = "engine"

    def counter_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "lmdeploy:prompt_tokens_total":
            return state.prompt_tokens
        if name == "lmdeploy:generation_tokens_total":
            return state.generation_tokens
        if name == "lmdeploy:cached_tokens_total":
            return state.finished_cached_prompt_tokens
        if name == "lmdeploy:request_success_total":
            return state.requests if s.label("finished_reason") == FINISHED else 0
        return super().counter_value(s, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "lmdeploy:num_requests_running":
            return state.running
        if name == "lmdeploy:num_requests_waiting":
            return state.waiting
        if name == "lmdeploy:num_api_requests_routed":
            return state.running + state.waiting
        if name == "lmdeploy:num_requests_succeeded":
            return state.requests
        if name == "lmdeploy:gpu_cache_usage_perc":
            return self.kv_usage(state)
        if name == "lmdeploy:prefix_cache_hit_rate":
            return state.cached_prompt_tokens / max(state.prompt_tokens, 1)
        return super().gauge_value(s, state)

    def count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        if family == "lmdeploy:iteration_tokens_total":
            return state.generation_tokens  # one observation per output token
        return super().count(family, stats, state)

    def sum(self, family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
        exact = {
            "lmdeploy:iteration_tokens_total": state.prompt_tokens + state.generation_tokens,
            "lmdeploy:request_prompt_tokens": state.finished_prompt_tokens,
            "lmdeploy:request_generation_tokens": state.finished_generation_tokens,
            "lmdeploy:request_cached_tokens": state.finished_cached_prompt_tokens,
        }
        if family in exact:
            return float(exact[family])
        return super().sum(family, stats, count, state)
