"""Child processes and /proc readings shared by the benchmark scripts.

The benchmarks start the simulator, the exporter and node-exporter as real
processes, so numbers include everything a deployment pays for (HTTP stack,
event loop, rendering). Everything listens on 127.0.0.1 and is stopped in
``ProcessGroup.close`` even when a benchmark fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from realparts.ports import free_port, wait_http_ok  # noqa: E402

NODE_EXPORTER = "prometheus-node-exporter"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class ProcessGroup:
    """Owns every child a benchmark starts and stops them all on close.

    Stopping is terminate, a grace period, then kill, one process at a time by
    its own handle, so nothing else on the machine is touched.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        # A plain `kill` of the benchmark must still run the caller's finally.
        signal.signal(signal.SIGTERM, _interrupt)

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self._procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, name: str, proc: subprocess.Popen[bytes], url: str) -> None:
        """Wait for ``url`` to answer 200; fail at once with the log if ``proc`` died."""

        def alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

        wait_http_ok(url, timeout=30, check=alive)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_named(self, name: str) -> None:
        """Stop every child started as ``name`` (e.g. one simulator of several in turn)."""
        for child, proc in [entry for entry in self._procs if entry[0] == name]:
            self.stop(proc)
            self._procs.remove((child, proc))

    def close(self) -> None:
        for _, proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()


STEADY_HALF_LOAD = ("--profile", "steady", "--level", "0.5", "--capacity", "2000")
"""The simulator's traffic unless a benchmark asks for another."""


def _spawn_simulator(
    group: ProcessGroup, name: str, port: int, engines: int, options: Sequence[str]
) -> subprocess.Popen[bytes]:
    """Start a simulator of ``engines`` engines on ``port`` without waiting for it."""
    argv = [sys.executable, "-m", "llm_cost_exporter", "simulate"]
    argv += ["--web.listen-address", f"127.0.0.1:{port}", "--engines", str(engines), *options]
    return group.spawn(name, argv)


def start_simulator(
    group: ProcessGroup, engines: int, options: Sequence[str] = STEADY_HALF_LOAD
) -> int:
    """Start the simulator with ``engines`` engines driven by ``options`` (its command-line
    flags; steady half-loaded engines by default); return its port."""
    port = free_port()
    proc = _spawn_simulator(group, "simulator", port, engines, options)
    group.wait_ready("simulator", proc, f"http://127.0.0.1:{port}/ground-truth")
    return port


def engine_urls(sim_port: int, count: int) -> list[str]:
    """The pages of the first ``count`` engines of the simulator on ``sim_port``."""
    return [f"http://127.0.0.1:{sim_port}/engine/{i}/metrics" for i in range(count)]


def start_engines(
    group: ProcessGroup, count: int, options: Sequence[str] = STEADY_HALF_LOAD
) -> list[str]:
    """Start ``count`` engines, each its own simulator process as each engine is its own
    server on a real node; return their pages' URLs.

    One simulator serving every engine answers one page after another (its event loop
    renders them in turn), so a daemon asking them all at once is woken once per page;
    separate processes answer side by side, as real engines do."""
    ports: set[int] = set()
    while len(ports) < count:  # the OS may offer a free port twice before any is bound
        ports.add(free_port())
    started = [
        (_spawn_simulator(group, f"engine-{i}", port, 1, options), port)
        for i, port in enumerate(sorted(ports))
    ]
    for index, (proc, port) in enumerate(started):
        group.wait_ready(f"engine-{index}", proc, f"http://127.0.0.1:{port}/ground-truth")
    return [engine_urls(port, 1)[0] for _, port in started]


def exporter_config(port: int, urls: Sequence[str], interval: str) -> dict[str, Any]:
    """A realistic 8-GPU node: one target per engine page in ``urls``, default timeout."""
    return {
        "web": {"listen_address": f"127.0.0.1:{port}"},
        "engines": [{"url": url} for url in urls],
        "collection": {"interval": interval},
        "cost": {
            "gpus": [{"model": "H100", "count": 8}],
            "gpu_prices_per_hour": {"H100": 2.5},
            "overhead_ratio": 0.3,
        },
        "api_prices": {"default": {"input": 0.8, "cached_input": 0.08, "output": 4.0}},
        "capacity": {"tokens_per_second": 16000},
    }


