"""Soak: the daemon's memory after its history has filled, over more than an hour.

The windowed gauges keep one point of running totals per collection cycle for
the longest window (1 h by default), so memory is expected to rise until that
history is full and then stay flat. This runs the real daemon at a 1 s
interval with the default windows, learned capacity and a state file, against
the simulator serving several engines with bursty traffic and periodic engine
restarts. It scrapes `/metrics` every second (with a burst of concurrent
scrapes now and then, and the landing page and `/healthz` too), checks every
answer and that no counter goes down, and samples the daemon's RSS and CPU
from /proc. The reference is the daemon itself: RSS once the history is full
against RSS at the end of the run.

Exits non-zero only if the daemon died or logged a traceback; a missed target
is printed, not turned into a failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from _procs import (
    ProcessGroup,
    cpu_seconds,
    engine_urls,
    run_main,
    spawn_exporter,
    start_simulator,
    status_kb,
    wait_seconds,
)
from realparts.ports import free_port

from llm_cost_exporter.config import ConfigError, parse_duration

TARGET_GROWTH_PERCENT = 5.0
FULL_RUN_MINUTES = 70.0
FILL_MARGIN_MINUTES = 2.0
RESTARTS_METRIC = "llmcost_engine_restarts_total"
LOG_LEVELS_COUNTED = ("WARNING", "ERROR", "CRITICAL")
HTTP_TIMEOUT = 10.0


@dataclass
class Sample:
    """One reading of the daemon's /proc entries, `at` seconds into the run."""

    at: float
    rss_kb: int
    anon_kb: int
    hwm_kb: int
    cpu_s: float


@dataclass
class ScrapeStats:
    """What the scrapers saw: answers, failures, and counters that went down."""

    steady: int = 0
    burst: int = 0
    pages: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    violations: int = 0
    violation_examples: list[str] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    series: int = 0
    page_bytes: int = 0
    restarts_seen: float = 0.0

    @property
    def total(self) -> int:
        return self.steady + self.burst + self.pages

    def check_page(self, body: str) -> None:
        """Every counter sample must be a number no smaller than on the previous page."""
        series = 0
        restarts = 0.0
        counter_families: set[str] = set()
        for line in body.splitlines():
            if line.startswith("# TYPE "):
                _, _, family, kind = line.split(" ", 3)
                if kind.strip() == "counter":
                    counter_families.add(family)
            if not line or line.startswith("#"):
                continue
            series += 1
            key, _, text = line.rpartition(" ")
            name = key.split("{", 1)[0]
            if name not in counter_families and name.removesuffix("_total") not in counter_families:
                continue
            value = float(text)
            if name == RESTARTS_METRIC:
                restarts += value
            before = self.counters.get(key)
            if math.isnan(value) or (before is not None and value < before):
                self.violations += 1
                if len(self.violation_examples) < 5:
                    self.violation_examples.append(f"{key}: {before} -> {value}")
            self.counters[key] = value
        self.series = series
        self.page_bytes = len(body)
        self.restarts_seen = restarts


class SteadyScraper:
    """A Prometheus-like client on one keep-alive connection.

    Like Go's HTTP client, it retries once on a fresh connection when the
    server has closed the kept-alive one (an idle timeout is allowed to).
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def get(self, path: str) -> tuple[int, str]:
        if self._conn is not None:
            try:
                return self._request(path)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.reconnects += 1
        return self._request(path)

    def _request(self, path: str) -> tuple[int, str]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=HTTP_TIMEOUT)
        try:
            self._conn.request("GET", path)
            response = self._conn.getresponse()
            return response.status, response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def fresh_get(url: str) -> int:
    """One GET on a new connection, as a second scraper would; return the status."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def simulator_options(args: argparse.Namespace) -> list[str]:
    """Bursty engines, several models, periodic restarts."""
    options = ["--profile", args.profile, "--capacity", "2000"]
    options += ["--restart-every", f"{args.restart_every:g}", "--seed", "1"]
    for index in range(args.models):
        options += ["--model", f"soak/model-{index}"]
    return options


