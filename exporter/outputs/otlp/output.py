"""The OTLP output: the last cycle's families, pushed every interval from a thread.

`publish` only keeps a reference to the cycle's families, so collection and
`/metrics` never wait on the receiver. A sender thread turns the newest of them
into an export every interval and sends its queue in order. A receiver that is
down or slow costs that thread its time and nothing else: an export is bounded
by the timeout (the SDK exporter's own retries included), the queue by its
size (the oldest export is dropped), and sums are cumulative, so once the
receiver is back the next export carries every count made meanwhile. A change
of state (failing, recovered) is one log line; the SDK's own per-attempt
warnings are kept out of the log and the first of the failed attempt quoted in
that line.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from prometheus_client.core import Metric

from llm_cost_exporter.config.otlp_settings import OtlpConfig
from llm_cost_exporter.outputs.families import count_of, counter, gauge
from llm_cost_exporter.outputs.otlp.conversion import Stamps, to_export
from llm_cost_exporter.outputs.otlp.transport import Transport, TransportError
from llm_cost_exporter.outputs.process_families import process_start_time

log = logging.getLogger(__name__)

RESULTS = ("success", "failure", "dropped")
SDK_LOGGER = "opentelemetry"


class _FirstWarning(logging.Handler):
    """Keeps the SDK exporter's first warning of an attempt for our own log line, instead
    of logging it: the first names the cause, the last only that the retries ran out."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.message is None:
            self.message = record.getMessage().splitlines()[0][:500]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class OtlpOutput:
    """An Output pushing the families to an OTLP receiver; `start` starts the sender."""

    def __init__(
        self,
        config: OtlpConfig,
        resource: Mapping[str, str],
        counting_since: Callable[[], float],
        transport: Transport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`counting_since` is the wall time the node's kept counters began (it moves back
        when the state file is resumed)."""
        self.config = config
        self.resource = dict(resource)
        self._counting_since = counting_since
        self._transport = transport or Transport(config)
        self._wall_clock = wall_clock
        self._process_start = _ns(process_start_time())
        self._latest: tuple[Sequence[Metric], int] | None = None
        self._taken: tuple[Sequence[Metric], int] | None = None
        self._queue: collections.deque[MetricsData] = collections.deque()
        self.results = dict.fromkeys(RESULTS, 0)
        self._failing = False
        self._failed_attempts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sdk_warnings = _FirstWarning()

    # --- the Output side (event loop) ---------------------------------------------------

    def publish(self, families: Sequence[Metric]) -> None:
        self._latest = (families, _ns(self._wall_clock()))

    def own_families(self) -> Iterable[Metric]:
        exports = counter(
            "otlp_exports",
            "OTLP exports by result: success; failure (an attempt that failed after the "
            "exporter's retries; the export stays queued); dropped (an export given up "
            "unsent: the queue was full, or the receiver was down at shutdown).",
            ("result",),
            unit=count_of("export"),
            per_process=True,
        )
        for result in RESULTS:
            exports.add_metric([result], self.results[result])
        queued = gauge(
            "otlp_queued_exports",
            "OTLP exports waiting for the receiver.",
            unit=count_of("export"),
        )
        queued.add_metric([], len(self._queue))
        return (exports, queued)

    def start(self) -> None:
        """Start the sender thread, which exports every interval until close()."""
        sdk = logging.getLogger(SDK_LOGGER)
        sdk.setLevel(logging.WARNING)
        sdk.addHandler(self._sdk_warnings)
        sdk.propagate = False
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Send the last published families and what is queued, within one timeout; what
        is left is dropped. Blocks: call it off the event loop."""
        self._stop.set()
        if self._thread is not None:
            # An export under way ends within the timeout, the flush within another.
            self._thread.join(2 * self.config.timeout + 1)
        else:
            self._flush(time.monotonic() + self.config.timeout)
        self._transport.close()
        logging.getLogger(SDK_LOGGER).removeHandler(self._sdk_warnings)

    # --- the sender thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval):
            self._take()
            self._send(deadline=None)
            self._transport.rest()
        self._flush(time.monotonic() + self.config.timeout)

    def _flush(self, deadline: float) -> None:
        self._take()
        self._send(deadline)
        if self._queue:
            self.results["dropped"] += len(self._queue)
            log.warning(
                "OTLP: %d export(s) to %s dropped at shutdown: the receiver did not take them "
                "within %gs",
                len(self._queue),
                self.config.target,
                self.config.timeout,
            )
            self._queue.clear()

    def _take(self) -> None:
        """Queue the newest families, once; the oldest export goes when the queue is full."""
        latest = self._latest
        if latest is None or latest is self._taken:
            return
        self._taken = latest
        families, at = latest
        stamps = Stamps(at, _ns(self._counting_since()), self._process_start)
        export = to_export(families, self.resource, stamps, self.config.gen_ai_attributes)
        if len(self._queue) >= self.config.queue_size:
            self._queue.popleft()
            self.results["dropped"] += 1
        self._queue.append(export)

    def _send(self, deadline: float | None) -> None:
        """Send the queue in order until it is empty, an attempt fails or the deadline passes."""
        while self._queue and (deadline is None or time.monotonic() < deadline):
            self._sdk_warnings.message = None
            try:
                exporter = self._transport.exporter()
                ok = exporter.export(self._queue[0]) == MetricExportResult.SUCCESS
                reason = (
                    self._transport.problem()
                    or self._sdk_warnings.message
                    or "the receiver refused the export"
                )
            except TransportError as error:
                ok, reason = False, str(error)
            except Exception as error:  # the SDK must never end the sender
                ok, reason = False, repr(error)
            if not ok:
                self.results["failure"] += 1
                self._failed(reason)
                return
            self._queue.popleft()
            self.results["success"] += 1
            self._succeeded()

    def _failed(self, reason: str) -> None:
        self._failed_attempts += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "OTLP export to %s failing: %s; trying again every %gs, keeping up to %d exports",
                self.config.target,
                reason,
                self.config.interval,
                self.config.queue_size,
            )

    def _succeeded(self) -> None:
        if self._failing:
            log.info(
                "OTLP export to %s recovered after %d failed attempt(s)",
                self.config.target,
                self._failed_attempts,
            )
        self._failing = False
        self._failed_attempts = 0
