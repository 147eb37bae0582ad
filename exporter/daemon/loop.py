"""The collection loop: every interval, read all sources at once and render.

Each collector runs concurrently under its own timeout, so one dead or slow
engine costs at most that timeout and never hides the others. Scrapes of
`/metrics` never wait on this loop: they read `page`, the last cycle's output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from llm_cost_exporter.accounting.node import NodeState
from llm_cost_exporter.collectors.base import Collector, CollectorError
from llm_cost_exporter.collectors.nvml import NvmlSnapshot
from llm_cost_exporter.outputs.prometheus import Exposition

log = logging.getLogger(__name__)


class CollectionLoop:
    def __init__(
        self,
        state: NodeState,
        collectors: Sequence[Collector],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.collectors = list(collectors)
        self.interval = interval
        self._clock = clock
        self._exposition = Exposition(state)
        self.page: bytes = b""
        self.last_cycle_at: float | None = None

    async def _collect(self, collector: Collector) -> None:
        started = self._clock()
        try:
            readings = await collector.collect()
        except CollectorError as error:
            self.state.record_failure(
                collector.name, collector.target, error.reason, str(error), self._clock() - started
            )
            return
        except Exception as error:  # a bug must cost one target, never the loop
            log.exception(
                "collector %s for %s failed unexpectedly", collector.name, collector.target
            )
            self.state.record_failure(
                collector.name, collector.target, "internal", repr(error), self._clock() - started
            )
            return
        finished = self._clock()
        if isinstance(readings, NvmlSnapshot):
            self.state.record_gpu_snapshot(readings, finished - started, finished)
        else:
            self.state.record_engine_readings(collector.target, readings, finished - started)

    async def run_once(self) -> None:
        """One cycle: collect everything, accrue spend, render the page."""
        await asyncio.gather(*(self._collect(c) for c in self.collectors))
        now = self._clock()
        self.state.advance(now)
        self.page = self._exposition.render()
        self.last_cycle_at = now

    def healthy(self) -> bool:
        """The loop is alive if it finished a cycle within three intervals."""
        if self.last_cycle_at is None:
            return False
        return self._clock() - self.last_cycle_at < 3 * self.interval + 1

    async def run_forever(self) -> None:
        """Cycles at a fixed rate; a late cycle skips ahead instead of piling up."""
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
            await asyncio.sleep(delay)
