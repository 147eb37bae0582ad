"""The committed rules on VictoriaMetrics: they load in vmalert, and they do what their
promtool unit tests (alerts/tests/*.test.yml) say, read by MetricsQL instead of PromQL.

Every test case's input series are expanded from promtool's notation and imported into
one VictoriaMetrics, each case in a time slot of its own (days apart, so no window of one
case reaches another and `absent()` or fleet sums see one case only). vmalert's replay
mode then evaluates the rules over each case's span, group by group at the test file's
`evaluation_interval` (a group with its own `interval` keeps it, as vmalert runs it).
Rules that read other rules' results run in later replay passes, so every pass reads
results already flushed. Each `promql_expr_test` expression is then an instant query at
its `eval_time`, and each `alert_rule_test` is checked against the firing `ALERTS`
samples vmalert wrote at that instant.

Replay writes the alerts' labels only and cannot run the templates' `query`, so the
expected annotations are rendered by a live vmalert evaluating at each eval_time
(`-datasource.lookback`), against the replayed figures. Where the two engines cannot
agree, `DIFFERENCES` says which expectation and why.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from promtool_notation import STALE, parse_duration, parse_series, samples
from realparts.alertmanager_server import AlertmanagerServer
from realparts.remote_write import STALE_NAN
from realparts.samples import eventually
from realparts.timeouts import scaled
from realparts.victoria_metrics import (
    VictoriaMetricsServer,
    VmalertServer,
    find_vmalert,
    replay_rules,
)
from realparts.webhook_receiver import WebhookReceiver

from llm_cost_exporter.generators.rules import ALERTING_FILE, RECORDING_FILE

pytestmark = pytest.mark.realparts

ALERTS = Path(__file__).parent.parent / "alerts"
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
BASE = datetime(2020, 1, 6, tzinfo=UTC).timestamp()
"""t=0 of the first case: midnight, so hourly and daily groups fall where promtool's do."""
SLOT = 4 * 86400
"""Seconds between two cases' t=0: longer than a case (27h) and the longest window (24h
rate, 6h max_over_time) together."""
ALERT_LABELS_ADDED = ("__name__", "alertname", "alertstate", "alertgroup")
NAN_CHECK = re.compile(r"^\s*(?P<series>\S+)\s*!=\s*bool\s*(?P=series)\s*$")
"""promtool's way of asserting NaN: `x != bool x` is 1 where x is NaN."""
ROUNDING = 1e-6
ROUNDED = re.compile(
    r"^\s*round\((?P<series>.+),\s*1e-6\)(?:\s+and\s+(?P=series)\s*==\s*(?P=series))?\s*$"
)
"""promtool's way of comparing a figure: `round(x, 1e-6)` (and, to leave NaN out, `and
x == x`). MetricsQL's round() keeps the metric name and turns +Inf into NaN, so x itself
is read and compared within half the rounding step, which is what the expectation
says; NaN is no sample in MetricsQL, so the NaN filter has nothing to do."""
REL_TOLERANCE = 1e-9
"""VictoriaMetrics stores a float in a decimal mantissa and exponent: about 15
significant digits survive, so `round(x, 1e-6)` may differ in the last bits."""

CLOSED_WINDOWS = (
    "promtool 2.42 reads a window [t-W, t] with both ends, MetricsQL (t-W, t]: a sample "
    "exactly W old counts in promtool only (Prometheus 3 dropped it too), so here the "
    "condition holds, and the alert fires, one 1m step earlier; at the next step they agree"
)
DIFFERENCES: dict[tuple[str, str, str], str] = {
    (
        "alerting-rules.test.yml",
        "LLMCostExporterAbsent stays silent while nodes push over OTLP",
        "LLMCostExporterAbsent@40m",
    ): CLOSED_WINDOWS + " (the 5m lookback of the last pushed sample)",
    (
        "alerting-rules.test.yml",
        "LLMCostExporterSilent fires for the node that stopped pushing, not for scraped ones",
        "LLMCostExporterSilent@25m",
    ): CLOSED_WINDOWS + " (the 5m lookback of the last pushed sample)",
    (
        "recording-rules.test.yml",
        "Fleet with a cluster label (eu, us) at 24h",
        "instance_model_kind:llmcost_tokens:increase1h - increase(llmcost_tokens_total[1h])@1290m",
    ): (
        "promtool evaluates the `interval: 1h` group every 5m; vmalert, like Prometheus, once "
        "an hour (1260m, 1320m), so at 1290m no hourly sample is within the lookback"
    ),
}
"""(test file, case name, expectation) -> why VictoriaMetrics cannot agree; the
expectation is `<alertname>@<eval_time>` or `<expr>@<eval_time>`."""

