"""Every dashboard query, run against a real Prometheus that scraped a real exporter
and every engine of a mixed node.

A simulator serves one engine of each type (vLLM, SGLang, llama.cpp, TGI, LMDeploy,
Triton), each in its own page format, with its own model, on its own H100 of the
fake NVML, at a steady 30% load (vLLM's at 150%, so it preempts). The exporter reads
them with engines[].type; Prometheus scrapes the exporter and each engine's own page
every second (the latency panels read the engines' histograms) with the default
recording rules loaded. After 15 seconds of data, each dashboard's variables are
resolved the way Grafana does with "All" selected, and every panel query runs with
them substituted: no query may fail, and each returns data unless its panel is listed
in `MAY_BE_EMPTY` with the reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import minimal_config_dict
from realparts import PrometheusServer
from realparts.exporter_process import ExporterProcess
from realparts.fake_nvml import FakeGpu, FakeNvmlState, subprocess_env
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.generators.dashboards import (
    LATENCY_PANELS,
    MAY_BE_EMPTY,
    Histogram,
    render_dashboards,
)
from llm_cost_exporter.generators.rules import RECORDING_FILE, RuleParams, render

pytestmark = pytest.mark.realparts

JOB = "llm-cost"
ENGINES = (
    # (engines[].type, simulator page format, engines[].model)
    ("vllm", "v1", None),
    ("sglang", "sglang", None),
    ("llamacpp", "llamacpp", None),  # its model from the engine's /v1/models
    ("tgi", "tgi", None),  # its model from the engine's /info
    ("lmdeploy", "lmdeploy", None),
    ("triton", "triton", "triton-model"),  # Triton's model label is its own model name
)
OVERLOADED = 1.5
"""The vLLM engine's demand over its capacity; the others run at 30%."""
MODELS = tuple(f"{engine_type}-model" for engine_type, _, _ in ENGINES)
"""The model each engine serves, as the simulator names it and the exporter reads it."""
H100 = "NVIDIA H100 80GB HBM3"
DATA_SECONDS = 15
"""How long Prometheus collects before the queries run: 5m rates need two samples only,
the learned capacity one `learn_window` (5 s) of the exporter's readings."""
RANGE_SECONDS = 60
"""The dashboards' time range in this run: `$__range` and the range queries' span."""
STEP_SECONDS = 2
ALL = ".*"
"""The `allValue` of the multi-select variables: what Grafana substitutes for "All"."""
BUILTINS = {
    "__range": f"{RANGE_SECONDS}s",
    "__range_s": str(RANGE_SECONDS),
    "__range_ms": str(RANGE_SECONDS * 1000),
    "__interval": f"{STEP_SECONDS}s",
    "__interval_ms": str(STEP_SECONDS * 1000),
    "__rate_interval": "4s",
}
"""Grafana's global variables, as it would fill them for this run's time range."""
KNOWN_BROKEN: dict[tuple[str, str], str] = {}
"""(dashboard file, panel title) -> why its query is wrong; fixed panels leave this list."""
LOSING_NODES = "Nodes ranked by money lost below break-even"
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)$", re.S)


@dataclass
class Stack:
    """The running parts and the instant the dashboards are looked at."""

    prometheus: PrometheusServer
    instance: str
    """The exporter's `instance` label in Prometheus."""
    end: float = 0.0
    """Unix time the queries are evaluated at."""


