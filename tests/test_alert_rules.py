"""The rule files: one source, valid for promtool, unit-tested, each alert documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from realparts.timeouts import scaled

from llm_cost_exporter.cli import main
from llm_cost_exporter.generators.rules import (
    ALERTING_FILE,
    RECORDING_FILE,
    RuleParams,
    params_with,
    parse_overrides,
    render,
)

ALERTS = Path(__file__).parent.parent / "alerts"
RUNBOOK = (ALERTS / "runbook.md").read_text()

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


PROMTOOL_TIMEOUT = 600.0
"""Seconds (before LLMCOST_TEST_TIMEOUT_SCALE) a promtool run may take: only a hang
gets near it; `promtool test rules` needs half a minute of CPU for the longest file."""


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["promtool", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=scaled(PROMTOOL_TIMEOUT),
        check=False,
    )


def alerts_in(text: str) -> list[dict]:
    groups = yaml.safe_load(text)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_committed_rule_files_are_the_default_rendering() -> None:
    for name, text in render(RuleParams()).items():
        assert (ALERTS / name).read_text() == text, (
            f"alerts/{name} differs from its source: run "
            "`llm-cost-exporter rules --output-dir alerts`"
        )


def test_promtool_accepts_the_committed_rules() -> None:
    result = promtool("check", "rules", ALERTS / RECORDING_FILE, ALERTS / ALERTING_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    """Each test file in its own promtool, all at once: promtool evaluates on one core,
    and each file evaluates every rule group at every step of hours of series."""
    tests = sorted((ALERTS / "tests").glob("*.yml"))
    assert len(tests) >= 2
    with ThreadPoolExecutor(max_workers=len(tests)) as pool:
        results = list(pool.map(lambda path: promtool("test", "rules", path), tests))
    failed = [
        f"{path.name}:\n{result.stdout}{result.stderr}"
        for path, result in zip(tests, results, strict=True)
        if result.returncode != 0
    ]
    assert not failed, "\n".join(failed)


def test_every_alert_has_unit_tests_on_both_sides() -> None:
    """Each alert is expected to fire in some case and to stay silent in another."""
    fired: set[str] = set()
    silent: set[str] = set()
    for path in (ALERTS / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts_in((ALERTS / ALERTING_FILE).read_text())}
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_every_alert_is_complete_and_has_its_runbook_section() -> None:
    headings = {h.lower() for h in re.findall(r"^## (\w+)$", RUNBOOK, re.MULTILINE)}
    for rule in alerts_in((ALERTS / ALERTING_FILE).read_text()):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == name.lower() and anchor in headings, name
        assert rule["for"], name


def test_every_recording_rule_follows_the_naming_convention() -> None:
    groups = yaml.safe_load((ALERTS / RECORDING_FILE).read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        level, metric, operation = rule["record"].split(":")
        assert level and metric.startswith("llmcost_") and operation, rule["record"]


def test_short_windows_render_valid_rules(tmp_path: Path) -> None:
    code = main(
        [
            "rules",
            "--output-dir",
            str(tmp_path),
            "--set",
            "breakeven_page_window=2m",
            "--set",
            "breakeven_page_for=30s",
            "--set",
            "gpu_utilization_threshold=0.8",
        ]
    )
    assert code == 0
    text = (tmp_path / ALERTING_FILE).read_text()
    assert "instance:llmcost_cost_ratio:ratio_rate2m > 1" in text
    assert "instance:llmcost_gpu_selected_utilization_ratio:avg6h < 0.8" in text
    assert "breakeven_page_window=2m" in text.splitlines()[1]
    assert "instance:llmcost_cost_ratio:ratio_rate2m" in (tmp_path / RECORDING_FILE).read_text()
    result = promtool("check", "rules", tmp_path / RECORDING_FILE, tmp_path / ALERTING_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"breakeven_page_window": "1 day"}, "breakeven_page_window"),
        ({"window_step": "5 minutes"}, "window_step"),
        ({"gpu_utilization_threshold": "60%"}, "gpu_utilization_threshold"),
        ({"gpu_utilization_threshold": "60"}, "gpu_utilization_threshold"),
        ({"no_such": "1"}, "no_such: unknown parameter"),
    ],
)
def test_bad_parameters_are_refused_by_name(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        params_with(overrides)


def test_bad_parameters_on_the_command_line_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["rules", "--output-dir", "unused", "--set", "job"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err
    assert parse_overrides(["job = llm"]) == {"job": "llm"}


def test_readme_lists_every_alert_with_its_severity() -> None:
    readme = (ALERTS.parent / "README.md").read_text()
    documented = dict(re.findall(r"^\| `(LLMCost\w+)` \| (\w+) \|", readme, re.MULTILINE))
    rules = alerts_in((ALERTS / ALERTING_FILE).read_text())
    assert documented == {rule["alert"]: rule["labels"]["severity"] for rule in rules}
