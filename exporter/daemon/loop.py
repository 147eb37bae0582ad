"""The collection loop: every interval, read all sources at once, account, publish.

Each collector runs concurrently and isolated: its own timeout bounds its I/O,
and the loop's backstop deadline bounds every collect whatever the collector
does, so one dead, slow or buggy source costs at most the backstop and never
hides the others. The state file is written before the cycle is published, so
a page never shows counters that a restart would take back. The metric
families are computed once per cycle and handed to every output; scrapes
never wait on this loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import (
    CollectorError,
    EngineCollector,
    GpuCollector,
    PodCollector,
)
from llm_cost_exporter.daemon.state_file import StateFile
from llm_cost_exporter.outputs.base import Output
from llm_cost_exporter.outputs.catalogue import cycle_families

log = logging.getLogger(__name__)

Collector = EngineCollector | GpuCollector | PodCollector
_Collection = tuple[Coroutine[object, object, None], Collector, bool]
"""A collection under way: its coroutine, its collector, and whether that is an engine's."""

BACKSTOP_GRACE = 1.0
"""Seconds a collector may overrun its own timeout before the loop gives up on it."""

STALL_INTERVALS = 3
"""A loop that has not finished a cycle for this many intervals (plus a second) is
stalled; a starting loop has as long to finish its first one."""


@runtime_checkable
class EngineTargets(Protocol):
    """The engines to read, which may change between cycles (discovered pods)."""

    def refresh(self, state: NodeState) -> Sequence[EngineCollector]:
        """This cycle's engine collectors, having told `state` what changed."""
        ...


@dataclass(frozen=True)
class LoopHealth:
    """What `/healthz` and the landing page say about the collection loop."""

    state: str
    """`ok`, `starting` (no cycle finished yet, still within the grace period) or
    `stalled`."""
    age_seconds: float
    """Since the last cycle finished, or since the loop started when none has."""

    @property
    def alive(self) -> bool:
        return self.state != "stalled"


