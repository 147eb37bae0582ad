"""llama.cpp `llama-server`'s page format (a real capture at commit 0c1e570)."""

from __future__ import annotations

from .page import PageState, PageTemplate, _Sample

TEMPLATE_REQUESTS = 2
"""Completions the capture had served: its other counters grow from these."""


class LlamaCppPage(PageTemplate):
    """`llama-server --metrics`: no labels, prompt tokens computed and cached apart.

    Prompt tokens are counted as each batch is computed, cached ones when a prompt
    starts (both follow the live counts); generated tokens when a request ends
    (the finished counts). The model is named only by `/v1/models`.
    """

    TEMPLATE = "llamacpp-0c1e570.prom"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.requests = TEMPLATE_REQUESTS

    def value_text(self, value: float) -> str:
        """As a C++ stream prints a double: six significant digits (`1.23457e+06`)."""
        return format(float(value), "g")

    def documents(self, state: PageState) -> dict[str, object]:
        model = {"id": state.model, "object": "model", "owned_by": "llamacpp", "created": 0}
        return {"/v1/models": {"object": "list", "data": [model]}}

    def counter_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "llamacpp:prompt_tokens_total":
            return state.prompt_tokens - state.cached_prompt_tokens
        if name == "llamacpp:prompt_tokens_cached_total":
            return state.cached_prompt_tokens
        if name == "llamacpp:tokens_predicted_total":
            return state.finished_generation_tokens
        if name == "llamacpp:n_tokens_max":  # a maximum, typed counter
            return s.value if state.requests else 0.0
        return super().counter_value(s, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "llamacpp:requests_processing":
            return state.running
        if name == "llamacpp:requests_deferred":
            return state.waiting
        if name == "llamacpp:prompt_tokens_seconds":
            return state.prompt_throughput
        if name == "llamacpp:predicted_tokens_seconds":
            return state.generation_throughput
        return super().gauge_value(s, state)
