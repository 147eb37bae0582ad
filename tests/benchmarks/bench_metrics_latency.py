"""Latency of GET /metrics under 16 concurrent scrapers, against node-exporter.

The exporter renders its page once per collection cycle and serves the bytes
from memory, so a scrape should cost about as much as any small HTTP response
and stay flat however many scrapers there are. node-exporter, the usual
exporter on the same node, is measured in the same run with the same client
as the yardstick.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _procs import (
    ProcessGroup,
    cpu_seconds,
    fmt_ratio,
    run_main,
    start_exporter,
    start_node_exporter,
    start_simulator,
)

TARGET_P99_MS = 5.0


@dataclass
class Result:
    latencies: list[float]
    wall: float
    page_bytes: int
    client_cpu: float
    server_cpu: float

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1] * 1e3

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    budget: list[int],
    deadline: float,
    latencies: list[float],
    sizes: list[int],
) -> None:
    """One scraper: request until the shared budget or the deadline runs out."""
    while budget[0] > 0 and time.monotonic() < deadline:
        budget[0] -= 1
        start = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
        latencies.append(elapsed)
        sizes.append(len(body))


async def _phase(
    sessions: list[aiohttp.ClientSession], url: str, requests: int, max_seconds: float
) -> tuple[list[float], list[int], float]:
    budget = [requests]
    latencies: list[float] = []
    sizes: list[int] = []
    deadline = time.monotonic() + max_seconds
    start = time.perf_counter()
    await asyncio.gather(*(_client(s, url, budget, deadline, latencies, sizes) for s in sessions))
    return latencies, sizes, time.perf_counter() - start


async def measure(
    url: str, pid: int, clients: int, warmup: int, requests: int, max_seconds: float
) -> Result:
    """Warm up, then time ``requests`` scrapes from ``clients`` keep-alive connections."""
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(clients)
    ]
    try:
        await _phase(sessions, url, warmup, max_seconds)
        client_before, server_before = time.process_time(), cpu_seconds(pid)
        latencies, sizes, wall = await _phase(sessions, url, requests, max_seconds)
        client_cpu = time.process_time() - client_before
        server_cpu = cpu_seconds(pid) - server_before
    finally:
        for session in sessions:
            await session.close()
    return Result(latencies, wall, max(sizes), client_cpu, server_cpu)


def report(name: str, result: Result) -> None:
    n = len(result.latencies)
    print(
        f"{name:<18}{n:>7}{result.percentile(50):>9.2f}{result.percentile(90):>9.2f}"
        f"{result.percentile(99):>9.2f}{max(result.latencies) * 1e3:>9.2f}{result.rate:>10.0f}"
        f"{result.page_bytes:>10}{result.server_cpu / n * 1e3:>10.3f}"
        f"{result.client_cpu / n * 1e3:>10.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=8, help="simulated engines and targets")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--warmup", type=int, default=320, help="untimed requests first")
    parser.add_argument(
        "--requests",
        type=int,
        default=30000,
        help="timed requests per target; the default spans more than one 5 s collection "
        "cycle of the exporter, so its re-render is inside the measurement",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="stop a target's timed run early after this long (bounds the duration)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            sim_port = start_simulator(group, args.engines)
            exporter, port = start_exporter(group, sim_port, args.engines, "5s")
            node = start_node_exporter(group)

            def run(url: str, pid: int) -> Result:
                return asyncio.run(
                    measure(url, pid, args.clients, args.warmup, args.requests, args.max_seconds)
                )

            ours = run(f"http://127.0.0.1:{port}/metrics", exporter.pid)
            reference = run(f"http://127.0.0.1:{node[1]}/metrics", node[0].pid) if node else None
        finally:
            group.close()

    print(
        f"GET /metrics, {args.clients} concurrent keep-alive clients, "
        f"{args.warmup} warm-up requests, then up to {args.requests} timed "
        f"(cap {args.max_seconds:g} s).\n"
        "Client and servers share this machine's CPUs: latencies include the client's own "
        "event-loop time, so they are an upper bound for a remote Prometheus.\n"
    )
    print(
        f"{'target':<18}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'req/s':>10}{'bytes':>10}{'srv ms/r':>10}{'cli ms/r':>10}"
    )
    report("llm-cost-exporter", ours)
    if reference is not None:
        report("node-exporter", reference)
    else:
        print("node-exporter   not installed (prometheus-node-exporter): comparison skipped")
    print("(srv/cli ms/r: server and client CPU time per request)\n")

    ours_p99 = ours.percentile(99)
    print(
        f"p99 {ours_p99:.2f} ms, target <= {TARGET_P99_MS:g} ms: "
        f"{'met' if ours_p99 <= TARGET_P99_MS else 'MISSED'}"
    )
    if reference is not None:
        ref_p99 = reference.percentile(99)
        print(
            f"p99 ratio ours/node-exporter: {fmt_ratio(ours_p99, ref_p99)} "
            f"(target <= 1: {'met' if ours_p99 <= ref_p99 else 'MISSED'}); "
            f"page size ratio: {fmt_ratio(ours.page_bytes, reference.page_bytes)}"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
