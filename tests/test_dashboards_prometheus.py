"""Every dashboard query, run against a real Prometheus that scraped a real exporter
and every engine of a mixed node.

A simulator serves one engine of each type (vLLM, SGLang, llama.cpp, TGI, LMDeploy,
Triton), each in its own page format, with its own model, on its own H100 of the
fake NVML, at a steady 30% load (vLLM's at 150%, so it preempts). The exporter reads
them with engines[].type; Prometheus scrapes the exporter and each engine's own page
every second (the latency panels read the engines' histograms) with the default
recording rules loaded. Once the data holds what the panels read (see `data_needed`),
each dashboard's variables are resolved the way Grafana does with "All" selected, and
every panel query runs with them substituted: no query may fail, and each returns data
unless its panel is listed in `MAY_BE_EMPTY` with the reason.

The same queries then run on VictoriaMetrics (MetricsQL) holding a copy of every sample
Prometheus stored, scraped and recorded: the same series, and the same values where
nothing extrapolates. The queries reading rate() or increase() are compared on values
over half an hour of counters written to both engines alike, since in the live run every
counter is younger than its window, where the two engines read differently by design.
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
from realparts import PrometheusServer, VictoriaMetricsServer
from realparts.exporter_process import ExporterProcess
from realparts.fake_nvml import FakeGpu, FakeNvmlState, subprocess_env
from realparts.remote_write import snappy_literal, write_request
from realparts.samples import eventually
from realparts.simulator_process import SimulatorProcess
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.registry import ENGINE_TYPES
from llm_cost_exporter.generators.dashboards import (
    LATENCY_PANELS,
    MAY_BE_EMPTY,
    Histogram,
    render_dashboards,
)
from llm_cost_exporter.generators.rules import RECORDING_FILE, params_with, render

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
DATA_TIMEOUT = 60
"""Seconds (scaled) the data may take to hold what the tests read (`data_needed`); a few
seconds after the first scrape on an idle machine."""
RANGE_SECONDS = 60
"""The dashboards' time range in this run: `$__range` and the range queries' span."""
STEP_SECONDS = 2
ALL = ".*"
"""The `allValue` of the multi-select variables: what Grafana substitutes for "All"."""


def builtin_variables(range_seconds: int, step_seconds: int, rate_interval: str) -> dict:
    """Grafana's built-in variables for a time range and a step."""
    return {
        "__range": f"{range_seconds}s",
        "__range_s": str(range_seconds),
        "__range_ms": str(range_seconds * 1000),
        "__interval": f"{step_seconds}s",
        "__interval_ms": str(step_seconds * 1000),
        "__rate_interval": rate_interval,
    }


BUILTINS = builtin_variables(RANGE_SECONDS, STEP_SECONDS, "4s")
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
    """Unix time the queries are evaluated at: on the range queries' step grid, where
    every series Prometheus holds has at least two samples (see `settled_end`)."""


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
    # The breakdowns at every evaluation too, as the test holds seconds of data.
    rules.write_text(render(params_with({"aggregate_interval": "1s"}))[RECORDING_FILE])
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
        end = settled_end(prometheus)
        down = [t for t in prometheus.targets_health() if t["health"] != "up"]
        assert not down, f"targets not up: {json.dumps(down)[:2000]}\n{exporter.log()[-3000:]}"
        yield Stack(prometheus, f"127.0.0.1:{exporter.port}", end=end)


def data_needed() -> list[str]:
    """A query per part of the data the tests read that takes the run a moment, non-empty
    once it is there: the recorded 5m rates (two scrapes, then an evaluation), the learned
    capacity (a `learn_window`, 5 s, of the exporter's readings), the preemptions of the
    overloaded vLLM engine, and each latency series the dashboards read once it has moved."""
    return [
        f'instance:llmcost_cost:rate5m{{job="{JOB}"}}',
        'llmcost_capacity_tokens_per_second{source="learned"}',
        f'rate(llmcost_preemptions_total{{model="{MODELS[0]}"}}[5m]) > 0',
        *engines_observed(),  # under load, end-of-request counters may lag
    ]


