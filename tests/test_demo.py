"""`--demo`: live figures on / and /metrics with nothing but this package."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from realparts import free_port, wait_http_ok


def test_demo_shows_live_figures() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30)
        time.sleep(5)  # two more collection cycles
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            page = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            html = response.read().decode()
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
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
    assert f"http://127.0.0.1:{port}/" in output
    assert "Traceback" not in output
