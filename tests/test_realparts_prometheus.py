"""Prove the real-Prometheus harness works: scrape, read back, rules, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from realparts import PrometheusError, PrometheusServer, find_prometheus_binary, free_port

pytestmark = pytest.mark.realparts

METRICS_PAGE = b"""\
# HELP demo_requests_total Requests served by the demo target.
# TYPE demo_requests_total counter
demo_requests_total{path="/x"} 42
# HELP demo_up_seconds A gauge so the page is not a single series.
# TYPE demo_up_seconds gauge
demo_up_seconds 7.5
"""

RULES = """\
groups:
  - name: realparts
    rules:
      - record: realparts:demo_requests:x2
        expr: demo_requests_total * 2
"""


class _MetricsHandler(BaseHTTPRequestHandler):
    """Serves a fixed exposition page on /metrics, 404 elsewhere."""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(METRICS_PAGE)))
        self.end_headers()
        self.wfile.write(METRICS_PAGE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep pytest output clean."""


@pytest.fixture(scope="module")
def metrics_target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def dead_target() -> str:
    """A port nothing listens on, so scrapes fail with connection refused."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def prom(
    metrics_target: str, dead_target: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    rules = tmp_path_factory.mktemp("rules") / "realparts.rules.yml"
    rules.write_text(RULES)
    with PrometheusServer(
        [metrics_target, dead_target], scrape_interval="1s", extra_rule_files=[rules]
    ) as server:
        server.wait_until_scraped()
        yield server


def test_up_is_1_for_live_target_and_0_for_dead_one(
    prom: PrometheusServer, metrics_target: str, dead_target: str
) -> None:
    assert prom.wait_for_scalar(f'up{{instance="{metrics_target}"}}', lambda v: v == 1) == 1
    assert prom.wait_for_scalar(f'up{{instance="{dead_target}"}}', lambda v: v == 0) == 0

    health = {t["labels"]["instance"]: t for t in prom.targets_health()}
    assert health[metrics_target]["health"] == "up"
    assert health[dead_target]["health"] == "down"
    assert health[dead_target]["lastError"]


def test_counter_value_is_read_back_through_http_api(
    prom: PrometheusServer, metrics_target: str
) -> None:
    value = prom.wait_for_scalar('demo_requests_total{path="/x"}', lambda v: v == 42)
    assert value == 42.0
    series = prom.query("demo_requests_total")
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["instance"] == metrics_target
    assert labels["job"] == "realparts"
    assert labels["path"] == "/x"
    assert prom.query_scalar("demo_up_seconds") == 7.5
    assert prom.query_scalar("does_not_exist_total") is None
    assert prom.query_scalar("1 + 2") == 3.0


def test_extra_rule_files_are_evaluated(prom: PrometheusServer) -> None:
    assert prom.wait_for_scalar("realparts:demo_requests:x2", lambda v: v == 84) == 84


def test_query_range_returns_samples(prom: PrometheusServer) -> None:
    prom.wait_for("demo_requests_total")
    now = time.time()
    matrix = prom.query_range("demo_requests_total", now - 30, now, step=1)
    assert len(matrix) == 1
    assert matrix[0]["values"]
    assert all(float(v) == 42 for _, v in matrix[0]["values"])


def test_bad_expression_raises_with_prometheus_error(prom: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum(")


def test_missing_binary_names_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="apt-get install prometheus"):
        find_prometheus_binary()

    monkeypatch.setenv("PROMETHEUS_BIN", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="PROMETHEUS_BIN"):
        find_prometheus_binary()
