"""Render vLLM `/metrics` pages from a captured page used as a template.

Copying a real capture line by line, and only replacing values, keeps the
metric names, types, HELP texts, label names, bucket bounds and even the
line order identical to what a real vLLM server prints. That is what the
exporter's parser must cope with, so the simulator should not invent it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from prometheus_client.utils import floatToGoString

# "v1": vLLM 0.32.0 (V1 engine, real capture); "v0": vLLM 0.6.6 (V0 engine).
TEMPLATE_FILES: dict[str, str] = {"v1": "vllm-0.32.0.prom", "v0": "vllm-0.6.6.prom"}
PAGE_FORMATS: tuple[str, ...] = tuple(TEMPLATE_FILES)

Labels = tuple[tuple[str, str], ...]

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)\s*$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class PageState:
    """Everything live on one engine's page; counters are since its last (re)start."""

    model: str
    prompt_tokens: int  # all prompt tokens, cached ones included (as vLLM counts them)
    cached_prompt_tokens: int
    generation_tokens: int
    requests_stop: int
    requests_length: int
    running: int
    waiting: int
    used_blocks: int
    num_gpu_blocks: int
    block_size: int
    start_time: float  # unix time of the engine's (re)start
    now: float  # unix time of the scrape
    prompt_throughput: float = 0.0  # tokens/s, for the V0 throughput gauges
    generation_throughput: float = 0.0
    engine: str = "0"  # data-parallel rank

    @property
    def requests(self) -> int:
        return self.requests_stop + self.requests_length

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generation_tokens


@dataclass(frozen=True)
class _Sample:
    family: str
    kind: str
    name: str
    labels: Labels
    value: float

    @property
    def suffix(self) -> str:
        return self.name[len(self.family) :]

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)

    def series_key(self) -> tuple[str, Labels]:
        """The histogram/summary series this sample belongs to (bucket bound dropped)."""
        return self.family, tuple(kv for kv in self.labels if kv[0] != "le")


@dataclass(frozen=True)
class _SeriesStats:
    count: int
    total: float


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPES[m.group(0)], value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_labels(text: str | None) -> Labels:
    if not text:
        return ()
    return tuple((m.group(1), _unescape(m.group(2))) for m in _LABEL_RE.finditer(text))


