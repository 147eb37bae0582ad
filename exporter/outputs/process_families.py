"""The exporter process's own families: CPU time, memory and file descriptors.

Read once per cycle beside the node's families, so every output gets them, with
the same names Prometheus client libraries give them everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import Metric

from llm_cost_exporter.outputs.families import BYTES, SECONDS, Counter, Gauge, count_of

PROCESS_UNITS = {
    "process_virtual_memory_bytes": BYTES,
    "process_resident_memory_bytes": BYTES,
    "process_start_time_seconds": SECONDS,
    "process_cpu_seconds": SECONDS,
    "process_open_fds": count_of("file"),
    "process_max_fds": count_of("file"),
}
"""Family name -> UCUM unit; a family the client library adds later goes out without one."""

_PROCESS = ProcessCollector(registry=None)


def process_families() -> Iterator[Metric]:
    """The process collector's families, each with its unit (none where the platform has
    no /proc)."""
    for metric in _PROCESS.collect():
        unit = PROCESS_UNITS.get(metric.name, "")
        family: Metric
        if metric.type == "counter":
            family = Counter(metric.name, metric.documentation, (), unit, per_process=True)
        else:
            family = Gauge(metric.name, metric.documentation, (), unit)
        family.samples = metric.samples
        yield family


def process_start_time() -> float:
    """When this process started, as `process_start_time_seconds` says; now where the
    platform has no /proc."""
    for metric in _PROCESS.collect():
        if metric.name == "process_start_time_seconds" and metric.samples:
            return metric.samples[0].value
    return time.time()
