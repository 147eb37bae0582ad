"""Cost of the planner: one node-month, and a 1,000-node month read through recording rules.

1. One node-month in memory (a B2B month, 744 hours): the advice (six policies,
   replica economics and seven sensitivity runs) for a one-replica fleet and
   for a three-replica one. Reference, in the same run: one pass over the
   hours adding up the as-run cost, the least any planner must do.
2. The test suite's synthetic October of one node, backfilled into a real
   Prometheus and planned from raw counters: time waiting for Prometheus,
   computing the review, and the advice alone.
3. A 1,000-node month of the review's hourly recording rules only (as left
   once raw samples are gone), written as TSDB blocks with promtool, then
   planned through the rules: the same split.

Run from the repository root: ``python tests/benchmarks/bench_plan.py [--nodes N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import TimedClient  # noqa: E402
from conftest import review_rule_file  # noqa: E402
from plan_traffic import b2b_level, b2b_month  # noqa: E402
from realparts.backfill import HistoricalPrometheusServer, backfill  # noqa: E402
from realparts.synthetic_month import Scenario, generate  # noqa: E402

from llm_cost_exporter.tools.planner.advise import advise  # noqa: E402
from llm_cost_exporter.tools.planner.from_prometheus import traffic_from_review  # noqa: E402
from llm_cost_exporter.tools.planner.model import FIXED, Knobs  # noqa: E402
from llm_cost_exporter.tools.planner.policies import as_run  # noqa: E402
from llm_cost_exporter.tools.report import figures as f  # noqa: E402
from llm_cost_exporter.tools.report.build import Planning, compute_report  # noqa: E402
from llm_cost_exporter.tools.report.fetch import RAW, RULES, fetch  # noqa: E402
from llm_cost_exporter.tools.report.period import Period, parse_period  # noqa: E402
from llm_cost_exporter.tools.report.selection import Selection  # noqa: E402

REPEATS = 3
CAPACITY = 20000.0
"""Tokens per second each simulated node serves at full load."""
NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


def median_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_memory() -> None:
    print("1. one node-month in memory (744 hours)")
    for peak, label in ((1500.0, "1 replica"), (4500.0, "3 replicas")):
        month = b2b_month(15, peak, capacity=1975, replica_cost=3.20)
        reference = median_seconds(lambda m=month: as_run(m), repeats=20)
        advice_time = median_seconds(lambda m=month: advise(m))
        fleet = advise(month).fleet_size
        print(
            f"   {label} (fleet {fleet}): advice {advice_time * 1000:.1f} ms, "
            f"{advice_time / reference:.0f}x one as-run pass ({reference * 1000:.2f} ms)"
        )


def planned(client: TimedClient, period: Period, source: str, planning: Planning) -> None:
    """Fetch, review and advice, each timed; one line."""
    selection = Selection()
    started = time.perf_counter()
    tables = fetch(client, selection, period, source)
    fetched = time.perf_counter() - started
    started = time.perf_counter()
    report = compute_report(
        tables,
        selection,
        period,
        source,
        currency="USD",
        prometheus_url=client.url,
        now=NOW,
        planning=planning,
    )
    review = time.perf_counter() - started
    assert report.advice is not None, report.advice_missing

    unpriced = f.unpriced_models(tables)
    ledger = f.build_ledger(tables, unpriced, False)
    traffic = traffic_from_review(
        ledger, tables, period, unpriced, currency="USD", source=source, capacity=planning.capacity
    )
    to_traffic = median_seconds(
        lambda: traffic_from_review(
            ledger,
            tables,
            period,
            unpriced,
            currency="USD",
            source=source,
            capacity=planning.capacity,
        )
    )
    alone = median_seconds(lambda: advise(traffic, planning.knobs))
    print(
        f"   {client.queries} queries, {client.waited:.2f} s waiting for Prometheus "
        f"({fetched:.2f} s fetching in all); review with advice {review:.2f} s, of which the "
        f"traffic model {to_traffic:.2f} s and the advice {alone:.2f} s "
        f"({(to_traffic + alone) / fetched:.2f}x the fetch); fleet {report.advice.fleet_size}, "
        f"fixed fleet {report.advice.outcome(FIXED).cost:,.2f} USD"
    )


def one_node_from_prometheus(work: Path) -> None:
    print("2. one node-month from Prometheus (raw counters, the test suite's October)")
    text, truth = generate(Scenario(step_seconds=300))
    backfill(text, [review_rule_file(work)], truth.start, truth.end, work / "one")
    period = parse_period("2026-10", None, None, "UTC", NOW)
    with HistoricalPrometheusServer(work / "one") as server:
        planned(TimedClient(server.url), period, RAW, Planning(knobs=Knobs()))


def fleet_rule_series(nodes: int, period: Period) -> Iterator[str]:
    """The review's hourly rules for ``nodes`` nodes (one model each), stamped 30 s after
    each hour: twelve series a node."""
    models = ("llama-3.1-70b", "qwen2.5-72b", "mistral-large", "llama-3.1-8b")
    kinds = (("prompt", 0.55), ("cached_prompt", 0.15), ("generation", 0.30))
    prices = {"prompt": 0.80, "cached_prompt": 0.08, "generation": 4.00}
    hours = range(period.hours)

    def node(i: int) -> str:
        return f'job="llm-cost",instance="gpu-node-{i:04d}:9478"'

    def model(i: int) -> str:
        return models[i % len(models)]

    def tokens(i: int, hour: int) -> float:
        scale = 20e6 * (0.5 + (i % 7) / 6)
        return round(scale * b2b_level(period.hour_start(hour), 10 + i % 11))

    def stamp(hour: int) -> int:
        return period.start_epoch + (hour + 1) * 3600 + 30

    cost = {i: 8 * (2.0 + (i % 5) * 0.4) * 1.3 for i in range(nodes)}
    yield "# TYPE instance_component:llmcost_cost:increase1h gauge"
    for i in range(nodes):
        for component, share in (("gpu", 1 / 1.3), ("overhead", 0.3 / 1.3)):
            for h in hours:
                yield (
                    f'instance_component:llmcost_cost:increase1h{{{node(i)},component="{component}"}}'
                    f" {cost[i] * share} {stamp(h)}"
                )
    yield "# TYPE instance_model:llmcost_cost:increase1h gauge"
    for i in range(nodes):
        for h in hours:
            yield (
                f'instance_model:llmcost_cost:increase1h{{{node(i)},model="{model(i)}"}}'
                f" {cost[i]} {stamp(h)}"
            )
    yield "# TYPE instance_model_kind:llmcost_tokens:increase1h gauge"
    for i in range(nodes):
        for kind, mix in kinds:
            for h in hours:
                yield (
                    f"instance_model_kind:llmcost_tokens:increase1h"
                    f'{{{node(i)},model="{model(i)}",kind="{kind}"}}'
                    f" {round(tokens(i, h) * mix)} {stamp(h)}"
                )
    model_label = ',model="{model}"'
    readings = (
        ("instance:llmcost_capacity_tokens_per_second:avg1h", "", CAPACITY),
        ("instance_model:llmcost_capacity_tokens_per_second:avg1h", model_label, CAPACITY),
        ("instance:llmcost_build_info:count_over_time1h", "", 240.0),
        ("instance_model:llmcost_cost:resets1h", model_label, 0.0),
        ("instance:llmcost_pricing_info:last_over_time1h", ',currency="USD"', 1.0),
    )
    for name, extra, value in readings:
        yield f"# TYPE {name} gauge"
        for i in range(nodes):
            labels = node(i) + extra.format(model=model(i))
            for h in hours:
                yield f"{name}{{{labels}}} {value} {stamp(h)}"
    yield "# TYPE instance_model:llmcost_api_equivalent_cost:increase1h gauge"
    for i in range(nodes):
        for h in hours:
            api = sum(round(tokens(i, h) * mix) * prices[k] for k, mix in kinds) / 1e6
            yield (
                f'instance_model:llmcost_api_equivalent_cost:increase1h{{{node(i)},model="{model(i)}"}}'
                f" {api} {stamp(h)}"
            )
    yield "# EOF"


def fleet_from_rules(work: Path, nodes: int) -> None:
    print(f"3. a {nodes:,}-node month through the hourly recording rules only")
    period = parse_period("2026-10", None, None, "UTC", NOW)
    started = time.perf_counter()
    text = "\n".join(fleet_rule_series(nodes, period)) + "\n"
    backfill(text, [], period.start_epoch, period.end_epoch, work / "fleet")
    print(
        f"   backfilled {len(text) / 1e6:,.0f} MB of exposition "
        f"({nodes * 12 * period.hours:,} samples) in {time.perf_counter() - started:.0f} s"
    )
    del text
    with HistoricalPrometheusServer(work / "fleet") as server:
        started = time.perf_counter()
        blocks = server.wait_for_compaction()
        print(
            f"   Prometheus merged the backfilled blocks as it does over days of running: "
            f"{blocks} blocks left after {time.perf_counter() - started:.0f} s"
        )
        planned(TimedClient(server.url), period, RULES, Planning())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000, help="fleet size of part 3")
    args = parser.parse_args()
    in_memory()
    with tempfile.TemporaryDirectory() as tmp:
        one_node_from_prometheus(Path(tmp))
        fleet_from_rules(Path(tmp), args.nodes)


if __name__ == "__main__":
    main()
