"""Triton with the TensorRT-LLM backend: Triton 2.51's real core page plus the backend's
families as its source defines them."""

from __future__ import annotations

from .page import Labels, PageState, PageTemplate, _Sample, _SeriesStats

LLM_MODEL = "tensorrt_llm"
"""The template's TensorRT-LLM model; the state's model takes its name."""


class TritonPage(PageTemplate):
    """Token histograms and request counts move when a request ends (finished counts);
    batcher and KV-block gauges show the state's live figures. Other Triton models
    (ensemble, pre/postprocessing) keep their names and grow with requests."""

    TEMPLATE = "triton-trtllm-0.18.2.prom"
    REQUESTS = "nv_inference_request_success"
    CACHES_PROMPTS = False

    def __init__(self, text: str) -> None:
        super().__init__(text)
        # The template's requests are its LLM model's, not the sum over every model
        # (the ensemble and its steps see the same requests again): each model's counts
        # and durations then grow per request as the template shows them.
        self.requests = int(
            sum(
                s.value
                for s in self.samples
                if s.name == self.REQUESTS and s.label("model") == LLM_MODEL
            )
        )

    def labels(self, s: _Sample, state: PageState) -> Labels:
        if s.label("model") != LLM_MODEL:
            return s.labels
        return tuple((k, state.model if k == "model" else v) for k, v in s.labels)

    def counter_value(self, s: _Sample, state: PageState) -> float:
        if s.name == "nv_inference_request_success" and s.label("model") == LLM_MODEL:
            return state.requests
        return super().counter_value(s, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "nv_trt_llm_request_metrics":
            context = min(int(s.value), state.running)
            by_type = {
                "active": state.running + state.waiting,
                "scheduled": state.running,
                "waiting": state.waiting,
                "context": context,
            }
            return by_type.get(s.label("request_type") or "", s.value)
        if name == "nv_trt_llm_kv_cache_block_metrics":
            by_type = {
                "max": state.num_gpu_blocks,
                "used": state.used_blocks,
                "free": state.num_gpu_blocks - state.used_blocks,
                "tokens_per": state.block_size,
                "fraction": self.kv_usage(state),
            }
            return by_type.get(s.label("kv_cache_block_type") or "", s.value)
        if name == "nv_trt_llm_general_metrics" and s.label("general_type") == "timestamp":
            return float(int(state.now * 1e6))
        return super().gauge_value(s, state)

    def sum(self, family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
        if family == "nv_llm_input_token_len":
            return float(state.finished_prompt_tokens)
        if family == "nv_llm_output_token_len":
            return float(state.finished_generation_tokens)
        return super().sum(family, stats, count, state)
