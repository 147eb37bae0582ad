"""A polite scraper's /metrics latency while other clients abuse the server.

One keep-alive scraper asks for /metrics (gzip, as Prometheus does) at a steady
pace. Its p99 is measured quiet, then in the same run while another process
abuses the same daemon, one way per phase:

- hammer: 200 keep-alive connections asking for /metrics back to back;
- idle: more idle connections than the connection limit, reopened as closed;
- oversized: 50 clients sending 9 KB request lines (each answered 400);

and printed as a ratio against the quiet p99 (target: at most 5).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _procs import ProcessGroup, cpu_seconds, run_main, start_exporter, start_simulator

TARGET_RATIO = 5.0
PHASES = ("hammer", "idle", "oversized")


# -- the abusive client (run as a child process) ----------------------------------


class _Hammer(asyncio.Protocol):
    """Requests /metrics again as soon as the previous response is complete."""

    request = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n"

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.counter[0] += 1
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class _Idle(asyncio.Protocol):
    """Connects and sends nothing; reports when closed so it can be replaced."""

    def __init__(self, closed: asyncio.Queue[None]) -> None:
        self.closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.put_nowait(None)


async def _abuse(mode: str, port: int, connections: int) -> None:
    loop = asyncio.get_running_loop()
    counter = [0]
    if mode == "hammer":
        for _ in range(connections):
            await loop.create_connection(lambda: _Hammer(counter), "127.0.0.1", port)
    elif mode == "idle":
        closed: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(connections):
            await loop.create_connection(lambda: _Idle(closed), "127.0.0.1", port)

        async def reopen() -> None:
            while True:
                await closed.get()
                counter[0] += 1
                try:
                    await loop.create_connection(lambda: _Idle(closed), "127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.01)
                    closed.put_nowait(None)

        loop.create_task(reopen())
    else:
        line = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: bench\r\n\r\n"

        async def oversized() -> None:
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(line)
                    await reader.read()
                    writer.close()
                    counter[0] += 1
                except OSError:
                    await asyncio.sleep(0.01)

        for _ in range(connections):
            loop.create_task(oversized())
    print("ready", flush=True)
    while True:
        await asyncio.sleep(1)
        print(f"count {counter[0]}", flush=True)


# -- the polite scraper and the phases --------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] * 1e3


class Polite:
    """A scraper on one keep-alive connection, kept for the whole run as Prometheus
    keeps its connection to a target."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.reconnects = 0

    def scrape(self, samples: int, pace: float) -> list[float]:
        """`samples` timed GET /metrics, one every `pace` seconds."""
        latencies = []
        next_at = time.monotonic()
        while len(latencies) < samples:
            time.sleep(max(0.0, next_at - time.monotonic()))
            # Fixed ticks, a missed one skipped (as Prometheus does): never back to back.
            next_at = max(next_at + pace, time.monotonic() + pace / 2)
            start = time.perf_counter()
            try:
                self.conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = self.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()  # closed by the server: reconnect, as a scraper does
                self.reconnects += 1
                continue
            latencies.append(time.perf_counter() - start)
            if response.status != 200:
                raise RuntimeError(f"/metrics answered {response.status}")
        return latencies