def exporter_config(args: argparse.Namespace, port: int, sim_port: int, state: Path) -> dict:
    """A node of `args.engines` engines on 2 GPUs each; capacity left to be learned."""
    return {
        "web": {"listen_address": f"127.0.0.1:{port}"},
        "engines": [
            {"url": url, "gpus": [2 * i, 2 * i + 1]}
            for i, url in enumerate(engine_urls(sim_port, args.engines))
        ],
        "collection": {"interval": args.interval},
        "nvml": {"enabled": False},
        "cost": {
            "gpus": [{"model": "H100", "count": 2 * args.engines}],
            "gpu_prices_per_hour": {"H100": 2.5},
        },
        "api_prices": {"default": {"input": 0.8, "cached_input": 0.08, "output": 4.0}},
        "capacity": {"learn": True, "learn_window": args.learn_window},
        "windows": args.windows,
        "state_file": str(state),
    }


def ground_truth_restarts(sim_port: int) -> int:
    url = f"http://127.0.0.1:{sim_port}/ground-truth"
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        return sum(engine["restarts"] for engine in json.load(response)["engines"])


def median_kb(samples: list[Sample], key: str, start: float, end: float) -> float | None:
    chosen = [getattr(s, key) for s in samples if start <= s.at <= end]
    return statistics.median(chosen) if chosen else None


def trend_kb_per_hour(samples: list[Sample], key: str) -> float | None:
    """Least-squares slope of a memory reading over time, in KiB per hour."""
    if len(samples) < 3:
        return None
    mean_t = statistics.fmean(s.at for s in samples)
    mean_m = statistics.fmean(getattr(s, key) for s in samples)
    spread = sum((s.at - mean_t) ** 2 for s in samples)
    if spread == 0:
        return None
    slope = sum((s.at - mean_t) * (getattr(s, key) - mean_m) for s in samples) / spread
    return slope * 3600


@dataclass
class Growth:
    """One memory reading at start, around the fill point and at the end."""

    start: float
    fill: float | None
    end: float | None
    trend_kb_per_hour: float | None

    @property
    def after_fill(self) -> float | None:
        if self.fill is None or self.end is None:
            return None
        return (self.end - self.fill) / self.fill * 100

    @property
    def while_filling(self) -> float | None:
        return None if self.fill is None else (self.fill - self.start) / self.start * 100


def growth(samples: list[Sample], key: str, fill_s: float, span_s: float) -> Growth:
    """Medians around the fill point and over the end; none if the run stopped too soon."""
    run_s = samples[-1].at
    filled = run_s >= fill_s + span_s / 2
    return Growth(
        start=getattr(samples[0], key),
        fill=median_kb(samples, key, fill_s - span_s / 2, fill_s + span_s / 2) if filled else None,
        end=median_kb(samples, key, run_s - span_s, run_s),
        trend_kb_per_hour=trend_kb_per_hour([s for s in samples if s.at >= fill_s], key),
    )


def per_hour(memory: Growth) -> str:
    trend = memory.trend_kb_per_hour
    return "n/a" if trend is None else f"{trend / 1024:+.2f}"


def pct(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}%"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def log_summary(path: Path) -> tuple[Counter[str], int, Counter[str]]:
    """Counts of WARNING/ERROR lines, of tracebacks, and of each distinct message."""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    tracebacks = 0
    for line in path.read_text(errors="replace").splitlines():
        if "Traceback" in line:
            tracebacks += 1
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in LOG_LEVELS_COUNTED:
            levels[parts[2]] += 1
            messages[f"{parts[2]} {parts[3][:160]}"] += 1
    return levels, tracebacks, messages


