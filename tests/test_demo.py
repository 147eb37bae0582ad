"""`--demo`: live figures on / and /metrics with nothing but this package."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from realparts.child_process import ChildProcess


class DemoProcess(ChildProcess):
    def command(self) -> list[str]:
        return ["--demo", "--web.listen-address", f"127.0.0.1:{self.port}"]

    def fetch(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode()


def test_demo_shows_live_figures(tmp_path) -> None:
    with DemoProcess(tmp_path, "demo.log") as demo:
        time.sleep(5)  # two more collection cycles
        page = demo.fetch("/metrics")
        html = demo.fetch("/")
    output = demo.log()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(page)
        for s in f.samples
    }
    tokens = sum(v for (name, _), v in samples.items() if name == "llmcost_tokens_total")
    assert tokens > 0
    up = [v for (name, _), v in samples.items() if name == "llmcost_collector_up"]
    assert up == [1.0, 1.0]
    per_million = samples[("llmcost_effective_cost_per_million_tokens", (("window", "1m"),))]
    assert 0 < per_million < 1000
    assert ("llmcost_breakeven_utilization_ratio", (("window", "1m"),)) in samples
    assert "cost per 1M tokens" in html and "break-even" in html
    assert f"http://127.0.0.1:{demo.port}/" in output
    assert "Traceback" not in output
