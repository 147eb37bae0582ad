"""Dead, slow, huge and garbage engine pages cost only their own target.

Real servers on loopback serve each kind of bad page; the real daemon, as a
child process, must keep serving /metrics within its interval, mark each
bad target down with its reason, log one line per target, and keep counting
the good engine's tokens.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from conftest import fixture_page, minimal_config_dict
from realparts import free_port
from realparts.exporter_process import ExporterProcess
from realparts.timeouts import scaled

BUSY = fixture_page("vllm-0.32.0-cpu-busy.prom")
PROMPT_LINE = 'vllm:prompt_tokens_total{engine="0",model_name="tiny-llama"} 163304.0'


class BadEngines:
    """One loopback server whose paths each misbehave in their own way."""

    def __init__(self) -> None:
        self.port = free_port()
        self.good_requests = 0
        self.runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def good(self, request: web.Request) -> web.Response:
        self.good_requests += 1
        page = BUSY.replace(
            PROMPT_LINE, PROMPT_LINE.replace("163304.0", f"{self.good_requests * 1000}.0")
        )
        return web.Response(text=page, content_type="text/plain")

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome</body></html>", content_type="text/html")

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        line = b'vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="m"} 1.0\n'
        chunk = line * (1024 * 1024 // len(line))
        try:
            for _ in range(50):  # 50 MB
                await response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def malformed(self, request: web.Request) -> web.Response:
        page = BUSY.replace(PROMPT_LINE, 'vllm:prompt_tokens_total{engine="0",model_name= 1')
        return web.Response(text=page, content_type="text/plain")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(text="")

    async def error(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def start(self) -> None:
        app = web.Application()
        for name in ("good", "html", "huge", "malformed", "slow", "error"):
            app.router.add_get(f"/{name}", getattr(self, name))
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


EXPECTED_REASONS = {
    "html": "not_metrics",
    "huge": "too_large",
    "malformed": "parse",
    "slow": "timeout",
    "error": "http_status",
    "down": "connection",
}


async def test_bad_engines_are_isolated(tmp_path) -> None:
    engines = BadEngines()
    await engines.start()
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    urls = {name: engines.url(name) for name in ("good", *EXPECTED_REASONS) if name != "down"}
    urls["down"] = dead
    config = minimal_config_dict(
        engines=[{"url": url} for url in urls.values()],
        collection={"interval": "2s", "timeout": "1s"},
    )
    exporter = ExporterProcess(config, tmp_path)

    def sample(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    def three_cycles_seen() -> bool:
        """Each bad target failed three times, and the good one was read three times."""
        failed = [
            sample("llmcost_collector_errors_total", collector="vllm", target=urls[n], reason=r)
            for n, r in EXPECTED_REASONS.items()
        ]
        prompt = sample("llmcost_tokens_total", model="tiny-llama", kind="prompt")
        return all((e or 0) >= 3 for e in failed) and (prompt or 0) >= 3 * 1000

    try:
        await asyncio.to_thread(exporter.start)
        deadline = time.monotonic() + scaled(60)
        while True:
            started = time.monotonic()
            samples = await asyncio.to_thread(exporter.samples)
            scrape_seconds = time.monotonic() - started
            if three_cycles_seen() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        log = exporter.log()
    finally:
        await asyncio.to_thread(exporter.stop)
        await engines.stop()

    assert sample("llmcost_collector_up", collector="vllm", target=urls["good"]) == 1
    for name, reason in EXPECTED_REASONS.items():
        target = urls[name]
        assert sample("llmcost_collector_up", collector="vllm", target=target) == 0, name
        errors = sample(
            "llmcost_collector_errors_total", collector="vllm", target=target, reason=reason
        )
        assert errors is not None and errors >= 3, (name, reason, errors)
        down_lines = [line for line in log.splitlines() if f"target {target} is down" in line]
        assert len(down_lines) == 1, (name, down_lines)
        assert reason in down_lines[0]
        duration = sample("llmcost_collector_duration_seconds", collector="vllm", target=target)
        assert duration < 1.0 + scaled(0.5), (name, duration)  # bounded by the 1 s timeout
    # The good engine's tokens still flow: it grows 1000 prompt tokens per scrape.
    prompt = sample("llmcost_tokens_total", model="tiny-llama", kind="prompt")
    assert prompt is not None and prompt >= 3 * 1000
    assert sample("llmcost_requests_running", model="tiny-llama") == 45
    assert scrape_seconds < scaled(2.0)  # within one collection interval, while engines hang
    assert "Traceback" not in log
