"""Prove the real alerting chain works: Prometheus rules → Alertmanager → a webhook.

Alert rules are only as good as the notifications they produce; these checks
send alerts through the real servers so routing, labels, annotations and
resolution are what an operator would really receive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from realparts import PrometheusServer, alertmanager_server
from realparts.alertmanager_server import (
    AlertmanagerError,
    AlertmanagerServer,
    find_alertmanager_binary,
)
from realparts.webhook_receiver import Alert, WebhookReceiver

pytestmark = pytest.mark.realparts

RULES = """\
groups:
  - name: realparts-alerting
    rules:
      - alert: TestAlwaysFiring
        expr: vector(1)
        for: 0s
        labels:
          severity: test
        annotations:
          summary: "always firing, value {{ $value }}"
      - alert: TestSwitchFiring
        expr: realparts_switch == 1
        for: 0s
        labels:
          severity: test
        annotations:
          summary: switch is on
"""


class _Switch:
    """A scrape target whose single gauge the test flips to fire or resolve an alert."""

    def __init__(self) -> None:
        self.on = True
        switch = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                body = f"# TYPE realparts_switch gauge\nrealparts_switch {int(switch.on)}\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Keep pytest output clean."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def switch() -> Iterator[_Switch]:
    target = _Switch()
    thread = threading.Thread(target=target.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        target.server.shutdown()
        target.server.server_close()


def _named(name: str, status: str) -> Callable[[Alert], bool]:
    def match(alert: Alert) -> bool:
        return alert["labels"].get("alertname") == name and alert["status"] == status

    return match


def _unix(stamp: str) -> float:
    """Alertmanager's RFC 3339 UTC times (any number of fraction digits) as unix time."""
    whole, _, fraction = stamp.removesuffix("Z").partition(".")
    parsed = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return parsed.timestamp() + float(f"0.{fraction or 0}")


def test_alerts_reach_webhook_and_resolve(tmp_path: Path, switch: _Switch) -> None:
    find_alertmanager_binary()  # a missing binary fails here with install instructions
    rules = tmp_path / "alerting.rules.yml"
    rules.write_text(RULES)
    with (
        WebhookReceiver() as webhook,
        AlertmanagerServer(webhook.url) as alertmanager,
        PrometheusServer(
            [switch.target],
            scrape_interval="1s",
            evaluation_interval="1s",
            extra_rule_files=[rules],
            alertmanager_url=alertmanager.url,
        ) as prometheus,
    ):

        def diagnostics() -> str:
            return (
                f"prometheus alerts: {prometheus.alerts()}\n"
                f"alertmanager alerts: {alertmanager.alerts()}\n"
                f"--- alertmanager log ---\n{alertmanager.log_tail(15)}"
            )

        try:
            always = webhook.wait_for(_named("TestAlwaysFiring", "firing"), timeout=60)
            on = webhook.wait_for(_named("TestSwitchFiring", "firing"), timeout=30)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{diagnostics()}") from None

        assert always["labels"] == {"alertname": "TestAlwaysFiring", "severity": "test"}
        assert always["annotations"] == {"summary": "always firing, value 1"}
        assert on["labels"] == {
            "alertname": "TestSwitchFiring",
            "severity": "test",
            "instance": switch.target,
            "job": "realparts",
        }
        assert on["annotations"] == {"summary": "switch is on"}

        # Prometheus and Alertmanager both report what the webhook saw.
        firing = {a["labels"]["alertname"]: a for a in prometheus.alerts()}
        assert firing["TestAlwaysFiring"]["state"] == "firing"
        held = alertmanager.alerts('alertname="TestAlwaysFiring"')
        assert [a["status"]["state"] for a in held] == ["active"]
        groups = prometheus.rules("alert")
        assert {r["name"] for g in groups for r in g["rules"]} == {
            "TestAlwaysFiring",
            "TestSwitchFiring",
        }

        mark = webhook.mark()
        switch.on = False
        flipped_at = time.time()
        try:
            resolved = webhook.wait_for(
                _named("TestSwitchFiring", "resolved"), timeout=30, since=mark
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{diagnostics()}") from None
        assert resolved["labels"] == on["labels"]
        assert resolved["startsAt"] == on["startsAt"]
        # Resolved at an evaluation that saw the flip (the scrape may start just before it).
        assert _unix(resolved["endsAt"]) >= flipped_at - 1.0
        assert _unix(resolved["endsAt"]) > _unix(resolved["startsAt"])

        # Checked while Prometheus still re-sends it: stopping the servers may resolve it.
        assert not [a for a in webhook.alerts() if _named("TestAlwaysFiring", "resolved")(a)]
        assert webhook.errors() == []


def test_prometheus_config_points_at_alertmanager() -> None:
    config = PrometheusServer([], alertmanager_url="http://127.0.0.1:9093/am").config()
    assert config["alerting"] == {
        "alertmanagers": [
            {
                "scheme": "http",
                "timeout": "5s",
                "api_version": "v2",
                "static_configs": [{"targets": ["127.0.0.1:9093"]}],
                "path_prefix": "/am",
            }
        ]
    }
    assert "alerting" not in PrometheusServer([]).config()
    with pytest.raises(ValueError, match="alertmanager_url"):
        PrometheusServer([], alertmanager_url="127.0.0.1:9093").config()


def test_alertmanager_that_dies_reports_its_log() -> None:
    find_alertmanager_binary()
    server = AlertmanagerServer("http://127.0.0.1:9/unused", group_interval="soon")
    try:
        with pytest.raises(AlertmanagerError, match="exited early") as info:
            server.start()
        assert "not a valid duration" in str(info.value)
    finally:
        server.stop()


def test_missing_alertmanager_binary_names_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ALERTMANAGER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(alertmanager_server, "_DEBIAN_DEFAULT", str(tmp_path / "none"))
    with pytest.raises(RuntimeError, match="apt-get install prometheus-alertmanager"):
        find_alertmanager_binary()

    monkeypatch.setenv("ALERTMANAGER_BIN", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="ALERTMANAGER_BIN"):
        find_alertmanager_binary()
