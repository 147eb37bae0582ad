"""The page, end to end on real parts: simulator → exporter → Prometheus → Alertmanager.

The rules are the committed source rendered with windows of seconds instead of
hours. The load drops below break-even and the page arrives with its labels and
live figures; the load comes back and the page resolves; the exporter stops and
"exporter down" fires.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import minimal_config_dict
from realparts import PrometheusServer
from realparts.alertmanager_server import AlertmanagerServer
from realparts.exporter_process import ExporterProcess
from realparts.simulator_process import SimulatorProcess
from realparts.webhook_receiver import WebhookReceiver

from llm_cost_exporter.generators.rules import params_with, render

pytestmark = pytest.mark.realparts

JOB = "llm-cost"
PAGE_WINDOW = 12
PAGE_FOR = 4
"""Seconds. The page fires when the quiet load fills ~70% of its window and then holds
for PAGE_FOR; by then the window is all quiet, so the figures it prints are the quiet ones."""
WARN_FOR = 4
"""Longer than the first scrapes, where no tokens have been counted yet (ratio +Inf)."""
SHORT = {
    "job": JOB,
    "breakeven_page_window": f"{PAGE_WINDOW}s",
    "breakeven_page_for": f"{PAGE_FOR}s",
    "breakeven_warn_window": f"{PAGE_WINDOW // 2}s",
    "breakeven_warn_for": f"{WARN_FOR}s",
    "window_step": "2s",  # two scrapes
    "exporter_down_for": "2s",
    "health_interval": "1s",
}
CAPACITY = 2000.0
BUSY, QUIET = 0.8, 0.05


def write_rules(directory: Path) -> list[Path]:
    paths = []
    for name, text in render(params_with(SHORT)).items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def is_alert(name: str, status: str):
    return lambda alert: alert["labels"]["alertname"] == name and alert["status"] == status


def figures(description: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+|[-+]Inf", description)]


def test_below_break_even_pages_resolves_and_exporter_down_fires(tmp_path: Path) -> None:
    simulator = SimulatorProcess(
        tmp_path,
        "--profile", "steady",
        "--level", str(BUSY),
        "--capacity", str(CAPACITY),
    )  # fmt: skip
    with simulator, WebhookReceiver() as webhook, AlertmanagerServer(webhook.url) as alertmanager:
        config = minimal_config_dict(
            engines=[{"url": simulator.engine_url(0)}],
            collection={"interval": "500ms", "timeout": "400ms"},
            capacity={"tokens_per_second": CAPACITY},
            nvml={"enabled": False},
        )
        exporter = ExporterProcess(config, tmp_path).start()
        try:
            with PrometheusServer(
                [f"127.0.0.1:{exporter.port}"],
                scrape_interval="1s",
                evaluation_interval="1s",
                job_name=JOB,
                extra_rule_files=write_rules(tmp_path),
                alertmanager_url=alertmanager.url,
            ) as prometheus:
                prometheus.wait_until_scraped()
                # Busy: $3.20/h against ~1,600 tok/s at ~$1.61 per 1M on the API; a third of it.
                ratio = prometheus.wait_for_scalar(
                    f'instance:llmcost_cost_ratio:ratio_rate{PAGE_WINDOW}s{{job="{JOB}"}}',
                    lambda v: v is not None and v < 0.5,
                    timeout=60,
                )
                assert ratio < 0.5
                # Long enough for either break-even alert to fire and be notified.
                time.sleep(max(PAGE_FOR, WARN_FOR) + 4)
                assert not [a for a in webhook.alerts() if "BreakEven" in a["labels"]["alertname"]]

                simulator.control(profile="steady", level=QUIET)
                page = webhook.wait_for(is_alert("LLMCostBelowBreakEven", "firing"), timeout=90)
                assert page["labels"] == {
                    "alertname": "LLMCostBelowBreakEven",
                    "severity": "critical",
                    "instance": f"127.0.0.1:{exporter.port}",
                    "job": JOB,
                }
                notes = page["annotations"]
                assert notes["summary"] == (
                    f"127.0.0.1:{exporter.port} cost more than the API over the last {PAGE_WINDOW}s"
                )
                assert notes["runbook_url"].endswith("runbook.md#llmcostbelowbreakeven")
                spent, per_million, api, utilization, breakeven = figures(notes["description"])
                # Quiet: ~100 tok/s, so $3.20/h buys ~$8.9 per 1M against ~$1.6 on the API.
                assert spent > 1.5 and per_million > api > 1.0, notes["description"]
                assert utilization < breakeven, notes["description"]
                assert "unknown" not in notes["description"]

                mark = webhook.mark()
                simulator.control(profile="steady", level=BUSY)
                resolved = webhook.wait_for(
                    is_alert("LLMCostBelowBreakEven", "resolved"), timeout=90, since=mark
                )
                assert resolved["labels"] == page["labels"]

                mark = webhook.mark()
                exporter.stop()
                down = webhook.wait_for(
                    is_alert("LLMCostExporterDown", "firing"), timeout=60, since=mark
                )
                assert down["labels"]["instance"] == f"127.0.0.1:{exporter.port}"
                assert down["labels"]["severity"] == "warning"
                assert "unknown, not zero" in down["annotations"]["description"]
        finally:
            exporter.stop()
    assert webhook.errors() == []
