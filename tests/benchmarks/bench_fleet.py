"""What a fleet of N nodes (default 1,000) costs Prometheus and VictoriaMetrics.

Every node is the fleet simulator's (``tests/realparts/fleet.py``): a real
exporter page for its GPUs (H100, A100, L40S, B200), engines of every type,
models and traffic shape, some nodes and engines down. Printed:

1. Series per node by configuration (1 engine/1 GPU and 8/8, bench_series'
   nodes) and over the simulated fleet, and samples/s per node at a 15 s scrape.
   Reference: the 1/1 node.
2. Bytes per sample, measured: two hours of 50 nodes' full pages at a 15 s step
   written as a TSDB block by promtool (the block's size), and imported into
   VictoriaMetrics (its data directory after a forced merge); the storage per
   node-month that implies. Reference: the exposition text's bytes per sample.
3. Rule evaluation per cycle at 100 and N nodes: a real Prometheus scraping the
   live fleet every 15 s with the committed recording and alerting rules
   (``/api/v1/rules`` evaluationTime per group), then vmagent scraping the same
   fleet into VictoriaMetrics with vmalert evaluating the same rules
   (``vmalert_iteration_duration_seconds``). Also the simulator's own CPU.
   The groups deployed every 5m (llmcost-windows, llmcost-economics) run every
   minute here; a cycle's share is their evaluation time over 5m. Then the
   long-window rules of llmcost-windows over a full day of recorded 5m steps
   at N nodes, on both stores. Target: < 1 s per cycle at 1,000 nodes.
4. The dashboards' panel queries at N nodes over a 24 h range (p50/max per
   dashboard), on the Prometheus of part 3: it holds only the minutes scraped.
5. The monthly review at N nodes from raw counters and from the hourly rules:
   a month of the review's families at a 30-minute step (the hourly increase()
   windows need two samples: 30 minutes is the coarsest step that keeps them, and
   a sixth of a 5-minute month, ~50 M samples at 1,000 nodes) and the review's
   four hourly rules, backfilled with promtool.
   Reference: one month-long increase() query. Target: < 60 s through rules.

Run from the repository root:
``python tests/benchmarks/bench_fleet.py [--nodes N] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import TimedClient  # noqa: E402
from bench_series import SIZES, families  # noqa: E402
from conftest import REVIEW_RULES, review_rule_file  # noqa: E402
from golden_pages import sized_node  # noqa: E402
from realparts.backfill import HistoricalPrometheusServer, backfill_pieces  # noqa: E402
from realparts.fleet import Fleet, FleetServer  # noqa: E402
from realparts.fleet_month import fleet_pieces  # noqa: E402
from realparts.fleet_nodes import fleet_specs, utc  # noqa: E402
from realparts.prometheus_server import PrometheusServer  # noqa: E402
from realparts.victoria_metrics import (  # noqa: E402
    VictoriaMetricsServer,
    VmagentServer,
    VmalertServer,
    openmetrics_to_import,
)
from test_dashboards_prometheus import (  # noqa: E402
    LABEL_VALUES,
    builtin_variables,
    substitute,
)

from llm_cost_exporter.config import parse_duration  # noqa: E402
from llm_cost_exporter.generators.dashboards import render_dashboards  # noqa: E402
from llm_cost_exporter.generators.rules import (  # noqa: E402
    RuleParams,
    alerting_rules,
    params_with,
    recording_rules,
    render,
)
from llm_cost_exporter.outputs.process_families import process_families  # noqa: E402
from llm_cost_exporter.tools.report.build import build_report  # noqa: E402
from llm_cost_exporter.tools.report.fetch import QUERIES_IN_FLIGHT  # noqa: E402
from llm_cost_exporter.tools.report.html import render_html  # noqa: E402
from llm_cost_exporter.tools.report.period import parse_period  # noqa: E402
from llm_cost_exporter.tools.report.selection import Selection  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRAPE = 15
DEPLOYED = RuleParams()
STEP_SECONDS = parse_duration(DEPLOYED.window_step, "window_step")
"""The committed rules' window_step: how often llmcost-windows and llmcost-economics run."""
DEPLOYED_INTERVALS = {
    group["name"]: parse_duration(group["interval"], group["name"])
    for rules in (recording_rules(DEPLOYED), alerting_rules(DEPLOYED))
    for group in rules["groups"]
    if "interval" in group
}
"""Each group with an interval of its own, in seconds; the others run every SCRAPE."""
MEASURED_STEP = 60
"""The window_step of the rules measured live: the groups that run every 5m as deployed
are evaluated every minute here, to time several evaluations in minutes. An evaluation
costs the same either way but for the day of steps it averages, timed by part 3's
last lines on a full day."""
MONTH_SECONDS = 30 * 86400
MONTH = "2026-10"
MONTH_START = int(utc("2026-10-01T00:00:00"))
MONTH_END = int(utc("2026-11-01T00:00:00"))
MARGIN = 7200
NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
REVIEW_FAMILIES = (
    "llmcost_cost",
    "llmcost_model_cost",
    "llmcost_tokens",
    "llmcost_api_equivalent_cost",
    "llmcost_engine_restarts",
    "llmcost_build_info",
    "llmcost_pricing_info",
    "llmcost_hourly_cost",
    "llmcost_model_hourly_cost",
    "llmcost_api_price_per_million_tokens",
    "llmcost_api_price_missing",
    "llmcost_capacity_tokens_per_second",
    "llmcost_model_capacity_tokens_per_second",
)
"""The families the monthly review reads from raw data (exporter/tools/report)."""
STORAGE_NODES = 50
STORAGE_SECONDS = 7200
GAUGE_WANDER = 0.05
"""How far gauges move between samples in the second storage run (5%, every sample)."""
DASHBOARD_RANGE = 86400
DASHBOARD_STEP = 120  # what Grafana asks for 24 h on a ~720-pixel-wide panel


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fleet_series(fleet: Fleet) -> list[int]:
    return [len(p.series) for p in fleet.pages if not p.spec.down]


