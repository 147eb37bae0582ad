"""`WorkerThread`: blocking calls run one at a time on a thread of their own, awaited
within a bound, left to run when late, and never holding up the process's exit."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import threading

import pytest
from realparts.samples import eventually
from realparts.timeouts import scaled

from llm_cost_exporter.collectors.base import CollectorError
from llm_cost_exporter.collectors.worker_thread import WorkerThread


def test_calls_run_in_order_one_at_a_time_on_one_thread_not_the_loops() -> None:
    worker = WorkerThread("test")
    seen: list[tuple[int, int]] = []
    running = threading.Lock()

    def call(n: int) -> int:
        assert running.acquire(blocking=False), "two calls ran at once"
        try:
            seen.append((n, threading.get_ident()))
            return n * n
        finally:
            running.release()

    async def main() -> list[int]:
        futures = [worker.submit(lambda n=n: call(n)) for n in range(20)]
        return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == [n * n for n in range(20)]
    assert [n for n, _ in seen] == list(range(20))
    threads = {ident for _, ident in seen}
    assert len(threads) == 1 and threads != {threading.get_ident()}
    assert not worker.busy


def test_what_a_call_raises_is_raised_to_its_caller() -> None:
    worker = WorkerThread("test")

    def fails() -> None:
        raise CollectorError("unavailable", "no driver")

    async def main() -> None:
        with pytest.raises(CollectorError, match="no driver"):
            await worker.call(fails, scaled(30))
        assert await worker.call(lambda: "next", scaled(30)) == "next"

    asyncio.run(main())


def test_a_late_call_times_out_runs_on_and_its_failure_is_dropped_unlogged(caplog) -> None:
    worker = WorkerThread("test")
    release = threading.Event()

    def late() -> None:
        release.wait()
        raise ValueError("too late to matter")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await worker.call(late, 0.01)
        assert worker.busy
        release.set()
        await asyncio.sleep(0)
        while worker.busy:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)  # the outcome reaches the loop after the call ends

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert "never retrieved" not in caplog.text


def test_a_cancelled_caller_leaves_the_call_to_end() -> None:
    worker = WorkerThread("test")
    release = threading.Event()
    ended = threading.Event()

    def slow() -> None:
        release.wait()
        ended.set()

    async def main() -> None:
        task = asyncio.ensure_future(worker.call(slow, 3600))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(main())
    eventually(ended.is_set, what="the call left behind to end")
    eventually(lambda: not worker.busy, what="the worker to be free again")


def test_a_call_whose_loop_closed_ends_and_the_next_loop_is_served() -> None:
    worker = WorkerThread("test")
    release = threading.Event()

    async def leave_running() -> None:
        worker.submit(release.wait)

    asyncio.run(leave_running())
    release.set()
    eventually(lambda: not worker.busy, what="the call of the closed loop to end")

    async def next_loop() -> str:
        return await worker.call(lambda: "served", scaled(30))

    assert asyncio.run(next_loop()) == "served"


def test_after_close_the_thread_ends_and_a_new_call_starts_another() -> None:
    worker = WorkerThread("test")

    async def ident() -> int:
        return await worker.call(threading.get_ident, scaled(30))

    first = asyncio.run(ident())
    (thread,) = [t for t in threading.enumerate() if t.ident == first]
    worker.close()
    thread.join(scaled(30))
    assert not thread.is_alive()
    second = asyncio.run(ident())
    (another,) = [t for t in threading.enumerate() if t.ident == second]
    assert another is not thread and another.is_alive()
    worker.close()


HUNG_FOR_GOOD = """
import asyncio, threading
from llm_cost_exporter.collectors.worker_thread import WorkerThread

worker = WorkerThread("hung")


async def main():
    try:
        await worker.call(threading.Event().wait, 0.05)  # a wedged driver, a dead disk
    except asyncio.TimeoutError:
        print("timed out")


asyncio.run(main())
"""


def test_a_call_hung_for_good_does_not_hold_up_the_exit() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", HUNG_FOR_GOOD],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == "timed out"