def mib(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


class Soak:
    """The measuring loop: scrapes and /proc samples on their own schedules."""

    def __init__(self, args: argparse.Namespace, pid: int, port: int) -> None:
        self.args = args
        self.pid = pid
        self.base = f"http://127.0.0.1:{port}"
        self.scraper = SteadyScraper(port)
        self.stats = ScrapeStats()
        self.samples: list[Sample] = []
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sample(self) -> bool:
        """Read /proc; False once the daemon is gone (or a zombie without memory)."""
        try:
            reading = Sample(
                self.elapsed(),
                status_kb(self.pid, "VmRSS"),
                status_kb(self.pid, "RssAnon"),
                status_kb(self.pid, "VmHWM"),
                cpu_seconds(self.pid),
            )
        except (OSError, KeyError):
            return False
        self.samples.append(reading)
        return True

    def write_samples(self, path: Path) -> None:
        lines = ["seconds,rss_kb,rss_anon_kb,hwm_kb,cpu_seconds"]
        lines += [
            f"{s.at:.1f},{s.rss_kb},{s.anon_kb},{s.hwm_kb},{s.cpu_s:.2f}" for s in self.samples
        ]
        path.write_text("\n".join(lines) + "\n")

    def steady_scrape(self) -> None:
        began = time.monotonic()
        try:
            status, body = self.scraper.get("/metrics")
        except (OSError, http.client.HTTPException) as error:
            self.stats.failures[f"/metrics {type(error).__name__}"] += 1
            return
        self.stats.latencies_s.append(time.monotonic() - began)
        self.stats.steady += 1
        if status != 200:
            self.stats.failures[f"/metrics HTTP {status}"] += 1
            return
        self.stats.check_page(body)

    def pages(self) -> None:
        for path in ("/", "/healthz"):
            try:
                status, _ = self.scraper.get(path)
            except (OSError, http.client.HTTPException) as error:
                self.stats.failures[f"{path} {type(error).__name__}"] += 1
                continue
            self.stats.pages += 1
            if status != 200:
                self.stats.failures[f"{path} HTTP {status}"] += 1

    def burst(self, pool: ThreadPoolExecutor) -> None:
        url = self.base + "/metrics"
        futures = [pool.submit(fresh_get, url) for _ in range(self.args.burst_size)]
        for future in futures:
            try:
                status = future.result()
            except OSError as error:
                self.stats.failures[f"burst {type(error).__name__}"] += 1
                continue
            self.stats.burst += 1
            if status != 200:
                self.stats.failures[f"burst HTTP {status}"] += 1

    def report(self) -> None:
        now, before = self.samples[-1], self._last_reported
        cpu = (now.cpu_s - before.cpu_s) / max(now.at - before.at, 1e-9) * 100
        print(
            f"[{now.at / 60:5.1f} min] RSS {mib(now.rss_kb)} MiB (anon {mib(now.anon_kb)}), "
            f"CPU {cpu:.2f}% since last line, {self.stats.total} scrapes, "
            f"{sum(self.stats.failures.values())} failed, {self.stats.violations} counters down, "
            f"{self.stats.restarts_seen:g} engine restarts seen, {self.stats.series} series",
            flush=True,
        )
        self._last_reported = now

    def run(self, alive: Callable[[], bool]) -> bool:
        """Measure until the end or until the daemon dies; return whether it survived."""
        args = self.args
        end = args.minutes * 60
        if not self.sample():
            raise RuntimeError("the daemon exited before the soak began")
        self._last_reported = self.samples[0]
        due = {
            "scrape": 0.0,
            "sample": args.sample_every,
            "pages": args.pages_every,
            "burst": args.burst_every,
            "report": args.report_every * 60,
        }
        with ThreadPoolExecutor(max_workers=args.burst_size) as pool:
            while (now := self.elapsed()) < end:
                if not alive():
                    return False
                if now >= due["scrape"]:
                    self.steady_scrape()
                    due["scrape"] = max(due["scrape"] + args.scrape_every, self.elapsed())
                if now >= due["sample"]:
                    if not self.sample():
                        return False
                    due["sample"] += args.sample_every
                if now >= due["pages"]:
                    self.pages()
                    due["pages"] += args.pages_every
                if now >= due["burst"]:
                    self.burst(pool)
                    due["burst"] += args.burst_every
                if now >= due["report"]:
                    self.report()
                    due["report"] += args.report_every * 60
                wait_seconds(max(0.0, min(min(due.values()), end) - self.elapsed()))
        survived = alive() and self.sample()
        self.scraper.close()
        return survived


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=75.0, help="length of the run")
    parser.add_argument(
        "--fill-minutes",
        type=float,
        default=None,
        help=f"when the history counts as full (default: longest window or learn window + "
        f"{FILL_MARGIN_MINUTES:g} min)",
    )
    parser.add_argument("--windows", default="5m,1h", help="the daemon's windows (default 5m,1h)")
    parser.add_argument("--interval", default="1s", help="the daemon's collection interval")
    parser.add_argument(
        "--learn-window",
        default="5m",
        help="capacity.learn_window (default 5m); the history also keeps this long",
    )
    parser.add_argument("--engines", type=int, default=3, help="simulated engines (default 3)")
    parser.add_argument("--models", type=int, default=2, help="served models across engines")
    parser.add_argument("--profile", default="spiky", help="simulator traffic profile")
    parser.add_argument(
        "--restart-every", type=float, default=300.0, help="seconds between engine restarts"
    )
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument(
        "--pages-every", type=float, default=30.0, help="seconds between GETs of / and /healthz"
    )
    parser.add_argument(
        "--burst-every", type=float, default=60.0, help="seconds between concurrent bursts"
    )
    parser.add_argument("--burst-size", type=int, default=16, help="scrapes in one burst")
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="seconds between /proc samples"
    )
    parser.add_argument(
        "--median-seconds",
        type=float,
        default=120.0,
        help="span of the RSS medians at the fill point and at the end (default 120)",
    )
    parser.add_argument(
        "--report-every", type=float, default=5.0, help="minutes between progress lines"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the config, state file, logs and RSS samples (samples.csv) here",
    )
    args = parser.parse_args(argv)
    args.windows = [w.strip() for w in args.windows.split(",") if w.strip()]
    # The daemon keeps history for the longest window or the learn window.
    try:
        args.interval_s = parse_duration(args.interval, "--interval")
        spans = [parse_duration(w, "--windows") for w in args.windows]
        spans.append(parse_duration(args.learn_window, "--learn-window"))
    except ConfigError as error:
        parser.error(str(error))
    longest = max(spans)
    if args.fill_minutes is None:
        args.fill_minutes = longest / 60 + FILL_MARGIN_MINUTES
    if args.fill_minutes * 60 < longest:
        parser.error(
            f"--fill-minutes must cover the longest window or learn window ({longest:g} s)"
        )
    if args.minutes <= args.fill_minutes:
        parser.error(f"--minutes must be longer than --fill-minutes ({args.fill_minutes:g})")
    if (args.minutes - args.fill_minutes) * 60 < args.median_seconds:
        parser.error("--minutes must leave at least --median-seconds after --fill-minutes")
    return args


