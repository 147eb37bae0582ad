"""What pushing over OTLP adds to the daemon's CPU and memory, at the default export interval.

With `otlp:` configured, a sender thread turns the last cycle's families into an
OTLP export every `otlp.interval` (1 minute by default) and hands it to the
OpenTelemetry SDK's exporter (http/protobuf or gRPC), whose modules, and gRPC's
native library, then live in the daemon for good. The budget for that is +0.05 %
of one core and +10 MB RSS on top of the daemon alone.

This runs, side by side over the same period so load from elsewhere on the machine
weighs on all alike, copies of the daemon on the 8-engine node of bench_daemon.py
(the simulator's steady half-loaded engines, the default 5 s collection interval,
a scrape of /metrics every 15 s):

- OTLP off: the reference;
- OTLP over http/protobuf to a loopback receiver;
- OTLP over gRPC to a loopback receiver (unless `--protocols` leaves it out).

The receivers speak the real wire format: an HTTP server answering
`POST /v1/metrics` with a serialized `ExportMetricsServiceResponse`, and a real gRPC
server of the OTLP `MetricsService`. Each decodes every request to count its data
points. They run as threads of this script, so their CPU is not the daemon's.

Measuring starts once every OTLP daemon has delivered its first export (the first
export imports the SDK's exporter and opens its connection: a one-time cost, shown
apart) and runs for a whole number of export intervals, so each daemon's window
holds the same number of exports whatever the phase. CPU is utime+stime from
/proc (10 ms ticks); RSS is sampled every second, and "steady" is the median of
those samples.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from _procs import (
    ProcessGroup,
    engine_urls,
    exporter_config,
    run_main,
    spawn_exporter,
    start_simulator,
    status_kb,
    wait_seconds,
)
from bench_daemon import Watched, measure
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from realparts.loopback_http import LoopbackHttp, QuietHandler
from realparts.ports import free_port
from realparts.timeouts import scaled

TARGET_CPU_POINTS = 0.05
"""Percentage points of one core that OTLP may add."""
TARGET_RSS_MB = 10.0
"""MB (10^6 bytes) of RSS that OTLP may add."""
ENGINES = 8
COLLECTION_INTERVAL = "5s"
PROTOCOLS = ("http/protobuf", "grpc")
DEFAULTS = {"export_interval": 60.0, "intervals": 6, "warmup": 10.0}
QUICK = {"export_interval": 5.0, "intervals": 6, "warmup": 5.0}
MIB = 1024 * 1024


# --- the receivers ------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """One export as the receiver got it."""

    at: float
    """time.monotonic() on arrival."""
    points: int
    metrics: int
    body_bytes: int
    """The serialized request, before any compression."""


@dataclass
class Received:
    """Every export one receiver got, recorded from its server's threads."""

    exports: list[Export] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        metrics = [
            metric
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]
        points = sum(
            len(getattr(metric, kind).data_points)
            for metric in metrics
            if (kind := metric.WhichOneof("data")) is not None
        )
        export = Export(time.monotonic(), points, len(metrics), request.ByteSize())
        with self.lock:
            self.exports.append(export)

    def between(self, start: float, end: float) -> list[Export]:
        with self.lock:
            return [e for e in self.exports if start <= e.at <= end]

    def count(self) -> int:
        with self.lock:
            return len(self.exports)


