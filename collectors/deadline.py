"""A deadline on an awaitable, at the least cost the running Python allows.

Every cycle bounds each engine's read by its own timeout. `asyncio.timeout`
(3.11) costs about 35,000 instructions a use, more than decoding the answer's
head: an object, its `async with` protocol and states, and a copy of the context
for its timer. `within` does what it does with one timer on the task: at the
deadline the task is cancelled, and the cancellation it asked for, and only that
one, comes out as TimeoutError; its own cancel request is withdrawn
(`Task.uncancel`) however the awaitable ends. 3.10 has no `uncancel`: there
`asyncio.wait_for` runs the awaitable as a task of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_UNCANCEL = hasattr(asyncio.Task, "uncancel")


class _Expiry:
    """The timer's callback: cancels the task once its deadline has passed."""

    __slots__ = ("task", "cancelling", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        """Cancel requests the task had before the deadline was set: above them, the
        cancellation is the deadline's."""
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or asyncio.TimeoutError once `seconds` have passed (the
    awaitable is then cancelled). Must run in a task."""
    if not _UNCANCEL:
        return await asyncio.wait_for(awaitable, seconds)
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("within() must run inside a task")
    expiry = _Expiry(task)
    loop = task.get_loop()
    # The callback only cancels the task: it needs no copy of the caller's context.
    timer = loop.call_at(loop.time() + seconds, expiry, context=contextvars.Context())
    try:
        result = await awaitable
    except BaseException as error:
        timer.cancel()
        # The deadline's own cancel request is withdrawn whatever ended the awaitable.
        withdrawn = expiry.fired and task.uncancel() <= expiry.cancelling
        if withdrawn and type(error) is asyncio.CancelledError:
            raise asyncio.TimeoutError from error
        raise
    timer.cancel()
    if expiry.fired:
        task.uncancel()
    return result