# The 6h and 24h figures average the 5m rates recorded in the window: promtool 2.42
# counts the one recorded exactly a window before too (over [t-6h-5m, t]), where
# VictoriaMetrics averages exactly [t-6h, t]. Where that changes an expectation, these
# give VictoriaMetrics' own, by instance; the other samples are as promtool expects.
ON_VICTORIA: dict[tuple[str, str, str], dict[str, float]] = {
    ("recording-rules.test.yml", "Fleet with a cluster label (eu, us) at 24h", f"{expr}@1440m"): {
        "gpu-a:9478": value
    }
    for expr, value in (
        ("round(instance:llmcost_tokens:rate6h, 1e-6)", 750.0),
        ("round(instance:llmcost_api_equivalent_cost:rate6h, 1e-6)", 0.0006),
        ("round(instance:llmcost_cost_per_million_tokens:ratio_rate6h, 1e-6)", 0.001 / 750e-6),
        ("round(instance:llmcost_cost_ratio:ratio_rate6h, 1e-6)", 0.001 / 0.0006),
        ("round(instance:llmcost_throughput_utilization:ratio_rate6h, 1e-6)", 0.375),
    )
}
"""(test file, case name, expectation) -> the values VictoriaMetrics must give instead,
by instance; for gpu-a 180m at 1000 tok/s and 180m at 500."""

_BREAKEVEN = (
    "Over the last {window} this node spent {ratio}x what the API would have charged for the "
    "same tokens: {ratio} per 1M tokens against 1.00 on the API. Throughput utilization "
    "{utilization} against a break-even utilization of 0.500."
)
DESCRIPTIONS_ON_VICTORIA: dict[tuple[str, str, str], dict[str, str]] = {
    # 6h at 495m: spend $21.60, API 0.072*225 + 0.03*135 = $20.25 for 20.25M tokens.
    (
        "economics.test.yml",
        "LLMCostBelowBreakEvenWarning fires when traffic falls below break-even; "
        "a profitable node stays silent",
        "LLMCostBelowBreakEvenWarning@495m",
    ): {"gpu-a:9478": _BREAKEVEN.format(window="6h", ratio="1.07", utilization="0.469")},
    # 24h at 1635m: spend $86.40, API 0.063*1245 + 0.03*195 = $84.285 for 84.285M tokens.
    (
        "breakeven-page.test.yml",
        "LLMCostBelowBreakEven fires when traffic falls below break-even; "
        "a profitable node stays silent",
        "LLMCostBelowBreakEven@1635m",
    ): {"gpu-a:9478": _BREAKEVEN.format(window="24h", ratio="1.03", utilization="0.488")},
    # The 72 averages of 5 samples in (t-6h, t] at 575m: 29 at 0.9, 43 at 0.3.
    (
        "economics.test.yml",
        "LLMCostGpuUtilizationLow fires on the node average over 6h, not on one idle GPU",
        "LLMCostGpuUtilizationLow@575m",
    ): {
        "gpu-a:9478": "The node's GPUs averaged 54.17% utilization over the last 6h "
        "(threshold 60%; SM activity where the GPU reports it, else busy time, as "
        "llmcost_gpu_selected_utilization_ratio's source label says)."
    },
}
"""(test file, case name, alert@eval_time) -> the descriptions VictoriaMetrics renders
instead, by instance (see ON_VICTORIA)."""


# --- the cases -----------------------------------------------------------------------


