"""How fast the planner reads a traffic file, and that its memory does not grow with it.

A month of one request a second is ~2.6M LiteLLM spend-log rows. The rows are
the realistic sample of the test suite (tests/fixtures/plan/), cycled with a
new ``startTime`` each second and generated as they are read, so the file is
never whole in memory (or on disk). Each run is measured against the floor in
the same process: Python's ``csv.reader`` alone consuming the same lines.

- ``wide``: every column of ``LiteLLM_SpendLogs`` (``SELECT *``), metadata included;
- ``narrow``: the columns the planner reads (the export the README suggests);
- ``hourly``: the planner's hourly format, one row per hour and model.

Run from the repository root: ``python tests/benchmarks/bench_plan_csv.py``
(``--rows 200000`` for a quick run).
"""

from __future__ import annotations

import argparse
import csv
import io
import resource
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from llm_cost_exporter.accounting.costmodel import ApiPrices
from llm_cost_exporter.tools.planner.advise import advise
from llm_cost_exporter.tools.planner.csv_input import traffic_from_lines
from llm_cost_exporter.tools.planner.replica import ReplicaSpec

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "plan" / "litellm-spend-logs.csv"
NARROW = ("startTime", "model", "prompt_tokens", "completion_tokens", "spend", "status")
NARROW += ("cache_hit", "metadata")
MONTH_OF_SECONDS = 30 * 24 * 3600
PRICES = ApiPrices(input=2.50, cached_input=1.25, output=10.00)
REPLICA = ReplicaSpec(gpu_price=2.00, capacity=1500.0)
ZONE = ZoneInfo("Europe/Berlin")
START = datetime(2025, 3, 1, tzinfo=timezone.utc)


def _line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


def litellm_lines(columns: tuple[str, ...] | None, rows: int) -> Callable[[], Iterator[str]]:
    """The sample's rows, one a second from START; ``columns`` None: all of them."""
    with SAMPLE.open(encoding="utf-8", newline="") as stream:
        sample = list(csv.DictReader(stream))
    header = list(columns or sample[0])
    templates = []
    for row in sample:
        row["startTime"] = "\0"
        text = _line([row[c] for c in header]).replace("{", "{{").replace("}", "}}")
        templates.append(text.replace("\0", "{}"))

    def lines() -> Iterator[str]:
        yield _line(header)
        count = len(templates)
        minute = ""
        for second in range(rows):
            if second % 60 == 0:
                minute = (START + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M")
            stamp = f"{minute}:{second % 60:02d}.{second % 997:03d}"
            yield templates[second % count].format(stamp)

    return lines


def hourly_lines(rows: int, models: int = 50) -> Callable[[], Iterator[str]]:
    def lines() -> Iterator[str]:
        yield "hour,model,prompt_tokens,cached_prompt_tokens,generation_tokens,api_cost\n"
        for i in range(rows):
            hour = (START + timedelta(hours=i // models)).strftime("%Y-%m-%dT%H:00:00Z")
            tokens = f"{120000 + i % 977},{40000 + i % 131},{9000 + i}"
            yield f"{hour},model-{i % models},{tokens},0.75\n"

    return lines


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(label: str, lines: Callable[[], Iterator[str]], rows: int) -> None:
    started = time.perf_counter()
    for _ in csv.reader(lines()):
        pass
    floor = time.perf_counter() - started
    rss_before = max_rss_mib()
    started = time.perf_counter()
    traffic = traffic_from_lines(
        lines(), name=label, prices=PRICES, replica=REPLICA, zone=ZONE, currency="USD"
    )
    took = time.perf_counter() - started
    print(
        f"{label:>7}: {rows:>10,} rows  planner {rows / took:>9,.0f} rows/s ({took:6.1f} s)  "
        f"csv.reader alone {rows / floor:>9,.0f} rows/s  ratio {took / floor:4.2f}  "
        f"{len(traffic.hours):,} hours  max RSS {rss_before:,.0f} -> {max_rss_mib():,.0f} MiB"
    )
    started = time.perf_counter()
    advise(traffic)
    print(f"{'':>9}advise() over those hours: {time.perf_counter() - started:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=MONTH_OF_SECONDS, help="LiteLLM rows")
    parser.add_argument("--hourly-rows", type=int, default=200_000)
    parser.add_argument("--only", choices=("wide", "narrow", "hourly"))
    args = parser.parse_args()
    runs = {
        "wide": (litellm_lines(None, args.rows), args.rows),
        "narrow": (litellm_lines(NARROW, args.rows), args.rows),
        "hourly": (hourly_lines(args.hourly_rows), args.hourly_rows),
    }
    for label, (lines, rows) in runs.items():
        if args.only in (None, label):
            measure(label, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
