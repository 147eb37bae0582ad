"""An engine whose `/metrics` page names thousands of models, on a loopback port.

The page is the real vLLM 0.32 capture (`vllm-0.32.0-cpu-busy.prom`) with every
series the exporter reads repeated once per model name instead of once for
`tiny-llama`: what a broken or hostile engine, or a proxy merging many engines,
could serve. Each request is a new collection: the token counters of every model
grow by fixed steps per request, so the tokens the exporter counts can be checked
exactly. With `fresh_names` every request names new models (created now, so
their tokens count from zero), as an engine inventing names would.

A request can also be held until the test releases it (`hold_first`), to see
what the daemon does while its first collection has not finished.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from .loopback_http import LoopbackHttp, QuietHandler

FIXTURE = Path(__file__).parent.parent / "fixtures" / "vllm" / "vllm-0.32.0-cpu-busy.prom"
SERVED = 'model_name="tiny-llama"'
PROMPT_STEP = 1000
CACHED_STEP = 100
GENERATION_STEP = 300
"""Tokens each model's counters grow by per request."""

_COUNTER_STEPS = {
    "vllm:prompt_tokens_total": PROMPT_STEP,
    "vllm:prompt_tokens_cached_total": CACHED_STEP,
    "vllm:prefix_cache_hits_total": CACHED_STEP,
    "vllm:generation_tokens_total": GENERATION_STEP,
}
_REPEATED = (
    *_COUNTER_STEPS,
    "vllm:prompt_tokens_created",
    "vllm:generation_tokens_created",
    "vllm:prompt_tokens_cached_created",
    "vllm:prefix_cache_hits_created",
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
)


def _template() -> list[tuple[str, str | None]]:
    """The capture as (line, series name if it is repeated per model)."""
    lines = []
    for line in FIXTURE.read_text().splitlines():
        name = line.split("{", 1)[0]
        repeated = not line.startswith("#") and SERVED in line and name in _REPEATED
        lines.append((line, name if repeated else None))
    return lines


class ManyModelsEngine:
    """Serves the page at `/metrics`; `requests` counts the pages served."""

    def __init__(self, models: int, *, fresh_names: bool = False, hold_first: bool = False) -> None:
        self.models = models
        self.fresh_names = fresh_names
        self.requests = 0
        self.page_bytes = 0
        self._template = _template()
        self._lock = threading.Lock()
        self.first_request = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._http = LoopbackHttp(_Handler, self, "many-models-engine")

    @property
    def url(self) -> str:
        return self._http.url + "/metrics"

    def names(self, request: int) -> list[str]:
        """The model names of the `request`-th page (from 1)."""
        prefix = f"r{request}-" if self.fresh_names else ""
        return [f"{prefix}model-{i:05d}" for i in range(self.models)]

    def render(self, request: int) -> bytes:
        created = f"{time.time():.3f}" if self.fresh_names else None
        out = []
        names = self.names(request)
        for line, series in self._template:
            if series is None:
                out.append(line)
                continue
            head, _, value = line.rpartition(" ")
            if series in _COUNTER_STEPS:
                value = f"{_COUNTER_STEPS[series] * request}.0"
            elif series.endswith("_created") and created is not None:
                value = created
            left, right = head.split(SERVED)
            out.extend(f'{left}model_name="{name}"{right} {value}' for name in names)
        return ("\n".join(out) + "\n").encode()

    def start(self) -> ManyModelsEngine:
        self._http.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._http.stop()

    def __enter__(self) -> ManyModelsEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        engine: ManyModelsEngine = self.server.owner
        with engine._lock:
            engine.requests += 1
            request = engine.requests
        engine.first_request.set()
        engine.release.wait()
        body = engine.render(request)
        engine.page_bytes = len(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The daemon may stop (or give up) while reading the page.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)
