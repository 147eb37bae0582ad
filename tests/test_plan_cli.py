"""``llm-cost-exporter plan`` as users run it: against a real Prometheus, and on files.

The table it prints and the page it writes must hold the figures the planner
computes for the same month; every bad option or unreachable source is one
line and the documented exit code.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_report_html import Document

from llm_cost_exporter.cli import main
from llm_cost_exporter.tools.planner.model import POLICIES, Knobs
from llm_cost_exporter.tools.planner.replica import ReplicaSpec
from llm_cost_exporter.tools.report.build import Planning, build_report
from llm_cost_exporter.tools.report.period import parse_period
from llm_cost_exporter.tools.report.prometheus_api import Credentials, PrometheusClient
from llm_cost_exporter.tools.report.selection import Selection
from llm_cost_exporter.tools.report.units import display, rounded

pytestmark = pytest.mark.realparts

REPLICA = ["--replica-gpu", "H100", "--replica-gpus", "2", "--replica-gpu-price", "2.00"]


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_plan_prints_every_policy_and_writes_the_same_figures_as_html(
    backfilled_month, capsys, tmp_path: Path
) -> None:
    server, _ = backfilled_month
    page = tmp_path / "plan.html"
    code, out, err = plan(
        capsys,
        "--prometheus.url",
        server.url,
        "--month",
        "2026-10",
        "--source",
        "raw",
        "--quiet",
        *REPLICA,
        "--capacity",
        "5000",
        "--html",
        str(page),
    )
    assert code == 0, err
    assert err.strip() == str(page)
    now = datetime.now(timezone.utc)
    report = build_report(
        PrometheusClient(server.url, Credentials()),
        Selection(),
        parse_period("2026-10", None, None, "UTC", now),
        source="raw",
        now=now,
        planning=Planning(
            knobs=Knobs(),
            replica=ReplicaSpec(gpu_price=2.0, capacity=5000, gpus=2, gpu="H100"),
        ),
    )
    advice = report.advice
    assert advice is not None and advice.fleet_size == 3
    marks = dict(Document(page.read_text(encoding="utf-8")).figures())
    for outcome in advice.outcomes:
        shown = display(outcome.cost, "money", "USD")
        line = next(line for line in out.splitlines() if shown in line)
        assert outcome.name.split(",")[0] in out, outcome.name
        assert float(marks[f"advice.{outcome.key}.cost"]) == rounded(outcome.cost, "money")
        assert line  # each policy's cost is on a line of the table
    assert "2 \u00d7 H100 at $2.00/h each, 30% overhead" in out
    assert advice.cheapest.name in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ceiling", "0"], "--ceiling: expected a ratio above 0 and at most 1"),
        (["--floor", "-1"], "--floor: expected 0 or more replicas"),
        (["--min-run", "0"], "--min-run: expected 1 to 168 hours"),
        (["--replica-gpu-price", "2"], "--capacity: required with --replica-gpu-price"),
        (["--capacity", "-5"], "--capacity: expected a positive number"),
        (["--month", "2026-13"], "--month"),
        (
            [
                "--csv",
                "missing.csv",
                "--api-prices",
                "input=1,output=2",
                *REPLICA,
                "--capacity",
                "100",
            ],
            "missing.csv: cannot read: No such file or directory",
        ),
        (["--csv", "x.csv"], "--csv: describe the replica with --replica-gpu-price and --capacity"),
        (["--csv", "x.csv", *REPLICA, "--capacity", "100"], "--csv: give the API's prices"),
        (
            ["--csv", "x.csv", *REPLICA, "--capacity", "100", "--api-prices", "input=1"],
            "--api-prices: input and output are required",
        ),
        (
            ["--csv", "x.csv", *REPLICA, "--capacity", "100", "--api-prices", "in=1,output=2"],
            "--api-prices: expected input, cached_input, output=PRICE, got 'in=1'",
        ),
        (
            ["--csv", "x.csv", *REPLICA, "--capacity", "100", "--api-prices", "input=a,output=2"],
            "--api-prices: input: expected a price, got 'a'",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, tmp_path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = plan(capsys, "--prometheus.url", "http://127.0.0.1:9", *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("llm-cost-exporter plan: ") and message in err


def test_an_unreachable_prometheus_exits_1_with_one_line(capsys) -> None:
    code, out, err = plan(capsys, "--prometheus.url", "http://127.0.0.1:9", "--month", "2026-10")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "127.0.0.1:9" in err


def test_a_period_without_data_exits_1(backfilled_month, capsys) -> None:
    server, _ = backfilled_month
    code, _, err = plan(capsys, "--prometheus.url", server.url, "--month", "2025-01", "--quiet")
    assert code == 1 and "no llmcost cost data" in err


def test_the_table_names_every_policy_once(backfilled_month, capsys) -> None:
    server, _ = backfilled_month
    code, out, _ = plan(
        capsys, "--prometheus.url", server.url, "--month", "2026-10", "--quiet", "--floor", "0"
    )
    assert code == 0
    rows = [line for line in out.splitlines() if re.search(r"\$[\d,]+\.\d\d +\$", line)]
    for name in ("As run", "All on the API", "Right-sized fixed fleet", "Scheduled scaling"):
        assert sum(1 for row in rows if row.lstrip("* ").startswith(name)) == 1, name
    assert sum(1 for row in rows if row.startswith("* ")) == 1  # the cheapest, marked
    assert len(POLICIES) == 6


def full_load_csv(path: Path, tokens_per_second: float, hours: int = 24) -> Path:
    lines = ["hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens"]
    for hour in range(hours):
        lines.append(f"2026-10-05T{hour:02d}:00:00Z,m,0,0,{round(tokens_per_second * 3600)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("overhead", "per_million"), [("0", "$0.2778"), ("0.3", "$0.3611")])
def test_an_l40s_at_full_load_from_a_file(capsys, tmp_path, overhead, per_million) -> None:
    """$1.50/h serving 1,500 tokens/s: $0.28 per 1M, $0.36 with 30% overhead (to the cent)."""
    code, out, err = plan(
        capsys,
        "--csv",
        str(full_load_csv(tmp_path / "full.csv", 1500)),
        "--api-prices",
        "input=1,output=1",
        "--replica-gpu",
        "L40S",
        "--replica-gpu-price",
        "1.50",
        "--capacity",
        "1500",
        "--overhead",
        overhead,
        "--ceiling",
        "1",
    )
    assert code == 0, err
    row = re.search(r"^(\* )?Right-sized fixed fleet +(\$[\d,.]+) +(\$[\d,.]+)", out, re.M)
    assert row and row.group(3) == per_million
    assert f"{per_million} at 100% load" in out


def test_the_readme_example_prints_what_the_readme_shows(capsys, monkeypatch) -> None:
    root = Path(__file__).parents[1]
    monkeypatch.chdir(root)
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## What would have been cheaper") :]
    command = re.search(r"```sh\n(llm-cost-exporter plan --csv .*?)\n```", section, re.S)
    assert command, "the README's plan example"
    args = command.group(1).replace("\\\n", " ").split()[1:]
    shown = re.search(r"```text\n(.*?)\n```", section, re.S)
    assert shown, "the README's plan output"
    code, out, err = plan(capsys, *args[1:])
    assert code == 0, err
    assert shown.group(1).strip() in out


def test_api_prices_from_the_catalog(capsys, tmp_path) -> None:
    """gpt-4o-mini lists $0.15 / $0.075 / $0.60 per 1M: a full-load day of generation."""
    args = [
        "--csv",
        str(full_load_csv(tmp_path / "full.csv", 100)),
        "--replica-gpu-price",
        "1.50",
        "--capacity",
        "1500",
    ]
    code, out, err = plan(capsys, *args, "--api-catalog", "openai/gpt-4o-mini")
    assert code == 0, err
    # 24 hours of 360,000 generated tokens at $0.60 per 1M.
    assert re.search(r"^All on the API +\$5\.18 ", out, re.M)
    code, out, err = plan(capsys, *args, "--api-catalog", "openai/no-such-model")
    assert code == 2 and out == ""
    assert err.startswith("llm-cost-exporter plan: --api-catalog: ") and "no-such-model" in err
    assert len(err.strip().splitlines()) == 1