@pytest.fixture(scope="module")
def stack(lib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator (one engine per type) → exporter (fake NVML) → Prometheus with the
    default recording rules, scraping the exporter and every engine page."""
    workdir = tmp_path_factory.mktemp("dashboards_prometheus")
    state_path = workdir / "nvml-state.txt"
    gpus = [
        FakeGpu(
            name=H100,
            gpm_supported=True,
            util_gpu=90,
            sm_activity=31.0,
            power_mw=450_000 + index,
            energy_mj=1_000_000 * (index + 1),
            memory_used=40 * 1024**3,
        )
        for index in range(len(ENGINES))
    ]
    FakeNvmlState(gpus).write(state_path)
    rules = workdir / RECORDING_FILE
    rules.write_text(render(RuleParams())[RECORDING_FILE])
    simulator = SimulatorProcess(
        workdir,
        "--engines", str(len(ENGINES)),
        "--model", ",".join(MODELS),
        "--page-format", ",".join(page_format for _, page_format, _ in ENGINES),
        "--profile", "steady",
        "--level", "0.3",
        "--capacity", "1000",
        # End-of-request counters (SGLang's, TGI's, Triton's) move within seconds.
        "--acceleration", "10",
        "--tokens-in-wall-time",
    )  # fmt: skip
    with contextlib.ExitStack() as parts:
        parts.enter_context(simulator)
        # vLLM's engine gets more than it can serve: its backlog preempts requests.
        simulator.control(profile="steady", level=OVERLOADED, engines=[0])
        engines = []
        for index, (engine_type, _, model) in enumerate(ENGINES):
            engine = {"url": simulator.engine_url(index), "type": engine_type, "gpus": [index]}
            if model is not None:
                engine["model"] = model
            engines.append(engine)
        config = minimal_config_dict(
            engines=engines,
            cost={"gpu_prices_per_hour": {"H100": 2.99}},
            capacity={"tokens_per_second": 4000, "learn_window": "5s"},
            collection={"interval": "1s", "timeout": "800ms"},
        )
        exporter = ExporterProcess(config, workdir, env=subprocess_env(lib_dir, state_path))
        parts.enter_context(exporter)
        simulator_address = f"127.0.0.1:{simulator.port}"
        engine_pages = {
            "job_name": "engines",
            "static_configs": [
                {
                    "targets": [simulator_address],
                    "labels": {
                        "__metrics_path__": f"/engine/{index}/metrics",
                        "instance": f"{simulator_address}/engine/{index}",
                    },
                }
                for index in range(len(ENGINES))
            ],
        }
        prometheus = PrometheusServer(
            [f"127.0.0.1:{exporter.port}"],
            scrape_interval="1s",
            evaluation_interval="1s",
            job_name=JOB,
            extra_rule_files=[rules],
            extra_scrape_configs=[engine_pages],
        )
        parts.enter_context(prometheus)
        prometheus.wait_until_scraped()
        started = time.monotonic()
        prometheus.wait_for(f'instance:llmcost_cost:rate5m{{job="{JOB}"}}')
        time.sleep(max(0.0, DATA_SECONDS - (time.monotonic() - started)))
        for expr in engines_observed():  # under load, end-of-request counters may lag
            prometheus.wait_for(expr)
        down = [t for t in prometheus.targets_health() if t["health"] != "up"]
        assert not down, f"targets not up: {json.dumps(down)[:2000]}\n{exporter.log()[-3000:]}"
        yield Stack(prometheus, f"127.0.0.1:{exporter.port}", end=time.time())


def engines_observed() -> list[str]:
    """A query per latency series the dashboards read, non-empty once it has moved."""
    queries = []
    for _, sources in LATENCY_PANELS.values():
        for source in sources:
            if isinstance(source, Histogram):
                queries.append(f"rate({source.names[0]}_count[5m]) > 0")
            else:
                queries.append(f"rate({source.microseconds}[5m]) > 0")
    return queries


def test_the_node_runs_every_engine_type() -> None:
    assert {engine_type for engine_type, _, _ in ENGINES} == ENGINE_TYPES


def label_values(prometheus: PrometheusServer, selector: str, label: str, end: float) -> list[str]:
    """What Grafana's `label_values(selector, label)` asks Prometheus, over the time range."""
    params = urllib.parse.urlencode(
        {"match[]": selector, "start": str(end - RANGE_SECONDS), "end": str(end)}
    )
    url = f"{prometheus.url}/api/v1/label/{urllib.parse.quote(label)}/values?{params}"
    try:
        with urllib.request.urlopen(url, timeout=scaled(30)) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read().decode(errors="replace") or "{}")
    if payload.get("status") != "success":
        raise AssertionError(
            f"label_values({selector}, {label}): {payload.get('errorType')}: {payload.get('error')}"
        )
    return sorted(payload["data"])


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace `$name`, `${name}` and `[[name]]`; an unknown variable fails the test."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in values, f"unknown variable ${name} in {text!r}"
        return values[name]

    return VARIABLE.sub(replace, text)