class CollectionLoop:
    def __init__(
        self,
        state: NodeState,
        engines: Sequence[EngineCollector] | EngineTargets,
        gpus: GpuCollector | None,
        outputs: Sequence[Output],
        interval: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        state_file: StateFile | None = None,
        pods: PodCollector | None = None,
    ) -> None:
        """`timeout` is the collectors' own; the backstop allows BACKSTOP_GRACE more.
        `clock` and `sleep` are the loop's time, replaced together in tests. `pods`
        (the kubelet's pod-resources API) is collected beside the GPUs while it is wanted."""
        self.state = state
        self.engines = engines if isinstance(engines, EngineTargets) else list(engines)
        self.gpus = gpus
        self.outputs = list(outputs)
        self.interval = interval
        self.backstop = timeout + BACKSTOP_GRACE
        self._clock = clock
        self._sleep = sleep
        self.started_at = clock()
        self.state_file = state_file
        self.last_cycle_at: float | None = None
        self.pods = pods

    async def _isolated(self, collector: Collector, engine: bool) -> tuple[object, float]:
        """The collector's result (None after recording why it failed) and its duration.
        The backstop is the cycle's (`_collect_all`), not this call's."""
        started = self._clock()
        try:
            result = await collector.collect()
            return result, self._clock() - started
        except CollectorError as error:
            reason, message = error.reason, str(error)
        except Exception as error:  # a bug must cost one target, never the loop
            log.exception(
                "collector %s for %s failed unexpectedly", collector.name, collector.target
            )
            reason, message = "internal", repr(error)
        duration = self._clock() - started
        self.state.record_failure(
            collector.name, collector.target, reason, message, duration, engine=engine
        )
        return None, duration

    async def _collect_engine(self, collector: EngineCollector) -> None:
        readings, duration = await self._isolated(collector, engine=True)
        if readings is not None:
            self.state.record_engine_readings(collector.name, collector.target, readings, duration)

    async def _collect_gpus(self, collector: GpuCollector) -> None:
        snapshot, duration = await self._isolated(collector, engine=False)
        if snapshot is not None:
            self.state.record_gpu_snapshot(
                collector.name, collector.target, snapshot, duration, self._clock()
            )

    async def _collect_pods(self, collector: PodCollector) -> None:
        devices, duration = await self._isolated(collector, engine=False)
        if devices is not None:
            self.state.record_pod_devices(
                collector.name, collector.target, devices, duration, self._clock()
            )

    async def _collect_all(self, collections: list[_Collection]) -> None:
        """Run every collection at once under one backstop deadline for them all: the
        collectors start together, so one timer does what one per collector would. A
        collection still running at the deadline is cancelled and recorded as a timeout."""
        if not collections:  # no engine discovered yet, no GPU read
            return
        started = self._clock()
        tasks = {
            asyncio.ensure_future(c): (collector, engine) for c, collector, engine in collections
        }
        try:
            _, late = await asyncio.wait(tasks, timeout=self.backstop)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        if late:
            for task in late:
                task.cancel()
            await asyncio.wait(late)
            duration = self._clock() - started
            for task in late:
                if task.cancelled():
                    collector, engine = tasks[task]
                    self.state.record_failure(
                        collector.name,
                        collector.target,
                        "timeout",
                        f"still collecting after {self.backstop:g}s",
                        duration,
                        engine=engine,
                    )
        # What failed outside a collector (recording its result) fails the cycle, as a
        # bug should, once every collection has ended.
        failed = [t.exception() for t in tasks if not t.cancelled() and t.exception()]
        if failed:
            raise failed[0]

    async def run_once(self) -> None:
        """One cycle: collect everything, accrue spend, publish the families."""
        engines = self.engines
        if isinstance(engines, EngineTargets):
            engines = engines.refresh(self.state)
        collections: list[_Collection] = [(self._collect_engine(c), c, True) for c in engines]
        if self.gpus is not None:
            collections.append((self._collect_gpus(self.gpus), self.gpus, False))
        if self.pods is not None and self.pods.wanted():
            collections.append((self._collect_pods(self.pods), self.pods, False))
        await self._collect_all(collections)
        now = self._clock()
        self.state.advance(now)
        if self.state_file is not None:
            await self.state_file.save(self.state, timeout=self.interval)
        self.publish()
        self.last_cycle_at = now

    def publish(self) -> None:
        """Compute the cycle's families once and hand them to every output."""
        families = cycle_families(self.state, self.outputs)
        for output in self.outputs:
            output.publish(families)

    def health(self) -> LoopHealth:
        """Alive if it finished a cycle within STALL_INTERVALS intervals, or, before its
        first cycle, if it started less than that long ago."""
        since = self.started_at if self.last_cycle_at is None else self.last_cycle_at
        age = self._clock() - since
        if age >= STALL_INTERVALS * self.interval + 1:
            return LoopHealth("stalled", age)
        return LoopHealth("starting" if self.last_cycle_at is None else "ok", age)

    def finish(self) -> None:
        """Accrue spend up to now, write the state file at once and publish those figures:
        the last cycle, on shutdown. The outputs still have to deliver them (close_outputs)."""
        self.state.advance(self._clock())
        if self.state_file is not None:
            self.state_file.save_now(self.state)
        self.publish()

    async def close_outputs(self) -> None:
        """Let every output deliver what it holds, each within its own bounds, off the
        event loop."""
        for output in self.outputs:
            try:
                await asyncio.to_thread(output.close)
            except Exception:
                log.exception("closing output %s failed", type(output).__name__)

    async def run_forever(self) -> None:
        """One cycle at once, then one every interval; a late cycle skips ahead instead
        of piling up."""
        next_at = self._clock()
        while True:
            next_at += self.interval
            try:
                await self.run_once()
            except Exception:
                log.exception("collection cycle failed")
            delay = next_at - self._clock()
            if delay < 0:
                next_at = self._clock()
                delay = 0
            await self._sleep(delay)
