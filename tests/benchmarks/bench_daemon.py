"""Steady-state CPU and memory of the exporter daemon watching an 8-engine node.

An exporter runs on every GPU node forever, so its idle cost has to be
negligible next to what it reports. This runs the real daemon against the
simulator at the default 5 s interval, scrapes it like Prometheus does (every
15 s), and reads its CPU time and RSS from /proc. References measured in the
same run: node-exporter under the same scrape cadence, and a bare Python that
only imports the daemon's libraries (the memory floor any Python exporter pays).
A second bare Python that also imports genai_prices and pydantic shows what
the daemon would weigh if it loaded the price catalog in-process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _procs import (
    ProcessGroup,
    cpu_seconds,
    fmt_ratio,
    run_main,
    start_exporter,
    start_idle_python,
    start_node_exporter,
    start_simulator,
    status_kb,
    wait_seconds,
)

TARGET_CPU_PERCENT = 0.5
TARGET_RSS_MIB = 60.0
DAEMON_MODULES = ["aiohttp", "prometheus_client", "yaml"]
CATALOG_MODULES = [*DAEMON_MODULES, "genai_prices", "pydantic"]


@dataclass
class Watched:
    """One process under measurement and what was read about it."""

    name: str
    pid: int
    scrape_url: str | None = None
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: int = 0
    scrape_bytes: int = 0

    def cpu_percent(self, seconds: float) -> float:
        return (self.cpu_end - self.cpu_start) / seconds * 100

    @property
    def rss_mean_mib(self) -> float:
        return sum(self.rss_kb) / len(self.rss_kb) / 1024

    @property
    def rss_max_mib(self) -> float:
        return max(self.rss_kb) / 1024


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def measure(watched: list[Watched], seconds: float, scrape_every: float) -> float:
    """Sample RSS each second and scrape on cadence; return the elapsed wall time."""
    for proc in watched:
        proc.cpu_start = cpu_seconds(proc.pid)
    start = time.monotonic()
    next_scrape = start
    next_sample = start
    while (now := time.monotonic()) < start + seconds:
        if now >= next_scrape:
            for proc in watched:
                if proc.scrape_url:
                    proc.scrape_bytes = scrape(proc.scrape_url)
            next_scrape += scrape_every
        if now >= next_sample:
            for proc in watched:
                proc.rss_kb.append(status_kb(proc.pid, "VmRSS"))
            next_sample += 1.0
        time.sleep(max(0.0, min(next_scrape, next_sample, start + seconds) - time.monotonic()))
    elapsed = time.monotonic() - start
    for proc in watched:
        proc.cpu_end = cpu_seconds(proc.pid)
        proc.hwm_kb = status_kb(proc.pid, "VmHWM")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=8, help="simulated engines and targets")
    parser.add_argument("--interval", default="5s", help="exporter collection interval")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring period")
    parser.add_argument(
        "--scrape-every", type=float, default=15.0, help="seconds between scrapes of /metrics"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            sim_port = start_simulator(group, args.engines)
            exporter, port = start_exporter(group, sim_port, args.engines, args.interval)
            ours = Watched("llm-cost-exporter", exporter.pid, f"http://127.0.0.1:{port}/metrics")
            watched = [ours]
            node = start_node_exporter(group)
            if node is not None:
                url = f"http://127.0.0.1:{node[1]}/metrics"
                watched.append(Watched("node-exporter", node[0].pid, url))
            bare = Watched("bare python", start_idle_python(group, "bare", DAEMON_MODULES))
            catalog = Watched(
                "bare + catalog", start_idle_python(group, "catalog", CATALOG_MODULES)
            )
            watched += [bare, catalog]
            print(
                f"{args.engines} engines, interval {args.interval}, warm-up {args.warmup:g} s, "
                f"measuring {args.seconds:g} s with a scrape every {args.scrape_every:g} s ...",
                flush=True,
            )
            wait_seconds(args.warmup)
            elapsed = measure(watched, args.seconds, args.scrape_every)
        finally:
            group.close()

    print(f"\n{'process':<20}{'CPU % 1 core':>14}{'RSS mean':>11}{'RSS max':>10}{'VmHWM':>9}")
    for proc in watched:
        cpu = f"{proc.cpu_percent(elapsed):.3f}" if proc.scrape_url else "-"
        print(
            f"{proc.name:<20}{cpu:>14}{proc.rss_mean_mib:>11.1f}{proc.rss_max_mib:>10.1f}"
            f"{proc.hwm_kb / 1024:>9.1f}"
        )
    print("(memory in MiB; bare python: imports " + ", ".join(DAEMON_MODULES) + " and sleeps;")
    print(" bare + catalog: also genai_prices and pydantic)")
    if node is None:
        print("node-exporter not installed (prometheus-node-exporter): comparison skipped")

    cpu = ours.cpu_percent(elapsed)
    rss = ours.rss_max_mib
    print(
        f"\nexporter CPU {cpu:.3f}% of one core, target <= {TARGET_CPU_PERCENT:g}%: "
        f"{'met' if cpu <= TARGET_CPU_PERCENT else 'MISSED'}"
    )
    print(
        f"exporter RSS {rss:.1f} MiB (max), target <= {TARGET_RSS_MIB:g} MiB: "
        f"{'met' if rss <= TARGET_RSS_MIB else 'MISSED'}"
    )
    print(
        f"RSS over bare python: {fmt_ratio(ours.rss_mean_mib, bare.rss_mean_mib)} "
        f"(+{ours.rss_mean_mib - bare.rss_mean_mib:.1f} MiB for the daemon's own code and state)"
    )
    catalog_extra = catalog.rss_mean_mib - bare.rss_mean_mib
    own_extra = ours.rss_mean_mib - bare.rss_mean_mib
    print(
        f"genai_prices + pydantic would add {catalog_extra:.1f} MiB; the daemon's whole "
        f"surplus is {own_extra:.1f} MiB, so they are "
        f"{'not' if own_extra < catalog_extra else 'possibly'} loaded in-process"
    )
    if node is not None:
        ref = watched[1]
        print(
            f"vs node-exporter: CPU {fmt_ratio(cpu, ref.cpu_percent(elapsed))}, "
            f"RSS {fmt_ratio(ours.rss_mean_mib, ref.rss_mean_mib)}, page bytes "
            f"{ours.scrape_bytes} vs {ref.scrape_bytes}"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
