"""Requests served one at a time, the least recently served connection first.

The event loop serves ready connections in turn, so a polite scraper's request
waits behind every request already queued: with 200 connections asking back
to back, that is 200 responses. Here a handler runs only when it holds the one
slot, and a waiting request whose connection was served longest ago goes
first, so a scraper asking every few seconds overtakes every connection that
asked a moment ago.

Order alone does not keep the CPU for the scraper: the server would still
spend all of it on the others. So when many requests wait, a connection that
keeps asking back to back (again within EAGER_GAP of its answer, EAGER_STREAK
times running) first waits about EAGER_PENALTY: such clients are slowed to
about one request a second each, and the server stays idle enough to answer a
scraper at once. A scraper whose answer was late once is not slowed, and a
handful of busy clients (fewer than CONGESTION waiting) never is; no one is
refused.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random

EAGER_GAP = 0.1
"""Seconds: asking again sooner than this after an answer is asking back to back."""
EAGER_STREAK = 3
"""Back-to-back requests in a row that make a connection eager."""
EAGER_PENALTY = 1.0
"""Seconds (on average) after its previous answer that an eager request waits, under
congestion."""
CONGESTION = 32
"""Requests waiting (queued or slowed) from which eager requests are slowed."""


class FairQueue:
    """One request at a time, the connection answered longest ago first.

    A request always queues, and the slot is handed out by a callback that runs
    after the event loop has taken in what arrived meanwhile, so the order is
    chosen among every request waiting, not only the first to come.
    """

    def __init__(self) -> None:
        self._busy = False
        self._handing_out = False
        self._slowed = 0
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # equal keys: first come, first served

    def __len__(self) -> int:
        return len(self._waiting) + self._slowed

    async def acquire(self, served_at: float, back_to_back: int = 0) -> None:
        """Wait for the slot; `served_at` is when the request's connection was last
        answered (loop time), its place in the queue; `back_to_back` how many of
        its requests in a row came within EAGER_GAP of their previous answer."""
        loop = asyncio.get_running_loop()
        if back_to_back >= EAGER_STREAK and len(self) >= CONGESTION:
            self._slowed += 1
            try:
                # Spread out, so that slowed clients do not come back all at once.
                penalty = EAGER_PENALTY * random.uniform(0.5, 1.5)
                await asyncio.sleep(served_at + penalty - loop.time())
            finally:
                self._slowed -= 1
        turn = loop.create_future()
        heapq.heappush(self._waiting, (served_at, next(self._order), turn))
        self._hand_out_soon()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed the slot just as the request was cancelled
            raise

    def release(self) -> None:
        self._busy = False
        self._hand_out_soon()

    def _hand_out_soon(self) -> None:
        if not self._busy and not self._handing_out and self._waiting:
            self._handing_out = True
            asyncio.get_running_loop().call_soon(self._hand_out)

    def _hand_out(self) -> None:
        self._handing_out = False
        while self._waiting and not self._busy:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                self._busy = True
