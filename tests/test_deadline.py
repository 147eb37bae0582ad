"""`within`: an awaitable's result before its deadline, TimeoutError after it, and the
task's own cancellations left as they were."""

from __future__ import annotations

import asyncio
import sys

import pytest

from llm_cost_exporter.collectors.deadline import within

needs_uncancel = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Task.cancelling() and uncancel() are 3.11's"
)


async def _value_after(seconds: float, value: str = "done") -> str:
    await asyncio.sleep(seconds)
    return value


def test_the_result_comes_back_before_the_deadline() -> None:
    assert asyncio.run(within(_value_after(0.001), 30.0)) == "done"


def test_past_the_deadline_the_awaitable_is_cancelled_and_timeout_is_raised() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await within(hangs(), 0.01)
        assert cancelled.is_set()

    asyncio.run(main())


@needs_uncancel
def test_a_timeout_leaves_the_task_with_no_cancel_request() -> None:
    async def main() -> int:
        with pytest.raises(asyncio.TimeoutError):
            await within(asyncio.sleep(3600), 0.01)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # no cancellation is pending for the task
        return task.cancelling()

    assert asyncio.run(main()) == 0


def test_an_error_of_the_awaitable_is_raised_as_it_is() -> None:
    async def fails() -> None:
        raise ValueError("broken page")

    with pytest.raises(ValueError, match="broken page"):
        asyncio.run(within(fails(), 30.0))


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(within(asyncio.sleep(3600), 30.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_an_inner_deadline_ends_first_and_the_outer_one_still_holds() -> None:
    async def main() -> str:
        async def inner() -> str:
            try:
                await within(asyncio.sleep(3600), 0.01)
            except asyncio.TimeoutError:
                return await _value_after(0.01, "inner timed out")
            return "no timeout"

        return await within(inner(), 30.0)

    assert asyncio.run(main()) == "inner timed out"


def test_an_outer_deadline_ends_an_inner_one_that_is_longer() -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await within(within(asyncio.sleep(3600), 30.0), 0.01)
        # The loop keeps serving: the cancelled inner timer is no longer due.
        assert await within(_value_after(0.001), 30.0) == "done"

    asyncio.run(main())


def test_many_reads_each_get_their_own_deadline() -> None:
    async def main() -> list[object]:
        reads = [within(_value_after(0.001 if i % 2 else 3600), 0.05) for i in range(8)]
        return await asyncio.gather(*reads, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [o == "done" for o in outcomes] == [i % 2 == 1 for i in range(8)]
    assert all(isinstance(o, asyncio.TimeoutError) for o in outcomes[::2])
