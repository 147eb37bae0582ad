"""The dashboards' JSON: one source, valid Grafana, every metric a real one."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_readme import exported_families

from llm_cost_exporter.cli import main
from llm_cost_exporter.generators.dashboards import MAY_BE_EMPTY, render_files
from llm_cost_exporter.generators.rules import RECORDING_FILE, RuleParams, render
from llm_cost_exporter.tools.simulator.formats import PAGE_FORMATS

DASHBOARDS = Path(__file__).parent.parent / "dashboards"
FIXTURES = Path(__file__).parent / "fixtures" / "vllm"
SIMULATOR = "llm_cost_exporter.tools.simulator"
ENGINE_PREFIXES = ("vllm:", "sglang:", "lmdeploy:", "llamacpp:", "tgi_", "nv_")
"""How each engine's own series begin (vLLM, SGLang, LMDeploy, llama.cpp, TGI, Triton)."""
RUNTIME_PREFIXES = ("process_", "python_", "http_")
"""Series of the engines' runtimes, not of the engines: no panel reads them."""
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$", re.MULTILINE)
LABEL_NAME = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
QUANTILE = re.compile(r"histogram_quantile\((\S+),")
RATE = re.compile(r"rate\((?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<selector>\{[^}]*\})?\[")
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


def engine_pages() -> dict[str, str]:
    """Every engine page the project holds: the simulator's templates (one per engine
    format, written from or rendered by each engine's own code) and the vLLM fixtures."""
    pages = {p.name: p.read_text() for p in sorted(FIXTURES.glob("*.prom"))}
    for page_format in PAGE_FORMATS.values():
        template = resources.files(SIMULATOR).joinpath("templates", page_format.TEMPLATE)
        pages[page_format.TEMPLATE] = template.read_text(encoding="utf-8")
    return pages


def engine_series() -> dict[str, set[str]]:
    """Each sample name an engine page shows -> the label names it carries (`le` aside)."""
    series: dict[str, set[str]] = {}
    for page in engine_pages().values():
        # Read as written: the client's parser would add `_total` to TGI's and Triton's
        # counters, which Prometheus stores under their own names.
        for name, labels in SAMPLE.findall(page):
            series.setdefault(name, set()).update(set(LABEL_NAME.findall(labels)) - {"le"})
    return series


def known_metrics() -> set[str]:
    """What the exporter exports, what the recording rules record, and the engines' own
    series (the latency panels read them, scraped from the engines)."""
    recorded = yaml.safe_load(render(RuleParams())[RECORDING_FILE])["groups"]
    names = {rule["record"] for group in recorded for rule in group["rules"]}
    for name, (kind, _) in exported_families().items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names | set(engine_series())


def test_every_engine_family_has_its_engines_prefix() -> None:
    """The metric-name check below recognises engine series by these prefixes."""
    for name, page in engine_pages().items():
        for family in text_string_to_metric_families(page):
            assert family.name.startswith((*ENGINE_PREFIXES, *RUNTIME_PREFIXES)), (name, family)
    for page_format in PAGE_FORMATS.values():
        assert page_format.TEMPLATE in engine_pages()


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_metric_referenced_is_exported_or_recorded(name: str) -> None:
    known = known_metrics()
    for expr in expressions(BOARDS[name]):
        text = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
            if word in PROMQL_WORDS or not (
                word.startswith(("llmcost", *ENGINE_PREFIXES)) or ":" in word
            ):
                continue
            assert word in known, f"{word} in {expr}"


def capacity_panel(title: str) -> dict[str, Any]:
    return next(p for p in panels(BOARDS["capacity-latency.json"]) if p["title"] == title)


def test_latency_panels_read_both_vllm_names_of_inter_token_latency() -> None:
    panel = capacity_panel("Inter-token latency")
    vllm = [t for t in panel["targets"] if t["legendFormat"].startswith("vLLM ")]
    assert len(vllm) == 2
    for target in vllm:
        assert "vllm:inter_token_latency_seconds_bucket" in target["expr"]
        assert "vllm:time_per_output_token_seconds_bucket" in target["expr"]


def test_latency_panels_cover_each_engines_latency_families() -> None:
    """One panel per latency, a p50 and a p95 query per histogram family, a mean for Triton."""
    wanted = {
        "Time to first token": {
            "vLLM": "vllm:time_to_first_token_seconds_bucket",
            "SGLang": "sglang:time_to_first_token_seconds_bucket",
            "LMDeploy": "lmdeploy:time_to_first_token_seconds_bucket",
        },
        "Inter-token latency": {
            "vLLM": "vllm:inter_token_latency_seconds_bucket",
            "SGLang": "sglang:inter_token_latency_seconds_bucket",
            "LMDeploy": "lmdeploy:time_per_output_token_seconds_bucket",
            "TGI": "tgi_request_mean_time_per_token_duration_bucket",
        },
        "End-to-end request latency": {
            "vLLM": "vllm:e2e_request_latency_seconds_bucket",
            "SGLang": "sglang:e2e_request_latency_seconds_bucket",
            "LMDeploy": "lmdeploy:e2e_request_latency_seconds_bucket",
            "TGI": "tgi_request_duration_bucket",
            "Triton": "nv_inference_request_duration_us",
        },
        "Queue time": {
            "vLLM": "vllm:request_queue_time_seconds_bucket",
            "LMDeploy": "lmdeploy:request_queue_time_seconds_bucket",
            "TGI": "tgi_request_queue_duration_bucket",
            "Triton": "nv_inference_queue_duration_us",
        },
    }
    for title, families in wanted.items():
        panel = capacity_panel(title)
        assert panel["fieldConfig"]["defaults"]["unit"] == "s"
        assert "llama.cpp" in panel["description"]
        by_engine: dict[str, list[dict[str, Any]]] = {}
        for target in panel["targets"]:
            by_engine.setdefault(target["legendFormat"].split()[0], []).append(target)
        assert set(by_engine) == set(families), title
        for engine, metric in families.items():
            targets = by_engine[engine]
            assert all(metric in t["expr"] for t in targets), (title, engine)
            legends = sorted(t["legendFormat"].split()[-1] for t in targets)
            if engine == "Triton":
                assert legends == ["mean"]
                (target,) = targets
                assert "nv_inference_request_success" in target["expr"]
                assert target["expr"].endswith("/ 1e6")  # microseconds to seconds
            else:
                assert legends == ["p50", "p95"], (title, engine)
                quantiles = sorted(QUANTILE.match(t["expr"])[1] for t in targets)
                assert quantiles == ["0.5", "0.95"]


def test_engine_series_are_filtered_by_their_model_label_and_legends_name_it() -> None:
    """$model applies to every engine family with a model label; the legend names the
    engine and the model (or, for pages naming none, the scraped instance)."""
    series = engine_series()
    checked = 0
    for board in BOARDS.values():
        for panel in panels(board):
            for target in panel["targets"]:
                for match in RATE.finditer(target["expr"]):
                    name = match["name"]
                    if not name.startswith(ENGINE_PREFIXES):
                        continue
                    checked += 1
                    labels = series[name]
                    model_label = next((m for m in ("model_name", "model") if m in labels), None)
                    selector = match["selector"] or ""
                    legend = target["legendFormat"]
                    if model_label is None:
                        assert selector == "", (name, "no model label to filter")
                        assert "{{instance}}" in legend, legend
                    else:
                        assert selector == f'{{{model_label}=~"$model"}}', target["expr"]
                        assert f"{{{{{model_label}}}}}" in legend, legend
    assert checked >= 20


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
