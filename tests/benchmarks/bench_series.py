"""What one node costs a Prometheus: series and samples per node, by configuration.

Each node is rendered by the exporter's own collection loop and page (the
golden pages' machinery: real vLLM 0.32 busy pages, fixed NVML readings), at
1 engine on 1 GPU and 8 engines on 8 GPUs, one model per engine. Printed: the
series on ``/metrics`` (process metrics included), the samples per second at a
15 s scrape, and the families that weigh most. The design's budget is at most
250 series for the 8-engine, 8-GPU node. Reference, in the same run: the
1-engine, 1-GPU node, so the cost of each added engine and GPU shows.

Last, each family of the 8-engine node is looked up in what reads the
series: the recording and alerting rules (``alerts/``), the dashboards
(``dashboards/``), the Helm chart's templates, and the queries of the
monthly review and the planner (``exporter/tools/``). A family none of them
names, literally or through a ``__name__`` pattern, is listed as read by none:
a candidate to make optional or drop.

Run from the repository root: ``python tests/benchmarks/bench_series.py [--top N]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden_pages import sized_node  # noqa: E402

from llm_cost_exporter.outputs.process_families import process_families  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
READERS = {
    "rules": ("alerts", ("*.yml",)),
    "dashboards": ("dashboards", ("*.json",)),
    "chart": ("helm", ("*.yaml", "*.tpl")),
    "review": ("exporter/tools", ("*.py",)),
}
BUDGET = 250
SCRAPE_SECONDS = 15
SIZES = ((1, 1), (8, 8))


def families(page: str) -> Counter[str]:
    """Series per family name (a histogram's buckets, sum and count as their family)."""
    out: Counter[str] = Counter()
    for line in page.splitlines():
        if line and not line.startswith("#"):
            out[re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)] += 1
    return out


def readers() -> dict[str, tuple[str, list[re.Pattern[str]]]]:
    """Each reader's text, and the ``__name__`` patterns it selects families with."""
    out = {}
    for reader, (folder, globs) in READERS.items():
        text = "\n".join(
            path.read_text(encoding="utf-8", errors="replace")
            for pattern in globs
            for path in sorted((ROOT / folder).rglob(pattern))
        )
        patterns = [
            re.compile(p.replace('\\"', "")) for p in re.findall(r'__name__=~\\?"([^"\\]+)', text)
        ]
        out[reader] = (text, patterns)
    return out


def read_by(family: str, sources: dict[str, tuple[str, list[re.Pattern[str]]]]) -> list[str]:
    names = {family, family.removesuffix("_total")}
    found = []
    for reader, (text, patterns) in sources.items():
        literal = any(
            re.search(rf"(?<![A-Za-z0-9_:]){re.escape(n)}(?![A-Za-z0-9_])", text) for n in names
        )
        if literal or any(p.fullmatch(family) for p in patterns):
            found.append(reader)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--top", type=int, default=15, help="families listed per node")
    args = parser.parse_args()
    process = sum(len(family.samples) for family in process_families())
    counted = {}
    by_family: Counter[str] = Counter()
    for engines, gpus in SIZES:
        by_family = families(sized_node(engines, gpus).decode())
        total = sum(by_family.values()) + process
        counted[(engines, gpus)] = total
        print(
            f"{engines} engine(s), {gpus} GPU(s): {total} series ({process} of the process), "
            f"{total / SCRAPE_SECONDS:.1f} samples/s at a {SCRAPE_SECONDS} s scrape"
        )
        for name, count in by_family.most_common(args.top):
            print(f"   {count:4d}  {name}")
    small, large = counted[SIZES[0]], counted[SIZES[-1]]
    added = SIZES[-1][0] - SIZES[0][0]
    print(
        f"each added engine and GPU: {(large - small) / added:.1f} series; "
        f"8/8 node against the {BUDGET}-series budget: {large / BUDGET:.2f}x"
    )
    sources = readers()
    unread = {f: n for f, n in by_family.items() if not read_by(f, sources)}
    print(
        f"families of the 8/8 node that no rule, dashboard, chart template or review query "
        f"reads: {len(unread)} of {len(by_family)}, {sum(unread.values())} series"
    )
    for name, count in sorted(unread.items(), key=lambda item: (-item[1], item[0])):
        print(f"   {count:4d}  {name}")


if __name__ == "__main__":
    main()
