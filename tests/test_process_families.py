"""The process families are prometheus_client's ProcessCollector's: same names, help
texts, types and values, read from this process's /proc."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest
from prometheus_client import ProcessCollector

from llm_cost_exporter.outputs.families import Counter, Gauge, known
from llm_cost_exporter.outputs.process_families import (
    PROCESS_UNITS,
    ProcSelf,
    process_families,
    process_start_time,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def by_name(families: object) -> dict[str, tuple[str, str, float]]:
    return {
        f.name: (f.type, f.documentation, f.samples[0].value)
        for f in families  # type: ignore[attr-defined]
    }


def test_the_families_are_the_process_collectors_with_units() -> None:
    library = by_name(ProcessCollector(registry=None).collect())
    ours = list(process_families())
    read = by_name(ours)
    assert list(read) == list(library)  # the same families in the same order
    for name, (kind, doc, _) in library.items():
        assert read[name][:2] == (kind, doc)
    for family in ours:
        assert family.ucum == PROCESS_UNITS[family.name]
        assert [s.name for s in family.samples] == [
            family.name + ("_total" if family.type == "counter" else "")
        ]
        assert isinstance(family, Counter if family.type == "counter" else Gauge)
    fixed = ("process_start_time_seconds", "process_max_fds", "process_virtual_memory_bytes")
    for name in fixed:
        assert read[name][2] == pytest.approx(library[name][2], rel=0.01), name
    assert read["process_start_time_seconds"][2] == process_start_time()
    # Read a moment apart: memory, CPU and descriptors may move a little, not by a field.
    rss = library["process_resident_memory_bytes"][2]
    assert read["process_resident_memory_bytes"][2] == pytest.approx(rss, rel=0.2)
    assert read["process_cpu_seconds"][2] == pytest.approx(
        library["process_cpu_seconds"][2], abs=0.1
    )
    assert abs(read["process_open_fds"][2] - library["process_open_fds"][2]) <= 2


def test_values_follow_the_process_from_one_read_to_the_next() -> None:
    process = ProcSelf()
    try:
        before = by_name(process.families())
        started = time.process_time()
        while time.process_time() - started < 0.05:  # spend CPU the next read must show
            sum(range(10_000))
        opened = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
        try:
            after = by_name(process.families())
        finally:
            for fd in opened:
                os.close(fd)
        assert after["process_cpu_seconds"][2] > before["process_cpu_seconds"][2]
        assert after["process_open_fds"][2] >= before["process_open_fds"][2] + 5
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert after["process_max_fds"][2] == soft
        assert after["process_start_time_seconds"] == before["process_start_time_seconds"]
    finally:
        process.close()


def test_without_proc_there_are_no_process_families(tmp_path: Path) -> None:
    process = ProcSelf(str(tmp_path))
    assert list(process.families()) == [] and process.start_time is None
    assert known(process_start_time())


def test_a_forked_child_reads_its_own_process() -> None:
    parent_started = process_start_time()
    time.sleep(0.05)  # more than a clock tick: the child starts later
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            library = by_name(ProcessCollector(registry=None).collect())
            ours = by_name(process_families())
            same = ours["process_start_time_seconds"] == library["process_start_time_seconds"]
            os.write(writing, b"%d %r" % (same, ours["process_start_time_seconds"][2]))
        finally:
            os._exit(0)
    os.close(writing)
    try:
        answer = os.read(reading, 100).decode().split()
    finally:
        os.close(reading)
        os.waitpid(child, 0)
    assert answer[0] == "1" and float(answer[1]) > parent_started
