"""Client errors logged at a bounded rate.

Bad requests, failed TLS handshakes, refused credentials and connections closed
for the connection limit are the client's doing, and anyone who can reach the
port can make thousands a second. Each is one line without a traceback, and at
most one line is written per interval: the first error at once, the rest
counted by kind into one summary line at the end of the interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

LOG_INTERVAL = 10.0
"""Seconds between two client-error lines."""
_DETAIL_CHARS = 200


def printable(text: str, limit: int = _DETAIL_CHARS) -> str:
    """Client-supplied text made safe for one log line: escaped and cut."""
    escaped = repr(text)[1:-1]
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


class RateLimitedLog:
    """One line per `interval` at most, the held-back errors counted by kind."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last_line = -float("inf")
        self._held: Counter[str] = Counter()
        self._last_held = ""
        self._flush: asyncio.TimerHandle | None = None

    def note(self, kind: str, detail: str) -> None:
        """A client error of `kind` (a short label), described by `detail` (one line)."""
        now = self._clock()
        if not self._held and now - self._last_line >= self._interval:
            self._last_line = now
            self._logger.warning("client error: %s", detail)
            return
        self._held[kind] += 1
        self._last_held = detail
        if self._flush is None:
            delay = max(0.0, self._last_line + self._interval - now)
            self._flush = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Write the summary of the held-back errors, if any."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._held:
            return
        total = sum(self._held.values())
        kinds = ", ".join(f"{kind}: {count}" for kind, count in self._held.most_common())
        self._logger.warning(
            "client errors: %d more in the last %gs (%s); last: %s",
            total,
            self._interval,
            kinds,
            self._last_held,
        )
        self._last_line = self._clock()
        self._held.clear()

    def close(self) -> None:
        self.flush()