def resolve_variables(
    board: dict[str, Any], stack: Stack
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each query variable's options and the value Grafana substitutes, in order.

    Multi-select variables take "All" (their `allValue`); a single-select one takes its
    first option, as Grafana does when nothing is chosen yet.
    """
    values = dict(BUILTINS)
    options: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "datasource":
            values[variable["name"]] = "prometheus"
            continue
        assert variable["type"] == "query", f"{variable['name']}: unhandled {variable['type']}"
        match = LABEL_VALUES.match(variable["query"]["query"])
        assert match, f"{variable['name']}: not label_values(...): {variable['query']['query']}"
        selector = substitute(match["selector"], values)
        found = label_values(stack.prometheus, selector, match["label"], stack.end)
        options[variable["name"]] = found
        if variable.get("includeAll"):
            values[variable["name"]] = variable.get("allValue") or "|".join(map(re.escape, found))
        else:
            assert found, f"{variable['name']}: single-select with no options ({selector})"
            values[variable["name"]] = found[0]
    return values, options


def panel_titles() -> set[str]:
    return {panel["title"] for board in render_dashboards().values() for panel in board["panels"]}


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample, in an instant vector or a matrix."""
    return any(series.get("value") or series.get("values") for series in result)


def run_target(stack: Stack, target: dict[str, Any], expr: str) -> list[dict[str, Any]]:
    """Run a target like Grafana: instant at the end, else over the time range."""
    if target["instant"]:
        return stack.prometheus.query(expr, time=stack.end)
    return stack.prometheus.query_range(
        expr, stack.end - RANGE_SECONDS, stack.end, step=STEP_SECONDS
    )


def test_may_be_empty_lists_only_real_panels() -> None:
    """No stale entries: each panel allowed to be empty still exists."""
    assert set(MAY_BE_EMPTY) <= panel_titles()
    assert all(reason.strip() for reason in MAY_BE_EMPTY.values())


def test_known_broken_lists_only_real_panels() -> None:
    """Each panel expected to fail still exists in its dashboard."""
    boards = render_dashboards()
    for name, title in KNOWN_BROKEN:
        assert title in {panel["title"] for panel in boards[name]["panels"]}, (name, title)


def test_variable_queries_resolve_like_grafana(stack: Stack) -> None:
    """cluster may have no values (All = .*); node must list the exporter; model every
    engine's model, each engine type's reader naming it as the engine does."""
    for name, board in render_dashboards().items():
        values, options = resolve_variables(board, stack)
        assert set(options) == {"cluster", "instance", "model"}, name
        assert options["cluster"] == [], (name, options)
        assert values["cluster"] == ALL, name
        assert options["instance"] == [stack.instance], (name, options)
        expected_instance = stack.instance if name == "node-detail.json" else ALL
        assert values["instance"] == expected_instance, name
        assert options["model"] == sorted(MODELS), (name, options)
        assert values["model"] == ALL, name


def test_every_panel_query_runs_and_returns_data(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    """No query fails; each returns data unless its panel may legitimately be empty."""
    failures: list[tuple[str, str, str]] = []
    empty_allowed: list[str] = []
    nan_only: list[str] = []
    for name, board in render_dashboards().items():
        values, _ = resolve_variables(board, stack)
        for panel in board["panels"]:
            title = panel["title"]
            for target in panel["targets"]:
                expr = substitute(target["expr"], values)
                where = f"{name} / {title!r} / {target['refId']}: {expr}"
                try:
                    result = run_target(stack, target, expr)
                except Exception as exc:  # noqa: BLE001 - every failure is reported at once
                    answer = str(exc).split("\n--- prometheus")[0]
                    failures.append((name, title, f"{where}\n    error: {answer}"))
                    continue
                if not has_data(result):
                    if title in MAY_BE_EMPTY:
                        empty_allowed.append(f"{where}\n    empty: {MAY_BE_EMPTY[title]}")
                    else:
                        failures.append((name, title, f"{where}\n    returned no data"))
                    continue
                samples = [
                    float(v)
                    for series in result
                    for _, v in series.get("values") or [series["value"]]
                ]
                if all(math.isnan(v) for v in samples):
                    nan_only.append(where)
    for line in empty_allowed:
        print(f"allowed empty: {line}")
    record_property("allowed_empty", empty_allowed)
    record_property("nan_only", nan_only)
    unexpected = [text for n, t, text in failures if (n, t) not in KNOWN_BROKEN]
    assert not unexpected, "panel queries failed:\n" + "\n".join(unexpected)
    fixed = set(KNOWN_BROKEN) - {(n, t) for n, t, _ in failures}
    assert not fixed, f"listed in KNOWN_BROKEN but working now, remove them: {sorted(fixed)}"
    assert not nan_only, "panel queries with only NaN samples:\n" + "\n".join(nan_only)
    if KNOWN_BROKEN:
        pytest.xfail(f"known broken panels: {KNOWN_BROKEN}")


def test_the_node_below_break_even_is_ranked(stack: Stack) -> None:
    """At 30% load six H100s cost more than the API: the losing-nodes table lists the node."""
    board = render_dashboards()["fleet-cost-overview.json"]
    values, _ = resolve_variables(board, stack)
    (panel,) = [p for p in board["panels"] if p["title"] == LOSING_NODES]
    (target,) = panel["targets"]
    result = stack.prometheus.query(substitute(target["expr"], values), time=stack.end)
    assert [series["metric"] for series in result] == [{"instance": stack.instance}]
    assert float(result[0]["value"][1]) > 0


def panel_results(stack: Stack, title: str) -> dict[str, list[dict[str, Any]]]:
    """Legend template -> the instant results of each target of the capacity panel `title`."""
    board = render_dashboards()["capacity-latency.json"]
    values, _ = resolve_variables(board, stack)
    (panel,) = [p for p in board["panels"] if p["title"] == title]
    return {
        target["legendFormat"]: stack.prometheus.query(
            substitute(target["expr"], values), time=stack.end
        )
        for target in panel["targets"]
    }


def test_latency_panels_show_each_engine_family_under_its_model(stack: Stack) -> None:
    """Each family's lines name the engine's model (TGI's, its page), and the figures are
    the ones its page's histograms hold."""
    simulator_instance = re.compile(r"^127\.0\.0\.1:\d+/engine/3$")  # TGI, engine 3
    for title in ("Time to first token", "Inter-token latency", "End-to-end request latency"):
        for legend, result in panel_results(stack, title).items():
            engine = legend.split()[0]
            labels = [series["metric"] for series in result]
            assert len(labels) == 1, (title, legend, labels)
            if engine == "TGI":
                assert simulator_instance.match(labels[0]["instance"]), labels
            else:
                expected = f"{'triton' if engine == 'Triton' else engine.lower()}-model"
                assert set(labels[0].values()) == {expected}, (title, legend, labels)
    inter_token = panel_results(stack, "Inter-token latency")
    # The SGLang template's 29 inter-token observations all fall in (0.02, 0.025].
    for legend in ("SGLang {{model_name}} p50", "SGLang {{model_name}} p95"):
        (series,) = inter_token[legend]
        assert 0.02 < float(series["value"][1]) <= 0.025, (legend, series)
    # Triton's TensorRT-LLM model took 2 390 000 µs for its 3 requests in the template.
    (triton,) = panel_results(stack, "End-to-end request latency")["Triton {{model}} mean"]
    assert float(triton["value"][1]) == pytest.approx(2.39 / 3, rel=0.01)


def test_preemptions_panel_shows_the_overloaded_engine(stack: Stack) -> None:
    (result,) = panel_results(stack, "Preemptions by model").values()
    rates = {series["metric"]["model"]: float(series["value"][1]) for series in result}
    assert rates["vllm-model"] > 0, rates
    assert all(rate == 0 for model, rate in rates.items() if model != "vllm-model"), rates