def print_results(
    args: argparse.Namespace, soak: Soak, survived: bool, restarts_done: int | None, log: Path
) -> int:
    samples, stats = soak.samples, soak.stats
    run_s = samples[-1].at
    fill_s = args.fill_minutes * 60
    span = args.median_seconds
    rss = growth(samples, "rss_kb", fill_s, span)
    anon = growth(samples, "anon_kb", fill_s, span)
    after_fill = [s for s in samples if s.at >= fill_s]
    cpu_all = (samples[-1].cpu_s - samples[0].cpu_s) / max(run_s, 1e-9) * 100
    fill_sample = after_fill[0] if after_fill else None

    print(
        f"\nsoak: {run_s / 60:.1f} min, interval {args.interval}, windows "
        f"{','.join(args.windows)}, {args.engines} engines / {args.models} models "
        f"({args.profile}), engine restarts every {args.restart_every:g} s"
    )
    rows = [
        ("", "VmRSS", "RssAnon"),
        ("at start", mib(rss.start), mib(anon.start)),
        (f"at fill ({args.fill_minutes:g} min)", mib(rss.fill), mib(anon.fill)),
        ("at end", mib(rss.end), mib(anon.end)),
        ("growth while filling", pct(rss.while_filling, 1), pct(anon.while_filling, 1)),
        ("growth after fill", pct(rss.after_fill, 2), pct(anon.after_fill, 2)),
        ("trend after fill (MiB/h)", per_hour(rss), per_hour(anon)),
    ]
    for label, ours, heap in rows:
        print(f"{label:<26}{ours:>10}{heap:>10}")
    print(
        f"(MiB; fill and end are medians over {span:g} s; RssAnon is the heap, which the "
        "kernel cannot reclaim as it can the mapped files in VmRSS)"
    )
    if rss.after_fill is None:
        print("RSS growth after fill: n/a, the run ended before the fill point")
    else:
        verdict = "met" if rss.after_fill <= TARGET_GROWTH_PERCENT else "MISSED"
        print(
            f"RSS growth after fill {rss.after_fill:+.2f}% "
            f"(target <= {TARGET_GROWTH_PERCENT:g}%: {verdict})"
        )
    print(f"peak RSS                {mib(max(s.rss_kb for s in samples))} MiB")
    print(f"VmHWM at end            {mib(samples[-1].hwm_kb)} MiB")
    print(f"CPU                     {cpu_all:.2f}% of one core (whole run)", end="")
    if fill_sample is not None and samples[-1].at > fill_sample.at:
        cpu_after = (
            (samples[-1].cpu_s - fill_sample.cpu_s) / (samples[-1].at - fill_sample.at) * 100
        )
        print(f", {cpu_after:.2f}% after fill")
    else:
        print()
    failed = sum(stats.failures.values())
    print(
        f"scrapes                 {stats.total} ({stats.steady} steady, {stats.burst} in bursts, "
        f"{stats.pages} of / and /healthz), {failed} failed, "
        f"{soak.scraper.reconnects} kept-alive connections closed by the daemon"
    )
    for reason, count in stats.failures.most_common(5):
        print(f"  {count:>6} {reason}")
    if stats.latencies_s:
        print(
            f"steady /metrics latency p50 {percentile(stats.latencies_s, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(stats.latencies_s, 0.99) * 1000:.1f} ms, "
            f"max {max(stats.latencies_s) * 1000:.1f} ms; last page {stats.series} series, "
            f"{stats.page_bytes} bytes"
        )
    done = "unknown" if restarts_done is None else str(restarts_done)
    print(f"engine restarts         {stats.restarts_seen:g} seen by the exporter, {done} simulated")
    print(
        f"counters that went down {stats.violations} "
        f"({len(stats.counters)} counter series checked on every steady scrape)"
    )
    for example in stats.violation_examples:
        print(f"  {example}")
    levels, tracebacks, messages = log_summary(log)
    print(
        "daemon log              "
        + ", ".join(f"{levels[level]} {level}" for level in LOG_LEVELS_COUNTED)
        + f", {tracebacks} Traceback"
    )
    for message, count in messages.most_common(5):
        print(f"  {count:>6} {message}")
    if not survived:
        print("the daemon DIED during the run; the end of its log:")
        print("\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    return 0 if survived and tracebacks == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.minutes < FULL_RUN_MINUTES:
        print(
            f"note: a short run; the soak the target refers to runs >= {FULL_RUN_MINUTES:g} min "
            "with the default windows",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        group = ProcessGroup(workdir)
        try:
            sim_port = start_simulator(group, args.engines, simulator_options(args))
            port = free_port()
            config = exporter_config(args, port, sim_port, workdir / "state.json")
            daemon = spawn_exporter(group, config)
            kept = f"; logs in {workdir}" if args.workdir else ""
            print(
                f"soaking {args.minutes:g} min (history full at {args.fill_minutes:g} min){kept}",
                flush=True,
            )
            soak = Soak(args, daemon.pid, port)
            survived = soak.run(lambda: daemon.poll() is None)
            try:
                restarts_done: int | None = ground_truth_restarts(sim_port)
            except OSError:
                restarts_done = None
            if survived:
                # Let the daemon read the engines at least once after the ground truth.
                wait_seconds(2.5 * args.interval_s)
                soak.steady_scrape()
        finally:
            group.close()
        if args.workdir:
            soak.write_samples(workdir / "samples.csv")
        return print_results(args, soak, survived, restarts_done, workdir / "exporter.log")


if __name__ == "__main__":
    run_main(main)