def nvml_node_config(port: int, urls: Sequence[str], gpus: int = 8) -> dict[str, Any]:
    """A node whose ``gpus`` GPUs are read through NVML, at the default interval and timeout:
    one target per engine, the first ``gpus`` engines each on its own GPU
    (``engines[].gpus``), the others on none (no two engines may claim one GPU)."""
    config = exporter_config(port, urls, "5s")
    for index, engine in enumerate(config["engines"][:gpus]):
        engine["gpus"] = [index]
    config["nvml"] = {"enabled": True}
    del config["cost"]["gpus"]
    return config


def start_exporter(
    group: ProcessGroup, sim_port: int, engines: int, interval: str = "5s"
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the exporter daemon against the simulator; return it and its port."""
    port = free_port()
    proc = spawn_exporter(group, exporter_config(port, engine_urls(sim_port, engines), interval))
    return proc, port


def spawn_exporter(
    group: ProcessGroup,
    config: dict[str, Any],
    name: str = "exporter",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the daemon on ``config`` (written to ``<name>.yml``) and wait for its /healthz
    on the configured listen address."""
    port = int(config["web"]["listen_address"].rpartition(":")[2])
    path = group.workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    proc = group.spawn(
        name,
        [sys.executable, "-m", "llm_cost_exporter", "--config", str(path)],
        env=env if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    group.wait_ready(name, proc, f"http://127.0.0.1:{port}/healthz")
    return proc


def start_node_exporter(group: ProcessGroup) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start node-exporter with its default collectors, or return None if not installed.

    The port is picked free and then bound by another program, so a lost race
    is retried with a fresh port.
    """
    binary = shutil.which(NODE_EXPORTER)
    if binary is None:
        return None
    last_error: Exception | None = None
    for _ in range(3):
        port = free_port()
        proc = group.spawn("node-exporter", [binary, f"--web.listen-address=127.0.0.1:{port}"])
        try:
            group.wait_ready("node-exporter", proc, f"http://127.0.0.1:{port}/metrics")
        except RuntimeError as error:
            last_error = error
            group.stop(proc)
            continue
        return proc, port
    raise RuntimeError(f"node-exporter would not start: {last_error}")


def start_idle_python(group: ProcessGroup, name: str, modules: list[str]) -> int:
    """Start a Python that imports ``modules`` and sleeps; return its pid once imported.

    It is the floor for the exporter's memory: the interpreter plus the
    libraries the daemon cannot do without.
    """
    code = f"import time, {', '.join(modules)}\nprint('ready', flush=True)\ntime.sleep(3600)\n"
    proc = group.spawn(name, [sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while "ready" not in group.log_tail(name):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{group.log_tail(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not finish its imports within 30 s")
        time.sleep(0.1)
    return proc.pid


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` so far, every thread's, user and system.

    From each live thread's /proc/PID/task/TID/schedstat, which counts nanoseconds on
    a CPU: the utime and stime of /proc/PID/stat come in 10 ms ticks, one of which is
    0.4 ms a cycle over 120 s of a 5 s interval, too coarse for a daemon that runs a
    few ms a cycle. A thread that ends takes its time with it there, so the benchmarks
    measure processes whose threads live as long as they do; where the kernel keeps no
    schedstat, the ticks are used."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread ending, or no schedstat
            total += int((task / "schedstat").read_text().split()[0])
    if total:
        return total / 1e9
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM, ...) of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def fmt_ratio(ours: float, reference: float) -> str:
    return f"{ours / reference:.2f}x" if reference > 0 else "n/a (reference is 0)"


def wait_seconds(seconds: float) -> None:
    """Sleep in short steps so Ctrl-C stays responsive."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def run_main(main: Callable[[], int]) -> None:
    """Exit with `main()`'s code; Ctrl-C still stops every child first."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; child processes stopped", file=sys.stderr)
        sys.exit(130)