@dataclass
class Case:
    """One `tests[]` entry of a promtool test file, placed in its own time slot."""

    file: str
    name: str
    spec: dict[str, Any]
    rule_files: list[Path]
    evaluation_interval: str
    start: float
    end: float = 0.0
    firing: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    """Timestamp (ms) -> labels of the `ALERTS{alertstate="firing"}` samples there."""

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"

    def at(self, eval_time: str) -> float:
        return self.start + parse_duration(eval_time)


def load_cases() -> list[Case]:
    cases = []
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        rule_files = [(path.parent / name).resolve() for name in document["rule_files"]]
        for spec in document["tests"]:
            start = BASE + len(cases) * SLOT
            case = Case(
                path.name,
                spec["name"],
                spec,
                rule_files,
                document.get("evaluation_interval", "1m"),
                start,
            )
            interval = parse_duration(spec.get("interval", "1m"))
            ends = [
                sample.seconds
                for series in spec.get("input_series", [])
                for sample in samples(series["values"], interval)
            ]
            ends += [
                parse_duration(test["eval_time"])
                for kind in ("promql_expr_test", "alert_rule_test")
                for test in spec.get(kind, [])
            ]
            case.end = start + max(ends)
            cases.append(case)
    return cases


CASES = load_cases()


def prometheus_lines(case: Case) -> Iterator[str]:
    """The case's input samples as Prometheus text lines with millisecond timestamps,
    staleness markers left out (see :func:`staleness_markers`)."""
    interval = parse_duration(case.spec.get("interval", "1m"))
    for series in case.spec.get("input_series", []):
        name, labels = parse_series(series["series"])
        selector = name + "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}"
        for sample in samples(series["values"], interval):
            if sample.value is not STALE:
                value = repr(sample.value).replace("inf", "Inf").replace("nan", "NaN")
                yield f"{selector} {value} {round((case.start + sample.seconds) * 1000)}"


def staleness_markers(case: Case) -> Iterator[tuple[dict[str, str], list[tuple[int, float]]]]:
    """The case's `stale` samples, for remote write: the text format cannot carry them."""
    interval = parse_duration(case.spec.get("interval", "1m"))
    for series in case.spec.get("input_series", []):
        name, labels = parse_series(series["series"])
        markers = [
            (round((case.start + sample.seconds) * 1000), STALE_NAN)
            for sample in samples(series["values"], interval)
            if sample.value is STALE
        ]
        if markers:
            yield labels | {"__name__": name}, markers


# --- rules in dependency order -----------------------------------------------------


def rule_stages(rule_files: list[Path]) -> list[dict[str, Any]]:
    """The rule files' groups split into passes: a rule reading another rule's series
    comes in a later pass than that rule. Each pass keeps the groups' names and
    intervals and the rules' expressions, `for` and labels."""
    groups = [g for path in rule_files for g in yaml.safe_load(path.read_text())["groups"]]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    level: dict[int, int] = {}
    rules = [(g, r) for g in groups for r in g["rules"]]

    def level_of(rule: dict[str, Any]) -> int:
        key = id(rule)
        if key not in level:
            reads = [
                name
                for name in recorded
                if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", rule["expr"])
            ]
            producers = [r for _, r in rules if r.get("record") in reads]
            level[key] = 1 + max((level_of(p) for p in producers), default=-1)
        return level[key]

    stages: list[dict[str, Any]] = []
    for group, rule in rules:
        depth = level_of(rule)
        while len(stages) <= depth:
            stages.append({"groups": []})
        target = stages[depth]["groups"]
        if not target or target[-1]["name"] != group["name"]:
            target.append({k: v for k, v in group.items() if k != "rules"} | {"rules": []})
        # Replay writes no annotation, and cannot run the `query` their templates call.
        target[-1]["rules"].append({k: v for k, v in rule.items() if k != "annotations"})
    return stages


# --- the run -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    with VictoriaMetricsServer(workdir=tmp_path_factory.mktemp("victoria-rules")) as server:
        yield server