def young_series(prometheus: PrometheusServer, end: float) -> list[dict[str, str]]:
    """The series with a single sample at `end` (the data is younger than an hour)."""
    every = prometheus.query('{__name__=~".+"}[1h]', time=end)
    return [series["metric"] for series in every if len(series["values"]) < 2]


def on_step(when: float) -> float:
    """The instant of the range queries' step grid at or before `when`: VictoriaMetrics
    aligns a range query's start and end to whole steps, Prometheus does not."""
    return float(math.floor(when) // STEP_SECONDS * STEP_SECONDS)


def settled_end(prometheus: PrometheusServer) -> float:
    """The latest instant on the step grid, once there is one, at which the data holds
    what the tests read (`data_needed`) and no series Prometheus holds has one sample.

    PromQL's rate() and increase() answer from two samples in their window; MetricsQL's
    from one (its growth from the sample before the window, or from 0). At an instant
    when a series has one sample so far, Prometheus has no rate or increase of it and
    VictoriaMetrics has one: the two stores differ there by design. Each series has a
    single sample for one scrape or evaluation interval after its first; the youngest,
    the recording rules' results, start a rule evaluation after the second scrape. The
    instant is a scrape interval in the past, where every scrape and evaluation is stored.
    """
    last = [""]

    def settled() -> float | None:
        end = on_step(time.time() - 1.0)
        missing = [expr for expr in data_needed() if not prometheus.query(expr, time=end)]
        young = young_series(prometheus, end)
        last[0] = (
            f"at {end}, no data for {missing}; series with a single sample: "
            f"{json.dumps(young)[:2000]}"
        )
        return None if missing or young else end

    try:
        return eventually(settled, DATA_TIMEOUT, "the data the tests read", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; {last[0]}\n{prometheus.log_section(15)}") from None


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


# --- the same dashboards on VictoriaMetrics ---------------------------------------------

WINDOWED = re.compile(r"\b(?:rate|increase)\((?P<selector>[^\[\]()]+)\[(?P<window>\w+)\]\)")
"""The range functions MetricsQL reads differently from PromQL. Prometheus scales the
growth between the first and last samples inside the window to the whole window;
MetricsQL takes the growth since the last sample before the window, and where a
counter has no sample before the window (it was born inside it) counts its first value
as growth from 0. Both read the same once the counter is older than the window, up to
the extrapolation (see `EXTRAPOLATION_TOLERANCE`)."""
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
"""A recording rule's series (`level:metric:operation`)."""
HISTORY_STEP = 15
"""Seconds between two samples of the synthetic history (a common scrape interval)."""
HISTORY_SECONDS = 1800
"""How far the synthetic history goes back: longer than every window the panels read."""


@pytest.fixture(scope="module")
def victoria(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VictoriaMetricsServer]:
    """A VictoriaMetrics holding every sample Prometheus stored, scraped and recorded
    alike, imported as it is."""
    lines = []
    for series in stack.prometheus.query('{__name__=~".+"}[1h]', time=stack.end):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        selector = ",".join(
            f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in labels.items()
        )
        lines += [
            f"{name}{{{selector}}} {value} {round(float(timestamp) * 1000)}"
            for timestamp, value in series["values"]
        ]
    with VictoriaMetricsServer(workdir=tmp_path_factory.mktemp("dashboards-victoria")) as vm:
        vm.import_prometheus(lines)
        vm.flush()
        yield vm


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


def by_labels(result: list[dict[str, Any]]) -> dict[tuple, dict[float, float]]:
    """Series labels -> {timestamp: value}, NaN left out (MetricsQL returns none)."""
    out: dict[tuple, dict[float, float]] = {}
    for series in result:
        points = series.get("values") or [series["value"]]
        out[tuple(sorted(series["metric"].items()))] = {
            float(t): float(v) for t, v in points if not math.isnan(float(v))
        }
    return {key: points for key, points in out.items() if points}


def compare(prometheus: list[dict], victoria: list[dict], values: bool) -> str | None:
    """What differs between the engines' answers (None if nothing): the series and their
    labels always, and with `values` every value at every timestamp."""
    ours, theirs = by_labels(prometheus), by_labels(victoria)
    if set(ours) != set(theirs):
        return f"series differ: Prometheus {sorted(ours)}\n    VictoriaMetrics {sorted(theirs)}"
    if not values:
        return None
    for key, points in ours.items():
        if set(points) != set(theirs[key]):
            return f"{dict(key)}: timestamps {sorted(points)} != {sorted(theirs[key])}"
        for when, a in points.items():
            b = theirs[key][when]
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return f"{dict(key)} at {when}: Prometheus {a}, VictoriaMetrics {b}"
    return None


def test_variables_resolve_the_same_on_victoria_metrics(
    stack: Stack, victoria: VictoriaMetricsServer
) -> None:
    on_victoria = Stack(victoria, stack.instance, end=stack.end)
    for name, board in render_dashboards().items():
        assert resolve_variables(board, on_victoria) == resolve_variables(board, stack), name


def panel_targets(stack: Stack) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, target, expression with Grafana's variables substituted) of every panel."""
    for name, board in render_dashboards().items():
        values, _ = resolve_variables(board, stack)
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = substitute(target["expr"], values)
                yield f"{name} / {panel['title']!r} / {target['refId']}: {expr}", target, expr


def aligned(when: float) -> float:
    """A time both engines read alike: VictoriaMetrics aligns query times to whole steps."""
    step = HISTORY_STEP * STEP_SECONDS
    return float(math.floor(when) // step * step)


def test_every_panel_query_agrees_on_victoria_metrics(
    stack: Stack, victoria: VictoriaMetricsServer, record_property: Callable[[str, object], None]
) -> None:
    """On the live data every panel query runs on MetricsQL and returns the series
    Prometheus returns; the values too, exactly, where the query reads no rate() or
    increase(). Those read counters younger than their windows here, where the two
    engines differ by design (see `WINDOWED`); the synthetic history below compares them.

    Both are asked at the fixture's `end`, on the step grid, where every series has two
    samples: with one, a window's increase() is empty on Prometheus and not on
    VictoriaMetrics (see `settled_end`)."""
    end = stack.end
    assert end == on_step(end), end
    young = young_series(stack.prometheus, end)
    assert not young, f"series with a single sample at {end}: {json.dumps(young)[:2000]}"
    on_prometheus = Stack(stack.prometheus, stack.instance, end=end)
    on_victoria = Stack(victoria, stack.instance, end=end)
    differences = []
    exact = series_only = 0
    for where, target, expr in panel_targets(stack):
        expected = run_target(on_prometheus, target, expr)
        try:
            got = run_target(on_victoria, target, expr)
        except Exception as exc:  # noqa: BLE001 - every failure is reported at once
            differences.append(f"{where}\n    error: {str(exc).splitlines()[0]}")
            continue
        windowed = bool(WINDOWED.search(expr))
        problem = compare(expected, got, values=not windowed)
        if problem:
            differences.append(f"{where}\n    {problem}")
        elif windowed:
            series_only += 1
        else:
            exact += 1
    record_property("exact", exact)
    record_property("series_only", series_only)
    assert not differences, "VictoriaMetrics answers differently:\n" + "\n".join(differences)
    assert exact and series_only


class ReceivingPrometheus(PrometheusServer):
    """A Prometheus that scrapes nothing and takes samples by remote write."""

    def flags(self) -> list[str]:
        return [*super().flags(), "--web.enable-remote-write-receiver"]


def linear_history(
    label_sets: list[dict[str, str]], end: float
) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """`HISTORY_SECONDS` of samples every `HISTORY_STEP` up to `end`, each series a counter
    growing at its own constant rate; a histogram's buckets cumulative in `le`."""
    steps = range(HISTORY_SECONDS // HISTORY_STEP + 1)
    start = end - HISTORY_SECONDS
    out = []
    for index, labels in enumerate(sorted(label_sets, key=lambda s: sorted(s.items()))):
        weight = 1 + index % 7
        if "le" in labels:
            le = float(labels["le"].replace("Inf", "inf"))
            weight = 1 + (min(le, 1e3) if math.isfinite(le) else 2e3) ** 0.5
        # Spend outgrows the API-equivalent, so the losing-nodes table has a node to list.
        rate = 0.25 * weight * (3 if labels["__name__"] == "llmcost_cost_total" else 1)
        samples = [
            (round((start + k * HISTORY_STEP) * 1000), 100 * weight + rate * k * HISTORY_STEP)
            for k in steps
        ]
        out.append((labels, samples))
    return out


def test_windowed_panel_queries_agree_on_a_history_older_than_their_windows(
    stack: Stack, victoria: VictoriaMetricsServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The panels reading rate() or increase(), on half an hour of counters (every series
    of every metric they read that the live run had, each growing at a constant rate)
    written to a second Prometheus and to VictoriaMetrics alike: with every window older
    than the counters and spanned by samples, Prometheus's extrapolation and MetricsQL's
    previous sample agree exactly."""
    end = aligned(stack.end) - 2 * HISTORY_SECONDS
    targets = [(w, t, e) for w, t, e in panel_targets(stack) if WINDOWED.search(e)]
    names = set(label_values(stack.prometheus, '{__name__=~".+"}', "__name__", stack.end))
    label_sets: dict[tuple, dict[str, str]] = {}
    for _, _, expr in targets:
        for name in set(re.findall(r"[a-zA-Z_:][\w:]*", expr)) & names:
            for labels in series_of(stack, f'{{__name__="{name}"}}'):
                label_sets[tuple(sorted(labels.items()))] = labels
    history = linear_history(list(label_sets.values()), end)
    prometheus = ReceivingPrometheus([], workdir=tmp_path_factory.mktemp("history"))
    with prometheus:
        request = urllib.request.Request(
            f"{prometheus.url}/api/v1/write",
            data=snappy_literal(write_request(history)),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        )
        with urllib.request.urlopen(request, timeout=scaled(60)) as response:
            response.read()
        victoria.remote_write(history)
        victoria.flush()
        on_prometheus = Stack(prometheus, stack.instance, end=end)
        on_victoria = Stack(victoria, stack.instance, end=end)
        differences, empty = [], []
        for where, target, expr in targets:
            expected = run_target(on_prometheus, target, expr)
            problem = compare(expected, run_target(on_victoria, target, expr), values=True)
            if problem:
                differences.append(f"{where}\n    {problem}")
            elif not (
                has_data(expected)
                or RECORDED.search(expr)
                or any(f"/ {title!r} /" in where for title in MAY_BE_EMPTY)
            ):
                empty.append(where)
    assert not differences, "VictoriaMetrics answers differently:\n" + "\n".join(differences)
    # The history holds raw counters only: a query reading a recorded series may be empty,
    # as may a panel of series the live run did not have (MAY_BE_EMPTY).
    assert not empty, "no data in the history:\n" + "\n".join(empty)


def series_of(stack: Stack, selector: str) -> list[dict[str, str]]:
    """The label sets of the live series `selector` matches."""
    params = urllib.parse.urlencode(
        {"match[]": selector, "start": str(stack.end - 3600), "end": str(stack.end)}
    )
    with urllib.request.urlopen(
        f"{stack.prometheus.url}/api/v1/series?{params}", timeout=scaled(30)
    ) as response:
        return json.load(response)["data"]
