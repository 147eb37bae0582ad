"""The exporter process's own families: CPU time, memory and file descriptors.

Read once per cycle beside the node's families, so every output gets them, with
the names, help texts and values prometheus_client's ProcessCollector gives
them. They are read here rather than through it because it opens and parses
/proc/self/stat and /proc/self/limits anew on every call: here the stat file
stays open and is read again in place, the descriptor limit comes from
getrlimit, and the start time, fixed for the process's life, is read once.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Iterator

from prometheus_client.core import Metric

from llm_cost_exporter.outputs.families import BYTES, SECONDS, Counter, Gauge, count_of

PROC = "/proc"

PROCESS_UNITS = {
    "process_virtual_memory_bytes": BYTES,
    "process_resident_memory_bytes": BYTES,
    "process_start_time_seconds": SECONDS,
    "process_cpu_seconds": SECONDS,
    "process_open_fds": count_of("file"),
    "process_max_fds": count_of("file"),
}
"""Family name -> UCUM unit."""


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100.0


class ProcSelf:
    """This process as /proc shows it: its stat file kept open, read in place each time."""

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        self._ticks = _clock_ticks()
        self._page_size = resource.getpagesize()
        self._stat: int | None = None
        self.start_time: float | None = None
        """Seconds since the epoch, None without /proc."""
        self.open()

    def open(self) -> None:
        """Open this process's stat file (again, in a forked child, whose inherited
        descriptor still reads the parent's)."""
        self.close()
        self.start_time = None
        proc = self._proc
        try:
            with open(os.path.join(proc, "stat"), "rb") as system:
                boot = next(float(line.split()[1]) for line in system if line.startswith(b"btime "))
            self._stat = os.open(os.path.join(proc, "self", "stat"), os.O_RDONLY | os.O_CLOEXEC)
            self.start_time = float(self._fields()[19]) / self._ticks + boot
        except (OSError, StopIteration, IndexError, ValueError):
            self.close()

    def _fields(self) -> list[bytes]:
        """The stat fields after the command name (the state is the first), which may
        hold spaces and parentheses of its own."""
        assert self._stat is not None
        return os.pread(self._stat, 4096, 0).rpartition(b")")[2].split()

    def close(self) -> None:
        if self._stat is not None:
            os.close(self._stat)
        self._stat = None

    def families(self) -> Iterator[Metric]:
        """The process families, in the order ProcessCollector gives them; none without
        /proc, or where it cannot be read."""
        if self._stat is None or self.start_time is None:
            return
        try:
            fields = self._fields()
            open_fds = len(os.listdir(os.path.join(self._proc, "self", "fd")))
        except OSError:
            return
        yield _gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", fields[20])
        yield _gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            float(fields[21]) * self._page_size,
        )
        yield _gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time,
        )
        cpu = Counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            (),
            PROCESS_UNITS["process_cpu_seconds"],
            per_process=True,
        )
        cpu.add_metric((), (float(fields[11]) + float(fields[12])) / self._ticks)
        yield cpu
        yield _gauge("process_open_fds", "Number of open file descriptors.", open_fds)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        yield _gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            math.inf if soft == resource.RLIM_INFINITY else soft,
        )


def _gauge(name: str, doc: str, value: float | bytes) -> Gauge:
    family = Gauge(name, doc, (), PROCESS_UNITS[name])
    family.add_metric((), float(value))
    return family


_SELF = ProcSelf()
os.register_at_fork(after_in_child=_SELF.open)


def process_families() -> Iterator[Metric]:
    """This process's families, each with its unit."""
    return _SELF.families()


def process_start_time() -> float:
    """When this process started, as `process_start_time_seconds` says; now where the
    platform has no /proc."""
    return _SELF.start_time if _SELF.start_time is not None else time.time()
