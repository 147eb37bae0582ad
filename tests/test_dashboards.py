"""The dashboards' JSON: one source, valid Grafana, every metric a real one."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_readme import exported_families

from llm_cost_exporter.cli import main
from llm_cost_exporter.generators.dashboards import MAY_BE_EMPTY, render_files
from llm_cost_exporter.generators.rules import RECORDING_FILE, RuleParams, render

DASHBOARDS = Path(__file__).parent.parent / "dashboards"
FIXTURES = Path(__file__).parent / "fixtures" / "vllm"
BOARDS = {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}
PROMQL_WORDS = {
    "sum", "by", "without", "on", "and", "or", "unless", "bool", "rate", "increase",
    "sort_desc", "histogram_quantile", "label_values", "le", "model", "instance", "cluster",
    "component", "kind", "job", "model_name", "collector", "target", "reason", "inf", "e6",
}  # fmt: skip


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return board["panels"]


def expressions(board: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in panels(board) for t in p["targets"]]
    queries += [v["query"]["query"] for v in variables(board) if v["type"] == "query"]
    return queries


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return board["templating"]["list"]


def test_committed_files_are_the_generated_ones() -> None:
    generated = render_files()
    committed = {p.name: p.read_text() for p in DASHBOARDS.iterdir() if p.is_file()}
    assert committed == generated, "run `llm-cost-exporter dashboards --output-dir dashboards`"


def test_three_dashboards_with_unique_uids_and_a_current_schema() -> None:
    assert len(BOARDS) == 3
    assert len({b["uid"] for b in BOARDS.values()}) == 3
    for board in BOARDS.values():
        assert board["schemaVersion"] >= 36
        assert board["title"] and board["description"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_have_unique_ids_and_do_not_overlap(name: str) -> None:
    board = BOARDS[name]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_has_a_unit_decimals_a_description_and_the_datasource_variable(
    name: str,
) -> None:
    for panel in panels(BOARDS[name]):
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["unit"] and isinstance(defaults["decimals"], int), panel["title"]
        assert len(panel["description"]) > 40, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    board = BOARDS[name]
    assert set(uids(board)) == {board["uid"], "${datasource}"}, "a hard-coded uid"


def uids(node: Any) -> list[str]:
    """Every value of a `uid` key anywhere in the JSON."""
    if isinstance(node, dict):
        own = [node["uid"]] if "uid" in node else []
        return own + [u for value in node.values() for u in uids(value)]
    if isinstance(node, list):
        return [u for item in node for u in uids(item)]
    return []


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_variables_are_defined_before_use(name: str) -> None:
    board = BOARDS[name]
    defined: set[str] = {"__range", "__interval", "__rate_interval"}
    for variable in variables(board):
        query = json.dumps(variable.get("query", ""))
        for used in re.findall(r"\$(\w+)", query):
            assert used in defined, f"variable {variable['name']} uses ${used} before it exists"
        defined.add(variable["name"])
    for panel in panels(board):
        for used in re.findall(r"\$\{?(\w+)", json.dumps(panel)):
            assert used in defined, f"{panel['title']} uses undefined ${used}"
    assert [v["name"] for v in variables(board)][:2] == ["datasource", "cluster"]


def known_metrics() -> set[str]:
    """What the exporter exports, what the recording rules record, and vLLM's own
    series (the latency panels read its histograms, scraped from the engines)."""
    recorded = yaml.safe_load(render(RuleParams())[RECORDING_FILE])["groups"]
    names = {rule["record"] for group in recorded for rule in group["rules"]}
    for name, (kind, _) in exported_families().items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    for page in FIXTURES.glob("*.prom"):
        names |= set(re.findall(r"^(vllm:[a-z_:]+?)(?:\{| )", page.read_text(), re.MULTILINE))
    return names


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_metric_referenced_is_exported_or_recorded(name: str) -> None:
    known = known_metrics()
    for expr in expressions(BOARDS[name]):
        text = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
            if word in PROMQL_WORDS or not (word.startswith(("llmcost", "vllm:")) or ":" in word):
                continue
            assert word in known, f"{word} in {expr}"


def test_latency_panels_read_both_vllm_names_of_inter_token_latency() -> None:
    capacity = BOARDS["capacity-latency.json"]
    panel = next(p for p in panels(capacity) if p["title"] == "Inter-token latency")
    for target in panel["targets"]:
        assert "vllm:inter_token_latency_seconds_bucket" in target["expr"]
        assert "vllm:time_per_output_token_seconds_bucket" in target["expr"]


def test_dashboards_link_to_each_other_and_to_the_runbook() -> None:
    uids = {b["uid"] for b in BOARDS.values()}
    for board in BOARDS.values():
        urls = [link["url"] for link in board["links"]]
        assert {f"/d/{uid}" for uid in uids - {board["uid"]}} <= set(urls)
        assert any(url.endswith("alerts/runbook.md") for url in urls)


def test_panels_that_may_be_empty_exist_and_are_documented() -> None:
    titles = {p["title"] for b in BOARDS.values() for p in panels(b)}
    assert set(MAY_BE_EMPTY) <= titles
    reference = (DASHBOARDS / "README.md").read_text()
    for title in titles:
        assert f"### {title}\n" in reference


def test_money_panels_follow_the_currency(tmp_path: Path) -> None:
    assert main(["dashboards", "--output-dir", str(tmp_path), "--currency", "EUR"]) == 0
    fleet = json.loads((tmp_path / "fleet-cost-overview.json").read_text())
    units = {p["fieldConfig"]["defaults"]["unit"] for p in panels(fleet)}
    assert "currencyEUR" in units and "currencyUSD" not in units
    assert main(["dashboards", "--output-dir", str(tmp_path), "--currency", "euro"]) == 2
