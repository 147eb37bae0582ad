"""A loopback HTTP server whose paths serve good, broken and hostile vLLM pages.

Each path is one engine: `/good` and the pages that stay readable serve the
real busy 0.32 capture with its model renamed after the path (so each engine's
tokens are told apart on /metrics) and its token counters growing by 1,000
prompt and 100 generation tokens per request. The others misbehave:

- `/non_finite`: NaN and infinite gauges, created time and KV usage;
- `/huge_config`: `num_gpu_blocks="1e400"` in `vllm:cache_config_info`;
- `/invalid_utf8`: a token counter whose model name is not UTF-8;
- `/near_limit`: the page padded with histogram lines to just under `max_bytes`;
- `/over_limit`: twice `max_bytes`, streamed without a Content-Length;
- `/gzip_bomb`: half a megabyte of gzip that inflates to 512 MiB;
- `/slow_drip`: the page one line every 50 ms, never finishing in time.

`/current` serves the page of the path last set with `POST /mode/<path>`
(`good` at first), so one engine can turn hostile and back.

Run standalone for benchmarks: `python -m realparts.hostile_engine --max-bytes N`
(with tests/ on the path) prints the base URL and serves until stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

from .loopback_http import LoopbackHttp, QuietHandler

BUSY = Path(__file__).resolve().parent.parent / "fixtures" / "vllm" / "vllm-0.32.0-cpu-busy.prom"
MODEL = "tiny-llama"
PROMPT = 'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} 163304.0'
GENERATION = 'vllm:generation_tokens_total{engine="0",model_name="tiny-llama"} 70319.0'
PROMPT_STEP, GENERATION_STEP = 1000, 100
BOMB_BYTES = 512 * 1024 * 1024
DRIP_PAUSE = 0.05
READABLE = ("good", "non_finite", "huge_config", "near_limit")
"""Paths whose pages are read: their tokens count."""

NON_FINITE = {
    'vllm:num_requests_running{engine="0",model_name="tiny-llama"} 45.0': "NaN",
    'vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 0.0': "+Inf",
    'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.0076298602209607935': "-Inf",
    'vllm:generation_tokens_created{engine="0",model_name="tiny-llama"} 1.7953320132749963e+09': (
        "NaN"
    ),
}
"""The series `/non_finite` sends as NaN or infinite: four rejected per page."""


@functools.cache
def busy_page() -> str:
    return BUSY.read_text()


def page(model: str, requests: int, replacements: dict[str, str] | None = None) -> str:
    """The busy capture served as `model`, its token counters grown `requests` times."""
    text = busy_page()
    grown = {
        PROMPT: f"{163304 + PROMPT_STEP * requests}.0",
        GENERATION: f"{70319 + GENERATION_STEP * requests}.0",
    }
    for line, value in {**grown, **(replacements or {})}.items():
        series = line.rsplit(" ", 1)[0]
        text = text.replace(line, f"{series} {value}")
    return text.replace(f'model_name="{MODEL}"', f'model_name="{model}"')


@functools.cache
def filler(size: int) -> bytes:
    """About `size` bytes of histogram bucket lines of many models: read and skipped."""
    lines = (
        f'vllm:request_prompt_tokens_bucket{{engine="0",le="{le}.0",model_name="lora-{n}"}} 1.0\n'
        for n in itertools.count()
        for le in (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    )
    out = bytearray()
    for line in lines:
        if len(out) + len(line) > size:
            return bytes(out)
        out += line.encode()
    raise AssertionError("unreachable")


@functools.cache
def gzip_bomb() -> bytes:
    """A valid gzip stream of BOMB_BYTES zero bytes, about 0.5 MB.

    After a full flush the deflate state restarts, so every 1 MiB block of
    zeros compresses to the same bytes: compress one, repeat it.
    """
    block = bytes(1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks = BOMB_BYTES // len(block)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, BOMB_BYTES & 0xFFFFFFFF)
    return header + deflated * blocks + compressor.flush() + trailer


class _Handler(QuietHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        """`POST /mode/<path>`: `/current` serves that path's page from now on."""
        engine: HostileEngine = self.server.owner
        mode = self.path.removeprefix("/mode/")
        if mode not in HostileEngine.PATHS:
            self.send_error(404)
            return
        engine.mode = mode
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        engine: HostileEngine = self.server.owner
        name = self.path.strip("/")
        if name == "current":
            name = engine.mode
        serve = getattr(self, f"serve_{name}", None)
        if serve is None:
            self.send_error(404)
            return
        with engine.lock:
            engine.requests[name] = requests = engine.requests.get(name, 0) + 1
        # The exporter giving up on a page it refuses is what the fault asks for.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            serve(engine, name, requests)

    def _send(self, body: bytes, length: bool = True, headers: dict[str, str] | None = None):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve_good(self, engine: HostileEngine, name: str, requests: int) -> None:
        self._send(page(name, requests).encode())

    def serve_non_finite(self, engine: HostileEngine, name: str, requests: int) -> None:
        self._send(page(name, requests, NON_FINITE).encode())

    def serve_huge_config(self, engine: HostileEngine, name: str, requests: int) -> None:
        text = page(name, requests).replace('num_gpu_blocks="16384"', 'num_gpu_blocks="1e400"')
        self._send(text.encode())

    def serve_invalid_utf8(self, engine: HostileEngine, name: str, requests: int) -> None:
        series = b'vllm:prompt_tokens_total{engine="0",model_name="invalid_utf8"}'
        body = page(name, requests).encode().replace(series, series.replace(b"_utf8", b"\xff\xfe"))
        self._send(body)

    def serve_near_limit(self, engine: HostileEngine, name: str, requests: int) -> None:
        head = page(name, requests).encode()
        self._send(head + filler(engine.max_bytes - len(head) - 4096))

    def serve_over_limit(self, engine: HostileEngine, name: str, requests: int) -> None:
        head = page(name, requests).encode()
        self._send(head + filler(2 * engine.max_bytes), length=False)

    def serve_gzip_bomb(self, engine: HostileEngine, name: str, requests: int) -> None:
        self._send(gzip_bomb(), headers={"Content-Encoding": "gzip"})

    def serve_slow_drip(self, engine: HostileEngine, name: str, requests: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        for line in page(name, requests).encode().splitlines(keepends=True):
            self.wfile.write(line)
            self.wfile.flush()
            time.sleep(DRIP_PAUSE)


class HostileEngine:
    """The server; `url(path)` is one engine's metrics URL."""

    PATHS = (*READABLE, "invalid_utf8", "over_limit", "gzip_bomb", "slow_drip")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.mode = "good"
        """What `/current` serves."""
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()
        self._http = LoopbackHttp(_Handler, self, "hostile-engine")

    def url(self, path: str) -> str:
        return f"{self._http.url}/{path}"

    def start(self) -> HostileEngine:
        gzip_bomb()  # built once, before the first request waits on it
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> HostileEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-bytes", type=int, default=16 * 1024 * 1024)
    args = parser.parse_args()
    with HostileEngine(args.max_bytes) as engine:
        print(engine.url("").rstrip("/"), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