def _start_abuser(
    group: ProcessGroup, mode: str, port: int, connections: int
) -> subprocess.Popen[bytes]:
    proc = group.spawn(
        f"abuse-{mode}",
        [sys.executable, __file__, "--abuse", mode, "--port", str(port),
         "--connections", str(connections)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "ready" not in group.log_tail(f"abuse-{mode}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"abuser {mode} did not start:\n{group.log_tail(f'abuse-{mode}')}")
        time.sleep(0.1)
    return proc


def _count(group: ProcessGroup, mode: str) -> int:
    if mode == "quiet":
        return 0
    lines = [ln for ln in group.log_tail(f"abuse-{mode}", 5).splitlines() if ln.startswith("count")]
    return int(lines[-1].split()[1]) if lines else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=160, help="polite scrapes per phase")
    parser.add_argument("--pace", type=float, default=0.25, help="seconds between them")
    parser.add_argument("--rounds", type=int, default=4, help="phases taken in turn, rounds")
    parser.add_argument("--hammer", type=int, default=200, help="hammering connections")
    parser.add_argument("--idle", type=int, default=700, help="idle connections held")
    parser.add_argument("--oversized", type=int, default=50, help="oversized-line clients")
    parser.add_argument("--phases", default=",".join(PHASES), help="which abuses to run")
    parser.add_argument("--abuse", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.abuse:
        asyncio.run(_abuse(args.abuse, args.port, args.connections))
        return 0
    sizes = {"hammer": args.hammer, "idle": args.idle, "oversized": args.oversized}

    modes = args.phases.split(",")
    results: dict[str, tuple[list[float], float, float]] = {
        mode: ([], 0.0, 0.0) for mode in ["quiet", *modes]
    }
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        group = ProcessGroup(Path(tmp))
        try:
            sim_port = start_simulator(group, 8)
            exporter, port = start_exporter(group, sim_port, 8, "5s")
            polite = Polite(port)
            polite.scrape(20, args.pace)  # warm-up
            # Rounds of every phase in turn, so that load from elsewhere on the machine
            # weighs on all of them alike.
            for _ in range(args.rounds):
                for mode in results:
                    abuser = None
                    if mode != "quiet":
                        abuser = _start_abuser(group, mode, port, sizes[mode])
                    cpu_before, started = cpu_seconds(exporter.pid), time.monotonic()
                    count_before = _count(group, mode)
                    latencies = polite.scrape(args.samples // args.rounds, args.pace)
                    elapsed = time.monotonic() - started
                    served = (_count(group, mode) - count_before) / elapsed
                    cpu = (cpu_seconds(exporter.pid) - cpu_before) / elapsed
                    if abuser is not None:
                        group.stop(abuser)
                        polite.scrape(4, args.pace)  # the server settles before the next phase
                    before = results[mode]
                    results[mode] = (
                        before[0] + latencies,
                        before[1] + served / args.rounds,
                        before[2] + cpu / args.rounds,
                    )
            log = (Path(tmp) / "exporter.log").read_text(errors="replace")
        finally:
            group.close()

    quiet = _percentile(results["quiet"][0], 99)
    print(
        f"GET /metrics from one polite keep-alive scraper ({args.samples} requests, one every "
        f"{args.pace * 1e3:g} ms, gzip) quiet and while another process abuses the daemon.\n"
    )
    print(
        f"{'phase':<11}{'abusers':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'p99/quiet':>11}{'abuse/s':>9}{'srv CPU':>9}"
    )
    worst = 0.0
    for mode, (latencies, served, cpu) in results.items():
        p99 = _percentile(latencies, 99)
        ratio = p99 / quiet
        if mode != "quiet":
            worst = max(worst, ratio)
        print(
            f"{mode:<11}{sizes.get(mode, 0):>8}{_percentile(latencies, 50):>9.2f}{p99:>9.2f}"
            f"{max(latencies) * 1e3:>9.2f}{ratio:>10.2f}x{served:>9.0f}{cpu * 100:>8.0f}%"
        )
    print("(abuse/s: hammer responses, idle reconnections or oversized requests answered)")
    print(f"\nworst p99 ratio {worst:.2f}x, target <= {TARGET_RATIO:g}x: "
          f"{'met' if worst <= TARGET_RATIO else 'MISSED'}")  # fmt: skip
    print(f"the scraper's connection was closed {polite.reconnects} time(s)")
    tracebacks = log.count("Traceback")
    print(f"daemon log: {len(log.splitlines())} lines, {tracebacks} tracebacks")
    return 0


if __name__ == "__main__":
    run_main(main)
