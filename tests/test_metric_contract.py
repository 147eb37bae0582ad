"""Every `llmcost_*` name something reads is exported or recorded.

The readers are the monthly review's queries, the dashboards, the rules and the
synthetic month the review's tests write by hand. A name they read must be a
family of the exporter's `/metrics` (as the golden pages show it) or the name of
a recording rule; anything else is a query that silently returns nothing.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "exporter" / "tools" / "report"
FIGURES = REPORT / "figures.py"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
RECORDING_RULES = ROOT / "alerts" / "recording-rules.yml"
ALERTING_RULES = ROOT / "alerts" / "alerting-rules.yml"
SYNTHETIC_MONTH = ROOT / "tests" / "realparts" / "synthetic_month.py"
GOLDEN_PAGES = sorted((ROOT / "tests" / "golden").glob("*.prom"))

# Recording-rule names (level:metric:operation), then plain metric names. Neither may
# continue a longer name on its left.
RULE_NAME = re.compile(r"(?<![A-Za-z0-9_:])[a-z_]+:llmcost_[a-z0-9_:]+")
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])llmcost_[a-z0-9_]+")
# Dashboard fields holding PromQL, or naming what a panel reads.
DASHBOARD_FIELDS = frozenset({"expr", "query", "definition", "description"})
# The review strips this prefix from the plan's series and reads them by the rest.
PROJECTED = "llmcost_projected_"

Readers = dict[str, set[str]]


def names_in(text: str) -> set[str]:
    """The `llmcost` metric and recording-rule names in PromQL or prose.

    A name ending in `_` is a prefix (`llmcost_projected_.+`, `llmcost_projected_*`).
    """
    rules = {name.rstrip(":") for name in RULE_NAME.findall(text)}
    rest = RULE_NAME.sub(" ", text)
    return rules | set(METRIC_NAME.findall(rest))


def _code_strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, value) of the string literals of a module that are code, not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            yield node.lineno, node.value


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _add(readers: Readers, text: str, who: str) -> None:
    for name in names_in(text):
        readers[name].add(who)


def _plan_keys() -> set[str]:
    """What the review reads from the plan (`plan["x"]`, `plan.get("x")`, `"x" in plan`)."""
    tree = ast.parse(FIGURES.read_text(encoding="utf-8"))

    def is_plan(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == "plan"

    keys = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_plan(node.value):
            keys.append(node.slice)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and is_plan(node.func.value)
        ):
            keys.append(node.args[0])
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.ops[0], ast.In)
            and is_plan(node.comparators[0])
        ):
            keys.append(node.left)
    found = set()
    for key in keys:
        if isinstance(key, ast.JoinedStr):  # f"token_share:{k}"
            key = key.values[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value.partition(":")[0])  # "token_share:prompt" is family:kind
    return found


def report_readers() -> Readers:
    readers: Readers = defaultdict(set)
    for path in sorted(REPORT.glob("*.py")):
        for line, value in _code_strings(path):
            _add(readers, value, f"review {_relative(path)}:{line}")
    for key in _plan_keys():
        readers[PROJECTED + key].add(f"review {_relative(FIGURES)} (plan key {key!r})")
    return readers


def _json_strings(node: object, fields: frozenset[str]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in fields and isinstance(value, str):
                yield value
            yield from _json_strings(value, fields)
    elif isinstance(node, list):
        for value in node:
            yield from _json_strings(value, fields)


def dashboard_readers() -> Readers:
    readers: Readers = defaultdict(set)
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for text in _json_strings(board, DASHBOARD_FIELDS):
            _add(readers, text, f"dashboard {_relative(path)}")
    return readers


def _rules(path: Path) -> Iterator[dict]:
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        yield from group["rules"]


def rule_readers() -> Readers:
    """Names in rule expressions and in alert annotations (which may query, too)."""
    readers: Readers = defaultdict(set)
    for path in (RECORDING_RULES, ALERTING_RULES):
        for rule in _rules(path):
            who = f"rule {rule.get('record') or rule.get('alert')} ({_relative(path)})"
            _add(readers, rule["expr"], who)
            for text in rule.get("annotations", {}).values():
                _add(readers, text, who)
    return readers


def synthetic_month_readers() -> Readers:
    readers: Readers = defaultdict(set)
    for line, value in _code_strings(SYNTHETIC_MONTH):
        _add(readers, value, f"synthetic month {_relative(SYNTHETIC_MONTH)}:{line}")
    return readers


def exported_names(pages: Iterable[Path] = GOLDEN_PAGES) -> set[str]:
    """Every name a golden page exports: families, their samples, and counters both
    with `_total` (as text format 0.0.4 names them) and without (the family name)."""
    names: set[str] = set()
    for page in pages:
        names |= _names_in_page(page.read_text(encoding="utf-8"))
    return names


def _names_in_page(text: str) -> set[str]:
    """The names one page exports (see exported_names)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "counter":
                names.add(name.removesuffix("_total"))
                names.add(name.removesuffix("_total") + "_total")
            elif kind in ("histogram", "summary"):
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def recorded_names() -> set[str]:
    return {rule["record"] for rule in _rules(RECORDING_RULES) if "record" in rule}


