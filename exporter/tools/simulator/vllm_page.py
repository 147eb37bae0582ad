"""vLLM's page formats: 0.32 (the V1 engine, a real capture) and 0.6.6 (the V0 engine)."""

from __future__ import annotations

from .page import PageState, PageTemplate, _Sample, _scaled, _SeriesStats


class VllmPage(PageTemplate):
    """vLLM 0.32's page: tokens by kind and source, requests by finish reason, KV blocks.

    A decode instance of disaggregated serving counts the prompt tokens whose KV
    cache was transferred in as prompt tokens, as cached ones (`prompt_tokens_cached`:
    local and external), as the `external_kv_transfer` source and the `p2p` tier,
    and as external prefix-cache hits; the local hits are the rest.
    """

    TEMPLATE = "vllm-0.32.0.prom"
    REQUESTS = "vllm:request_success_total"
    MODEL_LABEL = "model_name"
    RANK_LABEL = "engine"
    KV_RESERVED_BLOCKS = 1
    """Blocks the KV usage is not computed over (0.32 reserves one)."""
    TRANSFERS_KV = True

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.generation_tokens = int(self.total("vllm:generation_tokens_total"))
        self._cache_info = self._cache_geometry()

    def _cache_geometry(self) -> dict[str, float]:
        """Per-token memory and max model length implied by the template's cache config."""
        info = next((s for s in self.samples if s.name == "vllm:cache_config_info"), None)
        if info is None:
            return {}
        geometry: dict[str, float] = {}
        try:
            tokens = float(info.label("kv_cache_size_tokens") or "nan")
            geometry["bytes_per_token"] = float(info.label("kv_cache_memory_bytes") or "x") / tokens
            geometry["max_model_len"] = tokens / float(
                info.label("kv_cache_max_concurrency") or "x"
            )
        except (ValueError, ZeroDivisionError):
            pass
        return geometry

    def kv_usage(self, state: PageState) -> float:
        return state.used_blocks / max(state.num_gpu_blocks - self.KV_RESERVED_BLOCKS, 1)

    def labels(self, s: _Sample, state: PageState) -> tuple[tuple[str, str], ...]:
        if s.name == "vllm:cache_config_info":
            return tuple((k, self._cache_label(k, v, state)) for k, v in s.labels)
        return super().labels(s, state)

    def _cache_label(self, key: str, value: str, state: PageState) -> str:
        kv_tokens = state.num_gpu_blocks * state.block_size
        if key == "engine":
            return state.engine
        if key in ("block_size", "effective_attention_block_size"):
            return str(state.block_size)
        if key == "num_gpu_blocks":
            return str(state.num_gpu_blocks)
        if key == "kv_cache_size_tokens":
            return str(kv_tokens)
        if key == "kv_cache_memory_bytes" and "bytes_per_token" in self._cache_info:
            return str(round(kv_tokens * self._cache_info["bytes_per_token"]))
        if key == "kv_cache_max_concurrency" and "max_model_len" in self._cache_info:
            return repr(kv_tokens / self._cache_info["max_model_len"])
        return value

    def counter_value(self, s: _Sample, state: PageState) -> float:
        cached = state.cached_prompt_tokens
        transferred = state.transferred_prompt_tokens
        name = s.name
        if name in ("vllm:prompt_tokens_total", "vllm:prefix_cache_queries_total"):
            return state.prompt_tokens
        if name == "vllm:prompt_tokens_cached_total":
            return cached
        if name == "vllm:prefix_cache_hits_total":
            return cached - transferred
        if name in (
            "vllm:external_prefix_cache_queries_total",
            "vllm:external_prefix_cache_hits_total",
        ):
            return transferred
        if name == "vllm:generation_tokens_total":
            return state.generation_tokens
        if name == "vllm:prompt_tokens_by_source_total":
            by_source = {
                "local_compute": state.prompt_tokens - cached,
                "local_cache_hit": cached - transferred,
                "external_kv_transfer": transferred,
            }
            return by_source.get(s.label("source") or "", 0)
        if name == "vllm:prompt_tokens_cached_by_source_total":
            by_tier = {"device": cached - transferred, "p2p": transferred}
            return by_tier.get(s.label("source") or "", 0)
        if name == "vllm:num_preemptions_total":
            return state.preemptions
        if name == "vllm:request_success_total":
            by_reason = {"stop": state.requests_stop, "length": state.requests_length}
            return by_reason.get(s.label("finished_reason") or "", 0)
        return super().counter_value(s, state)

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name == "vllm:num_requests_running":
            return state.running
        if name == "vllm:num_requests_waiting":
            return state.waiting
        if name == "vllm:num_requests_waiting_by_reason":
            return state.waiting if s.label("reason") == "capacity" else 0.0
        if name == "vllm:num_requests_swapped":
            return 0.0
        if name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"):
            return self.kv_usage(state)
        if name == "vllm:avg_prompt_throughput_toks_per_s":
            return state.prompt_throughput
        if name == "vllm:avg_generation_throughput_toks_per_s":
            return state.generation_throughput
        if name == "vllm:lora_requests_info":
            return state.now
        return super().gauge_value(s, state)

    def count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        if family == "vllm:iteration_tokens_total":
            return _scaled(stats.count, state.tokens, int(stats.total))
        if family in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
            return _scaled(stats.count, state.generation_tokens, self.generation_tokens)
        return super().count(family, stats, state)

    def sum(self, family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
        exact = {
            "vllm:iteration_tokens_total": state.tokens,
            "vllm:request_prompt_tokens": state.prompt_tokens,
            "vllm:request_generation_tokens": state.generation_tokens,
            "vllm:request_prefill_kv_computed_tokens": (
                state.prompt_tokens - state.cached_prompt_tokens
            ),
        }
        if family in exact:
            return float(exact[family])
        return super().sum(family, stats, count, state)


class VllmV0Page(VllmPage):
    """vLLM 0.6.6's page (the V0 engine): prefix caching off by default, no reserved block."""

    TEMPLATE = "vllm-0.6.6.prom"
    CACHES_PROMPTS = False
    TRANSFERS_KV = False
    KV_RESERVED_BLOCKS = 0