def _format_line(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {floatToGoString(value)}"
    return f"{name} {floatToGoString(value)}"


def _scaled(template_value: int, driver: int, template_driver: int) -> int:
    """`template_value * driver / template_driver` in integers, so it is exact and monotonic."""
    if template_driver <= 0:
        return 0
    return template_value * driver // template_driver


class PageTemplate:
    """A parsed template page that renders live values into the same layout."""

    def __init__(self, text: str) -> None:
        self._lines: list[str | _Sample] = []
        family, kind = "", "untyped"
        for raw in text.splitlines():
            if raw.startswith("# TYPE "):
                parts = raw.split()
                family, kind = parts[2], parts[3] if len(parts) > 3 else "untyped"
            if not raw or raw.startswith("#"):
                self._lines.append(raw)
                continue
            match = _SAMPLE_RE.match(raw)
            if match is None:
                raise ValueError(f"cannot parse template line: {raw[:120]!r}")
            name = match.group(1)
            owner, owner_kind = (
                (family, kind) if family and name.startswith(family) else (name, "untyped")
            )
            labels = _parse_labels(match.group(2))
            self._lines.append(_Sample(owner, owner_kind, name, labels, float(match.group(3))))
        self._stats = self._series_stats()
        self.requests = int(self._total("vllm:request_success_total"))
        self.generation_tokens = int(self._total("vllm:generation_tokens_total"))
        self._cache_info = self._cache_geometry()

    @classmethod
    def load(cls, page_format: str) -> PageTemplate:
        """The packaged template for a page format ("v1" or "v0")."""
        return _load_template(page_format)

    @property
    def samples(self) -> list[_Sample]:
        return [line for line in self._lines if isinstance(line, _Sample)]

    def _total(self, name: str) -> float:
        return sum(s.value for s in self.samples if s.name == name)

    def _series_stats(self) -> dict[tuple[str, Labels], _SeriesStats]:
        counts: dict[tuple[str, Labels], float] = {}
        sums: dict[tuple[str, Labels], float] = {}
        for s in self.samples:
            if s.kind in ("histogram", "summary"):
                if s.suffix == "_count":
                    counts[s.series_key()] = s.value
                elif s.suffix == "_sum":
                    sums[s.series_key()] = s.value
        return {key: _SeriesStats(int(count), sums.get(key, 0.0)) for key, count in counts.items()}

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

    def render(self, state: PageState) -> bytes:
        """The whole page for `state`, in Prometheus text format 0.0.4."""
        out: list[str] = []
        for line in self._lines:
            if isinstance(line, str):
                out.append(line)
                continue
            labels = self._labels(line, state)
            out.append(_format_line(line.name, labels, self._value(line, state)))
        return ("\n".join(out) + "\n").encode("utf-8")

    def _labels(self, s: _Sample, state: PageState) -> Labels:
        if s.name == "vllm:cache_config_info":
            return tuple((k, self._cache_label(k, v, state)) for k, v in s.labels)
        if not any(k in ("model_name", "engine") for k, _ in s.labels):
            return s.labels
        replace = {"model_name": state.model, "engine": state.engine}
        return tuple((k, replace.get(k, v)) for k, v in s.labels)

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

    def _value(self, s: _Sample, state: PageState) -> float:
        if s.kind in ("histogram", "summary"):
            return self._distribution_value(s, state)
        if s.kind == "counter":
            return float(self._counter_value(s, state))
        return self._gauge_value(s, state)

    def _counter_value(self, s: _Sample, state: PageState) -> float:
        cached = state.cached_prompt_tokens
        name = s.name
        if name in ("vllm:prompt_tokens_total", "vllm:prefix_cache_queries_total"):
            return state.prompt_tokens
        if name in ("vllm:prompt_tokens_cached_total", "vllm:prefix_cache_hits_total"):
            return cached
        if name == "vllm:generation_tokens_total":
            return state.generation_tokens
        if name == "vllm:prompt_tokens_by_source_total":
            by_source = {"local_compute": state.prompt_tokens - cached, "local_cache_hit": cached}
            return by_source.get(s.label("source") or "", 0)
        if name == "vllm:prompt_tokens_cached_by_source_total":
            return cached if s.label("source") == "device" else 0
        if name == "vllm:request_success_total":
            by_reason = {"stop": state.requests_stop, "length": state.requests_length}
            return by_reason.get(s.label("finished_reason") or "", 0)
        # Anything else grows with the number of requests, from 0 at (re)start.
        if s.value.is_integer():
            return _scaled(int(s.value), state.requests, self.requests)
        return s.value * state.requests / self.requests if self.requests else 0.0

    def _gauge_value(self, s: _Sample, state: PageState) -> float:
        name = s.name
        if name.endswith("_created") or name == "process_start_time_seconds":
            return state.start_time
        if name == "vllm:num_requests_running":
            return state.running
        if name == "vllm:num_requests_waiting":
            return state.waiting
        if name == "vllm:num_requests_waiting_by_reason":
            return state.waiting if s.label("reason") == "capacity" else 0.0
        if name == "vllm:num_requests_swapped":
            return 0.0
        if name == "vllm:kv_cache_usage_perc":
            return state.used_blocks / max(state.num_gpu_blocks - 1, 1)
        if name == "vllm:gpu_cache_usage_perc":
            return state.used_blocks / max(state.num_gpu_blocks, 1)
        if name == "vllm:avg_prompt_throughput_toks_per_s":
            return state.prompt_throughput
        if name == "vllm:avg_generation_throughput_toks_per_s":
            return state.generation_throughput
        if name == "vllm:lora_requests_info":
            return state.now
        return s.value

    def _distribution_value(self, s: _Sample, state: PageState) -> float:
        stats = self._stats.get(s.series_key(), _SeriesStats(0, 0.0))
        count = self._count(s.family, stats, state)
        if s.suffix == "_count":
            return float(count)
        if s.suffix == "_sum":
            return self._sum(s.family, stats, count, state)
        if s.suffix == "_bucket":
            if stats.count <= 0:
                return float(count) if s.label("le") == "+Inf" else 0.0
            # round(bucket / count * new_count), exact in integers: cumulative and monotonic.
            return float((2 * int(s.value) * count + stats.count) // (2 * stats.count))
        return s.value

    def _count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        if family == "vllm:iteration_tokens_total":
            return _scaled(stats.count, state.tokens, int(stats.total))
        if family in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
            return _scaled(stats.count, state.generation_tokens, self.generation_tokens)
        return _scaled(stats.count, state.requests, self.requests)

    @staticmethod
    def _sum(family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
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
        if stats.count <= 0:
            return 0.0
        return stats.total * count / stats.count


@cache
def _load_template(page_format: str) -> PageTemplate:
    if page_format not in TEMPLATE_FILES:
        raise ValueError(
            f"unknown page format {page_format!r}; choose one of {', '.join(PAGE_FORMATS)}"
        )
    path = resources.files(__package__) / "templates" / TEMPLATE_FILES[page_format]
    return PageTemplate(path.read_text(encoding="utf-8"))