def export(server: VictoriaMetricsServer, match: str, start: float, end: float) -> list[dict]:
    """Raw samples of the series matching `match` in [start, end] (the export API)."""
    body = urllib.parse.urlencode({"match[]": match, "start": str(start), "end": str(end)})
    request = urllib.request.Request(f"{server.url}/api/v1/export", data=body.encode())
    with urllib.request.urlopen(request, timeout=scaled(60)) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


@pytest.fixture(scope="module")
def replayed(
    victoria: VictoriaMetricsServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Case]:
    """Every case imported and its rules replayed, pass after pass."""
    workdir = tmp_path_factory.mktemp("replay")
    stage_files: dict[tuple[Path, ...], list[Path]] = {}
    for key in {tuple(case.rule_files) for case in CASES}:
        paths = []
        for index, stage in enumerate(rule_stages(list(key))):
            path = workdir / f"{len(stage_files)}-stage{index}.yml"
            path.write_text(yaml.safe_dump(stage, sort_keys=False))
            paths.append(path)
        stage_files[key] = paths
    victoria.import_prometheus(line for case in CASES for line in prometheus_lines(case))
    victoria.remote_write(series for case in CASES for series in staleness_markers(case))
    victoria.flush()

    def replay(case: Case) -> None:
        for path in stage_files[tuple(case.rule_files)]:
            replay_rules(
                [path],
                victoria,
                datetime.fromtimestamp(case.start, UTC),
                datetime.fromtimestamp(case.end, UTC),
                workdir=workdir,
                evaluation_interval=case.evaluation_interval,
            )
        for series in export(victoria, 'ALERTS{alertstate="firing"}', case.start, case.end):
            for timestamp in series["timestamps"]:
                case.firing.setdefault(timestamp, []).append(series["metric"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(replay, CASES))
    return {case.id: case for case in CASES}


# --- loading ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ALERTS / RECORDING_FILE, ALERTS / ALERTING_FILE], ids=str)
def test_vmalert_loads_the_committed_rules(path: Path) -> None:
    """vmalert parses every expression with MetricsQL and every template at load."""
    result = subprocess.run(
        [
            find_vmalert(),
            "-dryRun",
            f"-rule={path}",
            "-rule.validateExpressions",
            "-rule.validateTemplates",
        ],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_vmalert_refuses_an_invalid_rule(tmp_path: Path) -> None:
    """The check above can fail: an expression MetricsQL cannot parse is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": "rate(x[5m]) +"}]}]}
        )
    )
    result = subprocess.run(
        [find_vmalert(), "-dryRun", f"-rule={bad}"],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert result.returncode != 0 and "a:b:c" in result.stderr


def test_every_known_difference_names_an_expectation_of_the_promtool_tests() -> None:
    expectations = {
        (case.file, case.name, f"{t.get('expr') or t['alertname']}@{t['eval_time']}")
        for case in CASES
        for t in case.spec.get("promql_expr_test", []) + case.spec.get("alert_rule_test", [])
    }
    named = [k[:2] + (k[2].removesuffix(" annotations"),) for k in DIFFERENCES]
    named += [*ON_VICTORIA, *DESCRIPTIONS_ON_VICTORIA]
    assert [key for key in named if key not in expectations] == []


def test_rule_stages_order_readers_after_what_they_read() -> None:
    stages = rule_stages([ALERTS / RECORDING_FILE, ALERTS / ALERTING_FILE])
    seen: set[str] = set()
    total = 0
    for stage in stages:
        rules = [r for g in stage["groups"] for r in g["rules"]]
        total += len(rules)
        for rule in rules:
            reads = set(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["expr"]))
            assert reads <= seen, (rule.get("record") or rule["alert"], reads - seen)
        seen |= {r["record"] for r in rules if "record" in r}
    groups = [
        g
        for p in (RECORDING_FILE, ALERTING_FILE)
        for g in yaml.safe_load((ALERTS / p).read_text())["groups"]
    ]
    assert total == sum(len(g["rules"]) for g in groups)


# --- behaviour -----------------------------------------------------------------------


def same_value(actual: float, expected: float, tolerance: float = 0.0) -> bool:
    if math.isnan(expected) or math.isinf(expected):
        return str(actual) == str(expected)
    return math.isclose(actual, expected, rel_tol=REL_TOLERANCE, abs_tol=tolerance + 1e-12)


def labels_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def expected_samples(test: dict[str, Any]) -> dict[tuple, float]:
    result = {}
    for sample in test.get("exp_samples") or []:
        name, labels = parse_series(sample["labels"])
        if name:
            labels["__name__"] = name
        result[labels_key(labels)] = float(sample["value"])
    return result


def check_expr(victoria: VictoriaMetricsServer, case: Case, test: dict[str, Any]) -> str | None:
    """None if VictoriaMetrics answers the expression as promtool expects, else why not."""
    when = case.at(test["eval_time"])
    expected = expected_samples(test)
    instead = ON_VICTORIA.get((case.file, case.name, f"{test['expr']}@{test['eval_time']}"), {})
    for key in expected:
        if dict(key).get("instance") in instead:
            expected[key] = instead[dict(key)["instance"]]
    nan_check = NAN_CHECK.match(test["expr"])
    if nan_check:
        # NaN is no sample in MetricsQL: where promtool sees x NaN (1), x is absent here.
        present = {
            labels_key({k: v for k, v in s["metric"].items() if k != "__name__"}): float(
                s["value"][1]
            )
            for s in victoria.query(nan_check["series"], time=when)
        }
        wrong = [
            (dict(key), value, present.get(key))
            for key, value in expected.items()
            if (value == 1) == (key in present)
        ]
        missing = set(present) - set(expected)
        if wrong or missing:
            return f"NaN check: (labels, expected, got) {wrong}; unexpected {missing}"
        return None
    rounded = ROUNDED.match(test["expr"])
    expr = rounded["series"] if rounded else test["expr"]
    tolerance = ROUNDING / 2 if rounded else 0.0
    named = any("__name__" in dict(key) for key in expected)
    actual = {
        labels_key({k: v for k, v in s["metric"].items() if named or k != "__name__"}): float(
            s["value"][1]
        )
        for s in victoria.query(expr, when)
    }
    if set(actual) != set(expected) or not all(
        same_value(actual[k], v, tolerance) for k, v in expected.items()
    ):
        return f"expected {sorted(expected.items())}\n      got {sorted(actual.items())}"
    return None


def check_alerts(case: Case, test: dict[str, Any]) -> str | None:
    when = round(case.at(test["eval_time"]) * 1000)
    expected = sorted(
        labels_key({k: str(v) for k, v in (alert.get("exp_labels") or {}).items()})
        for alert in test.get("exp_alerts") or []
    )
    actual = sorted(
        labels_key({k: v for k, v in labels.items() if k not in ALERT_LABELS_ADDED})
        for labels in case.firing.get(when, [])
        if labels["alertname"] == test["alertname"]
    )
    if actual != expected:
        return f"expected firing {expected}\n      got {actual}"
    return None


@pytest.mark.parametrize(
    "case_id", [case.id for case in CASES], ids=[re.sub(r"\W+", "-", c.id) for c in CASES]
)
def test_promtool_case_on_victoria_metrics(
    case_id: str, replayed: dict[str, Case], victoria: VictoriaMetricsServer
) -> None:
    case = replayed[case_id]
    mismatches: list[str] = []
    known: list[str] = []
    agreed = 0
    checks = [
        (f"{t['expr']}@{t['eval_time']}", lambda t=t: check_expr(victoria, case, t))
        for t in case.spec.get("promql_expr_test", [])
    ] + [
        (f"{t['alertname']}@{t['eval_time']}", lambda t=t: check_alerts(case, t))
        for t in case.spec.get("alert_rule_test", [])
    ]
    for key, check in checks:
        problem = check()
        reason = DIFFERENCES.get((case.file, case.name, key))
        if problem is None:
            agreed += 1
            if reason:
                mismatches.append(f"{key}: agrees now, remove it from DIFFERENCES")
        elif reason:
            known.append(f"{key}: {reason}")
        else:
            mismatches.append(f"{key}:\n      {problem}")
    assert not mismatches, f"{case.id}: VictoriaMetrics differs:\n" + "\n".join(mismatches)
    assert agreed or known, "no expectation checked"
    if known:
        pytest.skip(f"{agreed} expectations agree; known differences: " + "; ".join(known))


# --- annotations, rendered by a live vmalert ---------------------------------------------


def alert_tests_with_annotations() -> list[tuple[Case, dict[str, Any]]]:
    return [
        (case, test)
        for case in CASES
        for test in case.spec.get("alert_rule_test", [])
        if any(alert.get("exp_annotations") for alert in test.get("exp_alerts") or [])
    ]


def without_for(path: Path) -> dict[str, Any]:
    """The alerting rules as they are, less `for`: an alert that fires at an instant has
    held its condition there, so it fires at once, annotated as it would be. Less the
    groups' own `interval` too, so that each is evaluated at once."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {
        "groups": [
            {
                **{k: v for k, v in g.items() if k != "interval"},
                "rules": [{k: v for k, v in r.items() if k != "for"} for r in g["rules"]],
            }
            for g in groups
        ]
    }


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vmalert 1.79 needs somewhere to send alerts when it loads alerting rules."""
    with (
        WebhookReceiver() as webhook,
        AlertmanagerServer(webhook.url, workdir=tmp_path_factory.mktemp("am")) as server,
    ):
        yield server.url


def test_live_vmalert_annotates_alerts_as_promtool_expects(
    replayed: dict[str, Case],
    victoria: VictoriaMetricsServer,
    alertmanager: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Each expected alert's summary, description and runbook URL, rendered by a live
    vmalert evaluating at the case's eval_time (`-datasource.lookback` puts "now" there):
    the templates' `query` calls read the recorded figures through MetricsQL."""
    workdir = tmp_path_factory.mktemp("annotations")
    rules = workdir / "alerting-rules-without-for.yml"
    rules.write_text(yaml.safe_dump(without_for(ALERTS / ALERTING_FILE), sort_keys=False))

    def rendered(case: Case, test: dict[str, Any]) -> list[str]:
        lookback = int(time.time() - case.at(test["eval_time"]))
        server = VmalertServer(
            [rules],
            victoria.url,
            interval="250ms",
            notifier=alertmanager,
            extra_flags=[f"-datasource.lookback={lookback}s", "-remoteWrite.url="],
            workdir=workdir / f"{case.start:.0f}-{test['eval_time']}-{test['alertname']}",
        )
        problems = []
        with server:
            expected = {
                labels_key({k: str(v) for k, v in a["exp_labels"].items()}): a["exp_annotations"]
                for a in test["exp_alerts"]
            }
            instead = DESCRIPTIONS_ON_VICTORIA.get(
                (case.file, case.name, f"{test['alertname']}@{test['eval_time']}"), {}
            )
            for key, annotations in expected.items():
                if dict(key).get("instance") in instead:
                    description = instead[dict(key)["instance"]]
                    expected[key] = {**annotations, "description": description}

            def firing() -> dict[tuple, dict[str, str]] | None:
                found = {
                    labels_key(
                        {k: v for k, v in a["labels"].items() if k not in ALERT_LABELS_ADDED}
                    ): a["annotations"]
                    for a in server.alerts()
                    if a["labels"].get("alertname") == test["alertname"]
                }
                return found if expected.keys() <= found.keys() else None

            alerts = eventually(firing, what=f"{case.id} {test['alertname']} firing")
            known = DIFFERENCES.get(
                (case.file, case.name, f"{test['alertname']}@{test['eval_time']} annotations")
            )
            differs = [key for key, annotations in expected.items() if alerts[key] != annotations]
            if known and not differs:
                problems.append(f"{case.id}: annotations agree now, remove it from DIFFERENCES")
            for key in differs if not known else []:
                problems.append(
                    f"{case.id} {test['alertname']}@{test['eval_time']} {dict(key)}:\n"
                    f"  expected {expected[key]}\n  got      {alerts[key]}"
                )
        return problems

    pairs = alert_tests_with_annotations()
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for found in pool.map(lambda pair: rendered(*pair), pairs) for p in found]
    assert len(pairs) >= 10
    assert not problems, "\n".join(problems)
