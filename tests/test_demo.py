"""`--demo`: live figures on / and /metrics with nothing but this package."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from realparts.child_process import ChildProcess
from realparts.timeouts import scaled


class DemoProcess(ChildProcess):
    def command(self) -> list[str]:
        return ["--demo", "--web.listen-address", f"127.0.0.1:{self.port}"]

    def fetch(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=scaled(10)) as response:
            return response.read().decode()


def samples_of(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
    }


ONE_MINUTE = (("window", "1m"),)


def has_live_figures(page: str) -> bool:
    """Tokens counted and the 1m figures, which take two collections (2 s apart)."""
    samples = samples_of(page)
    tokens = sum(v for (name, _), v in samples.items() if name == "llmcost_tokens_total")
    windowed = ("llmcost_effective_cost_per_million_tokens", "llmcost_breakeven_utilization_ratio")
    return tokens > 0 and all((name, ONE_MINUTE) in samples for name in windowed)


def test_demo_shows_live_figures(tmp_path) -> None:
    with DemoProcess(tmp_path, "demo.log") as demo:
        deadline = time.monotonic() + scaled(60)
        while not has_live_figures(page := demo.fetch("/metrics")):
            assert time.monotonic() < deadline, f"no live figures yet:\n{page}"
            time.sleep(0.2)
        html = demo.fetch("/")
    output = demo.log()
    samples = samples_of(page)
    tokens = sum(v for (name, _), v in samples.items() if name == "llmcost_tokens_total")
    assert tokens > 0
    up = {
        dict(labels)["collector"]: v
        for (name, labels), v in samples.items()
        if name == "llmcost_collector_up"
    }
    assert up == {"vllm": 1.0, "sglang": 1.0}
    per_million = samples[("llmcost_effective_cost_per_million_tokens", ONE_MINUTE)]
    assert 0 < per_million < 1000
    assert ("llmcost_breakeven_utilization_ratio", ONE_MINUTE) in samples
    assert "cost per 1M tokens" in html and "break-even" in html
    assert f"http://127.0.0.1:{demo.port}/" in output
    assert "Traceback" not in output