def _missing(readers: Readers, available: set[str]) -> list[str]:
    def known(name: str) -> bool:
        if name.endswith("_"):  # a prefix: something must start with it
            return any(other.startswith(name) for other in available)
        return name in available

    return [
        f"{name}: read by " + "; ".join(sorted(readers[name]))
        for name in sorted(readers)
        if not known(name)
    ]


def test_names_in_promql() -> None:
    text = (
        'sum by (cluster) (instance:llmcost_cost:rate5m) / llmcost_tokens_total{kind="x"} '
        '{__name__=~"llmcost_projected_.+"} (see llmcost_cost_total: not xllmcost_no)'
    )
    assert names_in(text) == {
        "instance:llmcost_cost:rate5m",
        "llmcost_tokens_total",
        "llmcost_projected_",
        "llmcost_cost_total",
    }


def test_every_reader_is_seen() -> None:
    """The contract below would pass vacuously if a reader's names were not found."""
    assert GOLDEN_PAGES and DASHBOARDS
    report = report_readers()
    assert {"llmcost_model_cost_total", "instance_model:llmcost_cost:increase1h"} <= set(report)
    assert {"llmcost_projected_tokens_per_month", "llmcost_projected_token_share"} <= set(report)
    assert {"llmcost_build_info", "instance:llmcost_cost_per_million_tokens:ratio_rate5m"} <= set(
        dashboard_readers()
    )
    assert {"llmcost_collector_up", "llmcost_tokens_total"} <= set(rule_readers())
    assert {"llmcost_cost", "llmcost_engine_restarts_total"} <= set(synthetic_month_readers())
    exported = exported_names()
    assert {"llmcost_cost_total", "llmcost_cost", "llmcost_hourly_cost"} <= exported
    assert "instance:llmcost_tokens:rate5m" in recorded_names()


def test_every_name_read_is_exported_or_recorded() -> None:
    readers: Readers = defaultdict(set)
    for part in (
        report_readers(),
        dashboard_readers(),
        rule_readers(),
        synthetic_month_readers(),
    ):
        for name, who in part.items():
            readers[name] |= who
    missing = _missing(readers, exported_names() | recorded_names())
    assert not missing, (
        "names read that no golden page exports and no recording rule records:\n"
        + "\n".join(missing)
    )


def test_what_is_read_is_exported_without_the_optional_families() -> None:
    """The rules, dashboards and review work on a node as configured by default: none of
    them reads a family only `metrics.gpu_diagnostics` or `metrics.model_gauges` exports."""
    from golden_pages import owned_node

    everything = _names_in_page((ROOT / "tests" / "golden" / "owned-node.prom").read_text())
    by_default = _names_in_page(owned_node(optional=False).decode())
    optional = everything - by_default
    assert "llmcost_gpu_temperature_celsius" in optional
    assert "llmcost_model_cost_ratio" in optional
    readers: Readers = defaultdict(set)
    for part in (report_readers(), dashboard_readers(), rule_readers()):
        for name, who in part.items():
            readers[name] |= who
    reading_optional = [
        f"{name}: read by {'; '.join(sorted(readers[name]))}"
        for name in sorted(optional & set(readers))
    ]
    assert not reading_optional, "\n".join(reading_optional)


def test_a_missing_name_is_reported_with_its_readers() -> None:
    readers = {"llmcost_nothing": {"dashboard x.json"}, "llmcost_cost_total": {"rule y"}}
    assert _missing(readers, exported_names()) == ["llmcost_nothing: read by dashboard x.json"]