def part_series(fleet: Fleet) -> float:
    print("1. series per node, samples/s at a 15 s scrape")
    process = sum(len(family.samples) for family in process_families())
    for engines, gpus in SIZES:
        total = sum(families(sized_node(engines, gpus).decode()).values()) + process
        print(
            f"   {engines} engine(s), {gpus} GPU(s) (bench_series): {total} series, "
            f"{total / SCRAPE:.1f} samples/s"
        )
    counts = fleet_series(fleet)
    mean = statistics.fmean(counts)
    print(
        f"   simulated fleet ({len(counts)} answering nodes): {mean:.0f} series per node "
        f"(median {statistics.median(counts):.0f}, max {max(counts)}), "
        f"{mean / SCRAPE:.1f} samples/s per node, {sum(counts) / SCRAPE:,.0f} samples/s in all"
    )
    return mean / SCRAPE


def part_storage(fleet: Fleet, work: Path, samples_per_second: float) -> None:
    pages = [p for p in fleet.pages if not p.spec.down][:STORAGE_NODES]
    start = (MONTH_START // STORAGE_SECONDS) * STORAGE_SECONDS + 4 * STORAGE_SECONDS
    end = start + STORAGE_SECONDS
    series = sum(len(p.series) for p in pages)
    samples = series * (STORAGE_SECONDS // SCRAPE)
    month = samples_per_second * MONTH_SECONDS
    print(
        f"2. bytes per sample: {len(pages)} nodes' full pages ({series:,} series), 2 h at a "
        f"{SCRAPE} s step, {samples:,} samples; one node-month is {month / 1e6:.1f} M samples"
    )
    for wander, label in ((0.0, "gauges as rendered (still)"), (GAUGE_WANDER, "gauges wandering")):
        text_bytes = 0

        def counted(pieces: Iterator[str]) -> Iterator[str]:
            nonlocal text_bytes
            for piece in pieces:
                text_bytes += len(piece)
                yield piece

        pieces = fleet_pieces(
            pages, start, end, SCRAPE, piece_seconds=STORAGE_SECONDS, wander=wander
        )
        directory = work / f"storage-{wander}"
        started = time.perf_counter()
        data = backfill_pieces(counted(pieces), [], start, end, directory / "prometheus")
        blocks = [b for b in data.iterdir() if b.is_dir()]
        stored = sum(
            json.loads((b / "meta.json").read_text())["stats"]["numSamples"] for b in blocks
        )
        block_bytes = sum(dir_bytes(b) for b in blocks)
        chunk_bytes = sum(dir_bytes(b / "chunks") for b in blocks)
        print(
            f"   -- {label}; reference, the exposition text: "
            f"{text_bytes / samples:.1f} bytes/sample"
        )
        print(
            f"   Prometheus (promtool block, {time.perf_counter() - started:.0f} s): "
            f"{block_bytes / stored:.2f} bytes/sample with the index, {chunk_bytes / stored:.2f} "
            f"chunks alone; one node-month {month * block_bytes / stored / 2**20:.0f} MiB"
        )
        started = time.perf_counter()
        with VictoriaMetricsServer(workdir=directory / "vm") as vm:
            vm.import_prometheus(
                line
                for piece in fleet_pieces(
                    pages,
                    start,
                    end,
                    SCRAPE,
                    openmetrics=False,
                    piece_seconds=STORAGE_SECONDS,
                    wander=wander,
                )
                for line in piece.splitlines()
            )
            vm.flush()
            with urllib.request.urlopen(f"{vm.url}/internal/force_merge", timeout=600) as r:
                r.read()
            time.sleep(5)  # the merge runs in the background
            vm.flush()
            count = vm.query_scalar(
                f"sum(count_over_time({{job='llm-cost'}}[{STORAGE_SECONDS}s]))", end
            )
            vm_bytes = dir_bytes(vm.workdir / "data" / "data")
            index_bytes = dir_bytes(vm.workdir / "data" / "indexdb")
        total = vm_bytes + index_bytes
        print(
            f"   VictoriaMetrics ({time.perf_counter() - started:.0f} s, {count or 0:,.0f} samples "
            f"read back): {vm_bytes / samples:.2f} bytes/sample of data, {total / samples:.2f} "
            f"with the index; one node-month {month * total / samples / 2**20:.0f} MiB"
        )


def rule_files(work: Path) -> list[Path]:
    """The committed rules, but for window_step (MEASURED_STEP)."""
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(params_with({"window_step": f"{MEASURED_STEP}s"})).items():
        (work / name).write_text(text)
        paths.append(work / name)
    return paths


def deployed_interval(group: str) -> float:
    """Seconds between two evaluations of `group` as the committed rules run it."""
    return DEPLOYED_INTERVALS.get(group, SCRAPE)


def _rule_groups(prometheus: PrometheusServer) -> dict[str, tuple[str, float]]:
    """The groups evaluated within minutes (the hourly and daily ones run once an hour or
    day, over data this run does not have): when each was last evaluated, and how long
    it took."""
    return {
        g["name"]: (g["lastEvaluation"], float(g["evaluationTime"]))
        for g in prometheus.rules()
        if g.get("lastEvaluation", "").startswith("2") and float(g["interval"]) < 3600
    }


def _own_metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def print_slowest_rules(prometheus: PrometheusServer, count: int = 6) -> None:
    """The rules that cost most in their group's last evaluation: where a cycle goes."""
    rules = [
        (float(rule.get("evaluationTime", 0.0)), group["name"], rule["name"])
        for group in prometheus.rules()
        if float(group["interval"]) < 3600
        for rule in group["rules"]
    ]
    for took, group, name in sorted(rules, reverse=True)[:count]:
        print(f"      {took * 1000:7.0f} ms  {group} / {name}")


def prometheus_cycles(fleet: Fleet, url: str, cycles: int, work: Path, dashboards: bool) -> None:
    job = fleet.scrape_config(url, interval=f"{SCRAPE}s")
    times: dict[str, list[float]] = {}
    with PrometheusServer(
        [],
        scrape_interval=f"{SCRAPE}s",
        evaluation_interval=f"{SCRAPE}s",
        extra_rule_files=rule_files(work / "rules"),
        extra_scrape_configs=[job],
        workdir=work,
    ) as prometheus:
        prometheus.wait_until_scraped(timeout=SCRAPE * 4)
        cpu = time.process_time()
        wall = time.monotonic()
        seen: dict[str, str] = {}
        deadline = time.monotonic() + MEASURED_STEP * (cycles + 4) + 120
        while time.monotonic() < deadline:
            for name, (at, took) in _rule_groups(prometheus).items():
                if seen.get(name) != at:
                    seen[name] = at
                    times.setdefault(name, []).append(took)
            if times and min(len(v) for v in times.values()) >= cycles + 1:
                break
            time.sleep(1)
        simulator = (time.process_time() - cpu) / (time.monotonic() - wall)
        health = [t["health"] for t in prometheus.targets_health()]
        series = _own_metric(prometheus.url, "prometheus_tsdb_head_series")
        print(
            f"   Prometheus: {health.count('up')} nodes up, {health.count('down')} down, "
            f"{series:,.0f} head series; the simulator used "
            f"{simulator * 100:.1f}% of a core serving them"
        )
        # The first evaluation runs on a head still filling up.
        print_groups("Prometheus", {name: values[1:] for name, values in times.items()})
        print_slowest_rules(prometheus)
        if dashboards:
            part_dashboards(prometheus)


def vm_cycles(fleet: Fleet, url: str, cycles: int, work: Path) -> None:
    job = fleet.scrape_config(url, interval=f"{SCRAPE}s")
    with VictoriaMetricsServer(workdir=work / "vm") as vm:
        agent = VmagentServer([job], f"{vm.url}/api/v1/write", workdir=work / "vmagent")
        alerts = VmalertServer(
            rule_files(work / "vm-rules"),
            vm.url,
            interval=f"{SCRAPE}s",
            notifier="http://127.0.0.1:9",
            workdir=work / "vmalert",
        )
        with agent, alerts:
            time.sleep(MEASURED_STEP * (cycles + 1) + 5)
            with urllib.request.urlopen(f"{alerts.url}/metrics", timeout=30) as r:
                text = r.read().decode()
        up = vm.query_scalar('count(up{job="llm-cost"} == 1)')
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vmalert_iteration_duration_seconds_"):
            head, _, value = line.rpartition(" ")
            group = head.split('group="', 1)[1].split('"', 1)[0]
            target = sums if head.startswith("vmalert_iteration_duration_seconds_sum") else counts
            target[group] = target.get(group, 0.0) + float(value)
    print(f"   VictoriaMetrics: {up or 0:.0f} nodes up (scraped by vmagent)")
    hourly = ("llmcost-hourly", "llmcost-daily")
    means = {g: sums[g] / counts[g] for g in sums if counts.get(g) and g not in hourly}
    for group in sorted(means):
        print(
            f"   vmalert {group}: {means[group] * 1000:.0f} ms per evaluation "
            f"(mean of {counts[group]:.0f}), every {deployed_interval(group):.0f} s as deployed"
        )
    print_cycle("vmalert", means)


def print_groups(label: str, times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in times.items() if values}
    for name in sorted(medians):
        print(
            f"   {label} {name}: {medians[name] * 1000:.0f} ms per evaluation "
            f"(max {max(times[name]) * 1000:.0f} ms, {len(times[name])} evaluations), "
            f"every {deployed_interval(name):.0f} s as deployed"
        )
    print_cycle(label, medians)


def print_cycle(label: str, per_evaluation: dict[str, float]) -> None:
    """Rule evaluation per 15 s cycle: each group's evaluation, as often as it runs."""
    per_cycle = sum(t * SCRAPE / deployed_interval(g) for g, t in per_evaluation.items())
    longest = max(per_evaluation.values(), default=0.0)
    print(
        f"   {label}: {per_cycle * 1000:.0f} ms of rule evaluation per {SCRAPE} s cycle "
        f"(target < 1000 ms); the longest group evaluation {longest * 1000:.0f} ms"
    )


def part_rules(fleet: Fleet, sizes: list[int], cycles: int, work: Path) -> None:
    print(f"3. rule evaluation per cycle, live fleet scraped every {SCRAPE} s ({load()})")
    for size in sizes:
        subset = Fleet.of(fleet.pages[:size])
        now = time.time()
        for index in range(size):
            subset.page(index, now)  # fills each node's traffic cache up to today
        print(f"   -- {size} nodes")
        with FleetServer(subset) as server:
            prometheus_cycles(
                subset, server.url, cycles, work / f"prom-{size}", dashboards=size == sizes[-1]
            )
            vm_cycles(subset, server.url, cycles, work / f"vm-{size}")
    part_long_windows(sizes[-1], work)


def steps_of_a_day(nodes: int, end: int) -> Iterator[str]:
    """A day of what llmcost-windows records every 5m for `nodes` nodes, as OpenMetrics."""
    names = [r["record"] for g in recording_rules(DEPLOYED)["groups"] for r in g["rules"]]
    steps = [n for n in names if n.endswith("_step")]
    for name in steps:
        yield f"# TYPE {name} gauge"
        for i in range(nodes):
            labels = f'job="llm-cost",instance="gpu-node-{i:04d}:9478"'
            for k in range(86400 // int(STEP_SECONDS) + 1):
                t = end - 86400 + k * STEP_SECONDS
                yield f"{name}{{{labels}}} {0.5 + 0.4 * ((i + k) % 7) / 7} {t}"
    yield "# EOF"


def part_long_windows(nodes: int, work: Path) -> None:
    """llmcost-windows's 6h and 24h rules over a full day of steps, each evaluated as
    an instant query: the evaluation the live run above had minutes of steps for."""
    print(f"   -- the long windows over a full day of 5m steps at {nodes:,} nodes")
    group = next(g for g in recording_rules(DEPLOYED)["groups"] if g["name"] == "llmcost-windows")
    long_rules = [r for r in group["rules"] if not r["record"].endswith("_step")]
    end = MONTH_START + 86400
    text = "\n".join(steps_of_a_day(nodes, end)) + "\n"
    samples = text.count("\n") - text.count("#")

    def timed(api: object) -> float:
        total = 0.0
        for rule in long_rules:
            best = None
            for _ in range(3):
                started = time.perf_counter()
                api.query(f"count({rule['expr']})", end)  # type: ignore[attr-defined]
                took = time.perf_counter() - started
                best = took if best is None else min(best, took)
            total += best or 0.0
        return total

    backfill_pieces([text], [], end - 86400, end, work / "steps")
    with HistoricalPrometheusServer(work / "steps") as prometheus:
        prometheus.wait_for_compaction()
        on_prometheus = timed(prometheus)
    with VictoriaMetricsServer(workdir=work / "steps-vm") as vm:
        vm.import_prometheus(openmetrics_to_import(text))
        vm.flush()
        on_victoria = timed(vm)
    print(
        f"   {len(long_rules)} rules over {samples:,} recorded steps: Prometheus "
        f"{on_prometheus * 1000:.0f} ms, VictoriaMetrics {on_victoria * 1000:.0f} ms per "
        f"evaluation (every {STEP_SECONDS} s: {on_prometheus * SCRAPE / STEP_SECONDS * 1000:.0f}"
        f" and {on_victoria * SCRAPE / STEP_SECONDS * 1000:.0f} ms per {SCRAPE} s cycle)"
    )


def part_dashboards(prometheus: PrometheusServer) -> None:
    end = time.time()
    print(
        f"4. dashboards over {DASHBOARD_RANGE // 3600} h at a {DASHBOARD_STEP} s step "
        "(the live minutes above are all the data there is)"
    )
    for name, board in render_dashboards().items():
        values = builtin_variables(DASHBOARD_RANGE, DASHBOARD_STEP, "5m")
        for variable in board["templating"]["list"]:
            if variable["type"] == "datasource":
                values[variable["name"]] = "prometheus"
                continue
            match = LABEL_VALUES.match(variable["query"]["query"])
            found = prometheus.query(
                f"group by ({match['label']}) ({substitute(match['selector'], values)})"
            )
            options = sorted(r["metric"].get(match["label"], "") for r in found)
            if variable.get("includeAll"):
                values[variable["name"]] = variable.get("allValue") or ".*"
            else:
                values[variable["name"]] = options[0] if options else ""
        took = []
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = substitute(target["expr"], values)
                started = time.perf_counter()
                if target.get("instant"):
                    prometheus.query(expr, time=end)
                else:
                    prometheus.query_range(expr, end - DASHBOARD_RANGE, end, step=DASHBOARD_STEP)
                took.append(time.perf_counter() - started)
        print(
            f"   {name}: {len(took)} queries, p50 {statistics.median(took) * 1000:.0f} ms, "
            f"max {max(took) * 1000:.0f} ms, {sum(took):.1f} s in all"
        )


def part_review(fleet: Fleet, work: Path, step: int) -> None:
    nodes = len(fleet.pages)
    print(f"5. the monthly review of {nodes:,} nodes, a month at a {step // 60}-minute step")
    samples = 0

    def counted(pieces: Iterator[str]) -> Iterator[str]:
        nonlocal samples
        for piece in pieces:
            samples += piece.count("\n") - piece.count("# ")
            yield piece

    started = time.perf_counter()
    backfill_pieces(
        counted(
            fleet_pieces(
                fleet.pages,
                MONTH_START - MARGIN,
                MONTH_END + MARGIN,
                step,
                families=REVIEW_FAMILIES,
            )
        ),
        [review_rule_file(work)],
        MONTH_START,
        MONTH_END,
        work / "month",
    )
    print(
        f"   backfilled {samples:,} samples and {len(REVIEW_RULES)} hourly rules in "
        f"{time.perf_counter() - started:.0f} s ({load()})"
    )
    period = parse_period(MONTH, None, None, "UTC", NOW)
    with HistoricalPrometheusServer(work / "month") as server:
        started = time.perf_counter()
        blocks = server.wait_for_compaction()
        print(
            f"   Prometheus merged the backfilled blocks as it does over days of running: "
            f"{blocks} left after {time.perf_counter() - started:.0f} s"
        )
        client = TimedClient(server.url)
        span = period.end_epoch - period.start_epoch
        client.query(f"sum(increase(llmcost_model_cost_total[{span}s]))", period.end_epoch)
        print(f"   reference: one month-long increase() over the fleet, {client.waited:.2f} s")
        for source in ("rules", "raw"):
            client = TimedClient(server.url)
            started = time.perf_counter()
            report = build_report(client, Selection(), period, source=source, now=NOW)
            render_html(report)
            wall = time.perf_counter() - started
            target = " (target < 60 s)" if source == "rules" else ""
            print(
                f"   review from {source}: {wall:.1f} s wall{target}, {client.queries} queries "
                f"({client.waited:.1f} s of answers, summed over the {QUERIES_IN_FLIGHT} in flight)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000, help="fleet size")
    parser.add_argument("--quick", action="store_true", help="2 evaluation cycles, N nodes only")
    parser.add_argument("--cycles", type=int, default=4, help="rule evaluations measured")
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 2,5")
    args = parser.parse_args()
    skip = {int(p) for p in args.skip.split(",") if p}
    print(f"bench_fleet: {args.nodes:,} nodes; {load()}")
    # A down engine's collector says so every cycle; the figures say it here.
    logging.getLogger("llm_cost_exporter").setLevel(logging.ERROR)
    started = time.perf_counter()
    cpu = time.process_time()
    fleet = Fleet(fleet_specs(args.nodes, MONTH_START), t0=MONTH_START - MARGIN)
    print(
        f"rendered {args.nodes:,} nodes through the exporter in "
        f"{time.perf_counter() - started:.0f} s ({time.process_time() - cpu:.0f} s CPU)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        per_node = part_series(fleet)
        if 2 not in skip:
            part_storage(fleet, work, per_node)
        if 3 not in skip:
            sizes = [args.nodes] if args.quick else sorted({min(100, args.nodes), args.nodes})
            part_rules(fleet, sizes, 2 if args.quick else args.cycles, work)
        if 5 not in skip:
            part_review(fleet, work, 3600 // 2)
    print(f"done in {time.perf_counter() - started:.0f} s; {load()}")


if __name__ == "__main__":
    main()
