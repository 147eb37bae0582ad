"""/metrics latency and daemon memory while an engine serves a large or hostile page.

The daemon watches one engine (tests/realparts/hostile_engine.py, its own
process) whose page can be switched between phases. A scraper requests
/metrics throughout and the daemon's RSS is read from /proc:

- quiet: the engine serves the real busy vLLM page (53 kB): the reference;
- near limit: a page just under `collection.max_page_bytes`, read every cycle;
- over limit: twice the limit, without a Content-Length;
- gzip bomb: half a megabyte of gzip inflating to 512 MiB.

Scrapes are due at a fixed rate and timed from when they were due, so a
stalled event loop shows in the percentiles however briefly it stalls. Quiet
and near-limit segments alternate, and the verdict is the median over the
rounds of near-limit p99 / quiet p99, so a burst of load from elsewhere on the
machine moves one round, not the result. Each phase also prints the daemon's
CPU, its highest RSS during the phase, and its RSS once the engine is back to
the small page for a few cycles, as a ratio to the RSS before the first large
page.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _procs import (
    TESTS_DIR,
    ProcessGroup,
    cpu_seconds,
    fmt_ratio,
    run_main,
    spawn_exporter,
    status_kb,
)
from realparts.ports import free_port

TARGET_P99_RATIO = 2.0
TARGET_RSS_RATIO = 1.1
TRANSITION = 1.5
"""Seconds after switching the page before measuring: a cycle may still read the old one."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] * 1e3


