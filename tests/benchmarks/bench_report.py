"""Cost of writing a monthly review: where the time goes, for one node's month.

The synthetic October of the test suite (one node, two models, 5-minute
samples) is backfilled into a real Prometheus with promtool. The review is
then written from raw counters and from the hourly recording rules, and each
run is split into time spent waiting for Prometheus and time spent computing
and rendering. The reference, measured in the same run, is the single query a
hand-made review would start from: the month's spend in one ``increase()``.

Run from the repository root: ``python tests/benchmarks/bench_report.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realparts.backfill import HistoricalPrometheusServer, backfill  # noqa: E402
from realparts.synthetic_month import Scenario, generate  # noqa: E402

from llm_cost_exporter.generators.rules import params_with, recording_rules  # noqa: E402
from llm_cost_exporter.tools.report.build import build_report  # noqa: E402
from llm_cost_exporter.tools.report.html import render_html  # noqa: E402
from llm_cost_exporter.tools.report.period import parse_period  # noqa: E402
from llm_cost_exporter.tools.report.prometheus_api import Credentials, PrometheusClient  # noqa: E402
from llm_cost_exporter.tools.report.selection import Selection  # noqa: E402
from llm_cost_exporter.tools.report.tabular import render_csv, render_json  # noqa: E402

RULES = (
    "instance_component:llmcost_cost:increase1h",
    "instance_model:llmcost_cost:increase1h",
    "instance_model_kind:llmcost_tokens:increase1h",
    "instance_model:llmcost_api_equivalent_cost:increase1h",
)
REPEATS = 3


class TimedClient(PrometheusClient):
    """Counts queries and the time spent waiting for their answers."""

    def __init__(self, url: str) -> None:
        super().__init__(url, Credentials())
        self.queries = 0
        self.waited = 0.0

    def query(self, expr: str, at: float):  # type: ignore[override]
        started = time.perf_counter()
        try:
            return super().query(expr, at)
        finally:
            self.waited += time.perf_counter() - started
            self.queries += 1


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    text, truth = generate(Scenario(step_seconds=300))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hourly = next(
            g for g in recording_rules(params_with({}))["groups"] if g["name"] == "llmcost-hourly"
        )
        hourly = {**hourly, "rules": [r for r in hourly["rules"] if r["record"] in RULES]}
        (work / "rules.yml").write_text(json.dumps({"groups": [hourly]}))
        started = time.perf_counter()
        backfill(text, [work / "rules.yml"], truth.start, truth.end, work / "prometheus")
        print(f"backfill (samples and {len(RULES)} rules): {time.perf_counter() - started:.1f} s")
        now = datetime(2026, 11, 22, tzinfo=timezone.utc)
        period = parse_period("2026-10", None, None, "UTC", now)
        with HistoricalPrometheusServer(work / "prometheus") as server:
            reference = []
            span = period.end_epoch - period.start_epoch
            for _ in range(REPEATS):
                client = TimedClient(server.url)
                client.query(
                    f"sum(increase(llmcost_model_cost_total[{span}s]))",
                    period.end_epoch,
                )
                reference.append(client.waited)
            ref = statistics.median(reference)
            print(f"reference: one month-long increase() query, median {ref * 1000:.1f} ms")
            for source in ("raw", "rules"):
                walls, waits, computes, counts = [], [], [], []
                for _ in range(REPEATS):
                    client = TimedClient(server.url)
                    started = time.perf_counter()
                    report = build_report(client, Selection(), period, source=source, now=now)
                    for render in (render_html, render_csv, render_json):
                        render(report)
                    wall = time.perf_counter() - started
                    walls.append(wall)
                    waits.append(client.waited)
                    computes.append(wall - client.waited)
                    counts.append(client.queries)
                wall = statistics.median(walls)
                print(
                    f"review from {source}: median {wall:.2f} s wall "
                    f"({wall / ref:.0f}x the reference), {counts[0]} queries, "
                    f"{statistics.median(waits):.2f} s waiting for Prometheus, "
                    f"{statistics.median(computes):.2f} s computing and rendering"
                )


if __name__ == "__main__":
    main()