class _OtlpHttpHandler(QuietHandler):
    """`POST /v1/metrics` of the OTLP/HTTP binary protocol, gzip or not."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/metrics":
            self.send_error(404)
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        request.ParseFromString(body)
        self.server.owner.record(request)
        reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class _OtlpGrpcService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(  # noqa: N802 (the generated service's naming)
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.received.record(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@dataclass
class Receiver:
    """A loopback OTLP receiver of one protocol: its endpoint and what it received."""

    protocol: str
    endpoint: str
    received: Received
    _stop: Any

    def stop(self) -> None:
        self._stop()


def start_receiver(protocol: str) -> Receiver:
    received = Received()
    if protocol == "http/protobuf":
        http = LoopbackHttp(_OtlpHttpHandler, received, name="otlp-http").start()
        return Receiver(protocol, http.url + "/v1/metrics", received, http.stop)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
        _OtlpGrpcService(received), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return Receiver(protocol, f"http://127.0.0.1:{port}", received, lambda: server.stop(1))


# --- the daemons --------------------------------------------------------------------


@dataclass
class Daemon:
    """One copy of the daemon under measurement."""

    label: str
    watched: Watched
    port: int
    receiver: Receiver | None
    rss_anon_kb: int = 0
    rss_file_kb: int = 0
    window: list[Export] = field(default_factory=list)
    page: dict[str, float] = field(default_factory=dict)
    threads_start: dict[str, float] = field(default_factory=dict)
    threads_end: dict[str, float] = field(default_factory=dict)

    def thread_seconds(self) -> dict[str, float]:
        """CPU seconds in the window by thread name; what threads that ended in it spent
        is the process's less what its live threads account for."""
        spent = {
            name: end - self.threads_start.get(name, 0.0) for name, end in self.threads_end.items()
        }
        ended = self.watched.cpu_end - self.watched.cpu_start - sum(spent.values())
        return {**spent, "(ended threads)": max(0.0, ended)}

    @property
    def rss_median_mib(self) -> float:
        return statistics.median(self.watched.rss_kb) / 1024


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each of `pid`'s live threads, summed by thread name: Python's
    own threads are all named after the interpreter, gRPC's native ones after their job."""
    seconds: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        seconds[name] = seconds.get(name, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
    return seconds


def clean_environment() -> dict[str, str]:
    """This environment without OTEL_* variables, which would switch OTLP on or steer it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def start_daemon(
    group: ProcessGroup, sim_port: int, receiver: Receiver | None, export_interval: float
) -> Daemon:
    port = free_port()
    config = exporter_config(port, engine_urls(sim_port, ENGINES), COLLECTION_INTERVAL)
    if receiver is not None:
        config["otlp"] = {
            "protocol": receiver.protocol,
            "endpoint": receiver.endpoint,
            "interval": f"{export_interval:g}s",
        }
    label = f"OTLP {receiver.protocol}" if receiver else "OTLP off"
    name = "exporter-" + (receiver.protocol.replace("/", "-") if receiver else "off")
    proc = spawn_exporter(group, config, name, clean_environment())
    url = f"http://127.0.0.1:{port}/metrics"
    return Daemon(label, Watched(label, proc.pid, url), port, receiver)


def wait_first_exports(daemons: list[Daemon], group: ProcessGroup, deadline: float) -> None:
    """Until every OTLP daemon's first export has arrived; fail with its log if it does not."""
    for daemon in daemons:
        if daemon.receiver is None:
            continue
        while daemon.receiver.received.count() == 0:
            if time.monotonic() > deadline:
                name = "exporter-" + daemon.receiver.protocol.replace("/", "-")
                raise RuntimeError(
                    f"{daemon.label}: no export received in time:\n{group.log_tail(name)}"
                )
            time.sleep(0.5)


def page_counts(port: int) -> dict[str, float]:
    """From the daemon's /metrics: its OTLP export counts by result, and the series an
    export carries (counters' `_total` and gauges' samples)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=scaled(10)) as page:
        text = page.read().decode()
    counts: dict[str, float] = {"series": 0}
    for family in text_string_to_metric_families(text):
        wanted = {"counter": family.name + "_total", "gauge": family.name}.get(family.type)
        for sample in family.samples:
            if sample.name == wanted:
                counts["series"] += 1
            if sample.name == "llmcost_otlp_exports_total":
                counts[sample.labels["result"]] = sample.value
    return counts


# --- the report ---------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "PASS" if met else "OVER"


def report(daemons: list[Daemon], elapsed: float, export_interval: float) -> None:
    off = daemons[0]
    print(
        f"\n{'daemon':<20}{'CPU % 1 core':>13}{'RSS median':>12}{'RSS max':>9}{'VmHWM':>8}"
        f"{'RssAnon':>9}{'RssFile':>9}{'CPU s before':>14}"
    )
    for daemon in daemons:
        w = daemon.watched
        print(
            f"{daemon.label:<20}{w.cpu_percent(elapsed):>13.3f}{daemon.rss_median_mib:>12.1f}"
            f"{w.rss_max_mib:>9.1f}{w.hwm_kb / 1024:>8.1f}{daemon.rss_anon_kb / 1024:>9.1f}"
            f"{daemon.rss_file_kb / 1024:>9.1f}{w.cpu_start:>14.2f}"
        )
    tick = 100 / os.sysconf("SC_CLK_TCK") / elapsed
    print(
        f"(memory in MiB; CPU % over the {elapsed:.0f} s window, one 10 ms tick = {tick:.4f} "
        "points;\n CPU s before: from start to the window, first export included; RssAnon "
        "and RssFile at the end)"
    )

    for daemon in daemons[1:]:
        exports = daemon.window
        cpu = daemon.watched.cpu_percent(elapsed) - off.watched.cpu_percent(elapsed)
        rss = daemon.rss_median_mib - off.rss_median_mib
        rss_max = daemon.watched.rss_max_mib - off.watched.rss_max_mib
        before = daemon.watched.cpu_start - off.watched.cpu_start
        print(f"\n{daemon.label} against OTLP off:")
        print(f"  CPU {cpu:+.3f} points of one core", end="")
        if exports:
            per_export = cpu / 100 * elapsed / len(exports) * 1000
            print(f", {per_export:.0f} ms of CPU per export interval", end="")
        print(f"; before the window (start-up, first export) {before:+.2f} s of CPU")
        print(
            f"  RSS {rss:+.1f} MiB steady (median), {rss_max:+.1f} MiB max, "
            f"{(daemon.watched.hwm_kb - off.watched.hwm_kb) / 1024:+.1f} MiB VmHWM, "
            f"{(daemon.rss_anon_kb - off.rss_anon_kb) / 1024:+.1f} MiB RssAnon, "
            f"{(daemon.rss_file_kb - off.rss_file_kb) / 1024:+.1f} MiB RssFile"
        )
        if exports:
            points = sorted({e.points for e in exports})
            shown = "/".join(str(p) for p in points)
            body = statistics.median(e.body_bytes for e in exports) / 1024
            print(
                f"  {len(exports)} exports received in the window (expected "
                f"{elapsed / export_interval:.1f}), {shown} data points in "
                f"{exports[-1].metrics} metrics per export, {body:.1f} KiB each before "
                "compression"
            )
        else:
            print("  NO export received in the window")
        threads = daemon.thread_seconds()
        reference = off.thread_seconds()
        busiest = sorted(threads.items(), key=lambda item: -item[1])[:6]
        print(
            "  CPU s in the window by thread name (OTLP off's alike-named in brackets): "
            + ", ".join(
                f"{name} {spent:.2f}" + (f" ({reference[name]:.2f})" if name in reference else "")
                for name, spent in busiest
            )
        )
        page = daemon.page
        print(
            f"  the daemon counts {page.get('success', 0):.0f} successful, "
            f"{page.get('failure', 0):.0f} failed, {page.get('dropped', 0):.0f} dropped "
            f"exports; its /metrics has {page['series']:.0f} counter and gauge series"
        )
        rss_mb = rss * MIB / 1e6
        met = cpu <= TARGET_CPU_POINTS and rss_mb <= TARGET_RSS_MB
        print(
            f"  {verdict(met)}: CPU {cpu:+.3f} points (target <= +{TARGET_CPU_POINTS:g}), "
            f"RSS {rss_mb:+.1f} MB steady (target <= +{TARGET_RSS_MB:g} MB)"
            + ("" if export_interval == 60 else f" [export interval {export_interval:g} s]")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--export-interval",
        type=float,
        help="otlp.interval in s (60, the default; quick 5)",
    )
    parser.add_argument(
        "--intervals",
        type=int,
        help="export intervals measured (6, so 6 min at the default interval)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds after the first exports before measuring (10; quick 5)",
    )
    parser.add_argument(
        "--scrape-every", type=float, default=15.0, help="seconds between scrapes of /metrics"
    )
    parser.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="OTLP daemons to run beside the one without, comma-separated (both)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run of about 45 s: a 5 s export interval (not the headline numbers)",
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols or not set(protocols) <= set(PROTOCOLS):
        parser.error(f"--protocols: from {', '.join(PROTOCOLS)}")
    seconds = args.intervals * args.export_interval

    receivers: list[Receiver] = []
    with tempfile.TemporaryDirectory(prefix="bench-otlp-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            receivers = [start_receiver(p) for p in protocols]
            sim_port = start_simulator(group, ENGINES)
            daemons = [start_daemon(group, sim_port, None, args.export_interval)]
            daemons += [start_daemon(group, sim_port, r, args.export_interval) for r in receivers]
            print(
                f"{ENGINES} engines, collection every {COLLECTION_INTERVAL}, OTLP export every "
                f"{args.export_interval:g} s; daemons: {', '.join(d.label for d in daemons)};\n"
                f"waiting for the first exports, then {args.warmup:g} s, then measuring "
                f"{seconds:g} s ({args.intervals} export intervals) with a scrape every "
                f"{args.scrape_every:g} s ...",
                flush=True,
            )
            first_deadline = time.monotonic() + args.export_interval + scaled(60)
            wait_first_exports(daemons, group, first_deadline)
            wait_seconds(args.warmup)
            for daemon in daemons:
                daemon.threads_start = thread_cpu(daemon.watched.pid)
            start = time.monotonic()
            elapsed = measure([d.watched for d in daemons], seconds, args.scrape_every)
            end = time.monotonic()
            for daemon in daemons:
                pid = daemon.watched.pid
                daemon.threads_end = thread_cpu(pid)
                daemon.rss_anon_kb = status_kb(pid, "RssAnon")
                daemon.rss_file_kb = status_kb(pid, "RssFile")
                daemon.page = page_counts(daemon.port)
                if daemon.receiver is not None:
                    daemon.window = daemon.receiver.received.between(start, end)
        finally:
            group.close()
            for receiver in receivers:
                receiver.stop()

    report(daemons, elapsed, args.export_interval)
    print(
        "\n(the targets are informative: near them the CPU difference is a few dozen 10 ms "
        "ticks,\n which load from elsewhere can move; --intervals measures longer)"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
