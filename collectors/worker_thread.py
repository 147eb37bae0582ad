"""A thread of its own for calls that block, awaited by the event loop without waiting on it.

NVML's calls block on the driver, and the state file's writes on the disk, for
as long as they take. Each gets one daemon thread that runs its calls one after
another. A call is handed over through a queue and its outcome comes back as a
future on the caller's loop: on every cycle, a third less CPU than a thread
pool's futures under a shielded `wait_for`. And as a daemon thread, a call hung for
good (a wedged driver, a dead disk) never holds up the process's exit, where a
pool's threads are waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class WorkerThread:
    """Runs the calls handed to it, one at a time, on a daemon thread started with the
    first. A call left behind (timed out, its caller cancelled, its loop closed) still
    runs to its end; `busy` says so, and its outcome is dropped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._handed = 0
        """Calls handed over, counted on the loop's thread."""
        self._ended = 0
        """Calls ended, counted on the worker (and the one before it, after a close)."""
        self._ending = threading.Lock()

    @property
    def busy(self) -> bool:
        """A call handed over has not ended yet: it runs or waits to (or is hung)."""
        return self._handed != self._ended

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Hand `work` over; the future, on the running loop, gets what it returns or
        raises. Cancelling the future does not stop the call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(self._calls,), name=self.name, daemon=True
            )
            self._thread.start()
        self._handed += 1
        self._calls.put((work, loop, future))
        return future

    async def call(self, work: Callable[[], T], timeout: float) -> T:
        """What `work` returns, waiting at most `timeout` seconds: a late call is left to
        run (asyncio.TimeoutError), its outcome dropped, as is that of a call whose
        caller was cancelled."""
        future = self.submit(work)
        try:
            _, late = await asyncio.wait((future,), timeout=timeout)
        finally:
            if not future.done():
                future.add_done_callback(_dropped)
        if late:
            raise asyncio.TimeoutError
        return future.result()

    def close(self) -> None:
        """The thread ends after the call it runs, if any; calls already handed over run
        first. A call handed over after this starts a new thread."""
        if self._thread is not None:
            self._calls.put(None)
            self._calls = queue.SimpleQueue()
            self._thread = None

    def _run(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        while True:
            handed = calls.get()
            if handed is None:
                return
            self._serve(*handed)
            del handed  # nothing of a call is kept while the thread waits for the next

    def _serve(
        self, work: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (work(), None)
        except BaseException as error:  # the caller's to judge, whatever it is
            outcome = (None, error)
        with self._ending:
            self._ended += 1
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
            loop.call_soon_threadsafe(_settle, future, *outcome)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled by its caller
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _dropped(future: asyncio.Future[Any]) -> None:
    """The outcome of a call nobody waits for any more: an exception is taken, so that it
    is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()