def start_engine(group: ProcessGroup, max_bytes: int) -> str:
    """The hostile engine in its own process; returns its base URL."""
    proc = group.spawn(
        "engine",
        [sys.executable, "-m", "realparts.hostile_engine", "--max-bytes", str(max_bytes)],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited:\n{group.log_tail('engine')}")
        lines = group.log_tail("engine").splitlines()
        if lines and lines[0].startswith("http://"):
            return lines[0].strip()
        time.sleep(0.1)
    raise TimeoutError("the hostile engine did not start")


def set_mode(engine: str, mode: str) -> None:
    request = urllib.request.Request(f"{engine}/mode/{mode}", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def start_daemon(
    group: ProcessGroup, engine: str, interval: str, max_bytes: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {
        "web": {"listen_address": f"127.0.0.1:{port}"},
        "engines": [{"url": f"{engine}/current"}],
        "collection": {"interval": interval, "max_page_bytes": max_bytes},
        "cost": {"gpus": [{"model": "H100", "count": 1}], "gpu_prices_per_hour": {"H100": 2.5}},
        "api_prices": {"default": {"input": 0.8, "cached_input": 0.08, "output": 4.0}},
    }
    return spawn_exporter(group, config), port


@dataclass
class Segment:
    """What one stretch of scraping saw."""

    latencies: list[float]
    peak_kb: int
    cpu_share: float
    """The daemon's CPU over the stretch, as a share of one core."""


class Scraper:
    """Requests /metrics at a fixed rate on one keep-alive connection; watches the daemon.

    Each latency runs from when the request was due, not from when it was sent:
    a scrape that waits behind a stalled event loop counts its wait, as it would
    for a Prometheus whose scrapes arrive on their own schedule.
    """

    def __init__(self, port: int, pid: int, rate: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.pid = pid
        self.period = 1 / rate

    def run(self, seconds: float) -> Segment:
        latencies: list[float] = []
        peak = 0
        cpu = cpu_seconds(self.pid)
        due = started = time.perf_counter()
        end = due + seconds
        while due < end:
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            self.connection.request("GET", "/metrics")
            response = self.connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - due)
            if response.status != 200:
                raise RuntimeError(f"/metrics answered {response.status}")
            if len(latencies) % 20 == 0:
                peak = max(peak, status_kb(self.pid, "VmRSS"))
            due += self.period
        cpu_share = (cpu_seconds(self.pid) - cpu) / (time.perf_counter() - started)
        return Segment(latencies, max(peak, status_kb(self.pid, "VmRSS")), cpu_share)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-bytes", type=int, default=16 * 1024 * 1024, help="page limit")
    parser.add_argument("--interval", default="1s", help="the daemon's collection interval")
    parser.add_argument("--seconds", type=float, default=4.0, help="scraping time per segment")
    parser.add_argument("--rounds", type=int, default=8, help="quiet/near-limit alternations")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds back on the small page")
    parser.add_argument("--rate", type=float, default=100.0, help="scrapes per second")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-large-page-") as workdir:
        group = ProcessGroup(Path(workdir))
        try:
            engine = start_engine(group, args.max_bytes)
            daemon, port = start_daemon(group, engine, args.interval, args.max_bytes)
            scraper = Scraper(port, daemon.pid, args.rate)

            def segment(mode: str, seconds: float = args.seconds) -> Segment:
                """Switch the page, skip the cycle that may still read the old one, measure."""
                set_mode(engine, mode)
                scraper.run(TRANSITION)
                return scraper.run(seconds)

            scraper.run(args.settle)  # warm-up: a few cycles of the small page
            baseline = status_kb(daemon.pid, "VmRSS")
            # Alternating segments: load from elsewhere on the machine hits both kinds.
            rounds = [(segment("good"), segment("near_limit")) for _ in range(args.rounds)]
            after_near = segment("good", args.settle).peak_kb
            hostile = {}
            for phase in ("over_limit", "gzip_bomb"):
                hostile[phase] = (segment(phase), segment("good", args.settle).peak_kb)
            log = group.log_tail("exporter", 200)
        finally:
            group.close()

    quiet = Segment(
        [t for q, _ in rounds for t in q.latencies],
        max(q.peak_kb for q, _ in rounds),
        statistics.mean(q.cpu_share for q, _ in rounds),
    )
    near = Segment(
        [t for _, n in rounds for t in n.latencies],
        max(n.peak_kb for _, n in rounds),
        statistics.mean(n.cpu_share for _, n in rounds),
    )
    rows = [
        ("quiet", quiet, baseline),
        ("near_limit", near, after_near),
        *((phase, seg, after) for phase, (seg, after) in hostile.items()),
    ]
    print(
        f"daemon watching one engine, interval {args.interval}, page limit "
        f"{args.max_bytes / 2**20:g} MiB; {args.rate:g} scrapes/s; quiet and near-limit "
        f"alternate {args.rounds} times, {args.seconds:g} s each"
    )
    quiet_p99 = percentile(quiet.latencies, 99)
    print(
        f"\n{'phase':<12}{'requests':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'p99 ratio':>10}{'CPU %':>7}{'RSS peak MiB':>13}{'RSS after MiB':>14}{'after ratio':>12}"
    )
    for phase, seg, rss_after in rows:
        p99 = percentile(seg.latencies, 99)
        print(
            f"{phase:<12}{len(seg.latencies):>9}{percentile(seg.latencies, 50):>8.2f}"
            f"{p99:>8.2f}{max(seg.latencies) * 1e3:>8.1f}{fmt_ratio(p99, quiet_p99):>10}"
            f"{seg.cpu_share * 100:>7.1f}{seg.peak_kb / 1024:>13.1f}{rss_after / 1024:>14.1f}"
            f"{fmt_ratio(rss_after, baseline):>12}"
        )
    print(f"\nRSS baseline before the first large page: {baseline / 1024:.1f} MiB")
    per_round = [percentile(n.latencies, 99) / percentile(q.latencies, 99) for q, n in rounds]
    ratio = statistics.median(per_round)
    print("near-limit p99 / quiet p99 per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    verdict = "met" if ratio <= TARGET_P99_RATIO else "MISSED"
    print(f"median of the rounds: {ratio:.2f}x  target <= {TARGET_P99_RATIO:g}x: {verdict}")
    worst_after = max(after for _, _, after in rows) / baseline
    verdict = "met" if worst_after <= TARGET_RSS_RATIO else "MISSED"
    print(f"worst RSS after ratio {worst_after:.2f}x  target <= {TARGET_RSS_RATIO:g}x: {verdict}")
    if "Traceback" in log:
        print("FAIL: a Traceback in the daemon's log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
