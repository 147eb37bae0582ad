"""A deadline on an awaitable, at the least cost the running Python allows.

Every cycle bounds each engine's read by its own timeout. Python 3.11's
`asyncio.timeout` puts the deadline on the running task; `asyncio.wait_for`, all
3.10 has, runs the awaitable as a task of its own, an extra task and a scheduling
round trip on every read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_timeout = getattr(asyncio, "timeout", None)


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or asyncio.TimeoutError once `seconds` have passed (the
    awaitable is then cancelled)."""
    if _timeout is None:
        return await asyncio.wait_for(awaitable, seconds)
    async with _timeout(seconds):
        return await awaitable
