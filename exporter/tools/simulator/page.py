"""Render an engine's `/metrics` page from a captured page used as a template.

Copying a real capture line by line, and only replacing values, keeps the
metric names, types, HELP texts, label names, bucket bounds and even the
line order identical to what a real engine prints. That is what the
exporter's parsers must cope with, so the simulator should not invent it.
Each engine's page format is a PageTemplate subclass saying which value each
of its series shows for a PageState (see formats.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import ClassVar

from prometheus_client.utils import floatToGoString

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
    # The same counts for finished requests only: engines that count a request's
    # tokens when it ends show these, which lag the live ones by the requests in flight.
    finished_prompt_tokens: int
    finished_cached_prompt_tokens: int
    finished_generation_tokens: int
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
    transferred_prompt_tokens: int = 0
    """Prompt tokens whose KV cache another engine computed and sent (the decode side
    of disaggregated serving); the engine counts them in prompt and cached prompt tokens."""
    preemptions: int = 0

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


def _format_line(name: str, labels: Labels, value: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def _scaled(template_value: int, driver: int, template_driver: int) -> int:
    """`template_value * driver / template_driver` in integers, so it is exact and monotonic."""
    if template_driver <= 0:
        return 0
    return template_value * driver // template_driver


class PageTemplate:
    """A parsed template page that renders live values into the same layout.

    A subclass is one engine's page format: its template file, the label naming the
    model (and the rank), and the value each of its series shows for a PageState.
    What it does not name grows with the number of requests from 0 at (re)start.
    """

    TEMPLATE: ClassVar[str]
    """The capture under templates/."""
    REQUESTS: ClassVar[str] = ""
    """A counter of the template whose total is its number of requests."""
    MODEL_LABEL: ClassVar[str] = ""
    RANK_LABEL: ClassVar[str] = ""
    CACHES_PROMPTS: ClassVar[bool] = True
    """Whether the engine serves prompt tokens from a prefix cache and counts them."""
    TRANSFERS_KV: ClassVar[bool] = False
    """Whether the engine runs disaggregated (prefill and decode instances) and its page
    counts the prompt tokens whose KV cache was transferred in."""

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
        self.requests = int(self.total(self.REQUESTS)) if self.REQUESTS else 0

    @classmethod
    def load(cls) -> PageTemplate:
        """The format's packaged template, parsed once."""
        return _load_template(cls)

    @property
    def samples(self) -> list[_Sample]:
        return [line for line in self._lines if isinstance(line, _Sample)]

    def total(self, name: str) -> float:
        """The sum of the template's samples named `name`."""
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

    def render(self, state: PageState) -> bytes:
        """The whole page for `state`, in Prometheus text format 0.0.4."""
        out: list[str] = []
        for line in self._lines:
            if isinstance(line, str):
                out.append(line)
                continue
            labels = self.labels(line, state)
            value = self.value_text(self._value(line, state))
            out.append(_format_line(line.name, labels, value))
        return ("\n".join(out) + "\n").encode("utf-8")

    def value_text(self, value: float) -> str:
        """A sample value as the engine prints it (by default as prometheus_client does)."""
        return floatToGoString(value)

    def documents(self, state: PageState) -> dict[str, object]:
        """JSON documents the engine serves beside its page, by path (its model list)."""
        return {}

    def kv_usage(self, state: PageState) -> float:
        """The share of the KV cache in use, as the page shows it."""
        return state.used_blocks / max(state.num_gpu_blocks, 1)

    def labels(self, s: _Sample, state: PageState) -> Labels:
        """The sample's labels, naming the state's model and rank."""
        replace = {}
        if self.MODEL_LABEL:
            replace[self.MODEL_LABEL] = state.model
        if self.RANK_LABEL:
            replace[self.RANK_LABEL] = state.engine
        if not any(k in replace for k, _ in s.labels):
            return s.labels
        return tuple((k, replace.get(k, v)) for k, v in s.labels)

    def _value(self, s: _Sample, state: PageState) -> float:
        if s.kind in ("histogram", "summary"):
            return self._distribution_value(s, state)
        if s.kind == "counter":
            return float(self.counter_value(s, state))
        return self.gauge_value(s, state)

    def counter_value(self, s: _Sample, state: PageState) -> float:
        """A counter sample's value; by default it grows with requests from 0 at (re)start."""
        return self.by_requests(s.value, state)

    def by_requests(self, template_value: float, state: PageState) -> float:
        """A template value scaled by the state's requests over the template's."""
        if template_value.is_integer():
            return _scaled(int(template_value), state.requests, self.requests)
        return template_value * state.requests / self.requests if self.requests else 0.0

    def gauge_value(self, s: _Sample, state: PageState) -> float:
        """A gauge sample's value; `_created` times are the (re)start, the rest as captured."""
        if s.name.endswith("_created") or s.name == "process_start_time_seconds":
            return state.start_time
        return s.value

    def _distribution_value(self, s: _Sample, state: PageState) -> float:
        stats = self._stats.get(s.series_key(), _SeriesStats(0, 0.0))
        count = self.count(s.family, stats, state)
        if s.suffix == "_count":
            return float(count)
        if s.suffix == "_sum":
            return self.sum(s.family, stats, count, state)
        if s.suffix == "_bucket":
            if stats.count <= 0:
                return float(count) if s.label("le") == "+Inf" else 0.0
            # round(bucket / count * new_count), exact in integers: cumulative and monotonic.
            return float((2 * int(s.value) * count + stats.count) // (2 * stats.count))
        return s.value

    def count(self, family: str, stats: _SeriesStats, state: PageState) -> int:
        """A histogram's or summary's observation count; by default one per request."""
        return _scaled(stats.count, state.requests, self.requests)

    def sum(self, family: str, stats: _SeriesStats, count: int, state: PageState) -> float:
        """A histogram's or summary's sum; by default the template's mean per observation."""
        if stats.count <= 0:
            return 0.0
        return stats.total * count / stats.count


@cache
def _load_template(format_class: type[PageTemplate]) -> PageTemplate:
    path = resources.files(__package__) / "templates" / format_class.TEMPLATE
    return format_class(path.read_text(encoding="utf-8"))
