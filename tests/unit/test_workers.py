"""The node's worker pool: results and errors reach the loop, several results share one wake-up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from peerloom.workers import WorkerPool


async def test_results_and_errors_come_back_to_the_loop() -> None:
    pool = WorkerPool(2)
    try:
        assert await pool.submit(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await pool.submit(lambda: 1 / 0)
        assert await pool.submit(threading.current_thread) is not threading.current_thread()
        results = await asyncio.gather(*(pool.submit(pow, i, 2) for i in range(200)))
        assert results == [i * i for i in range(200)]
    finally:
        pool.close()


async def test_results_that_finish_while_the_loop_is_busy_share_one_wake_up() -> None:
    pool = WorkerPool(2)
    loop = asyncio.get_running_loop()
    wakeups = 0
    original = loop.call_soon_threadsafe

    def counting(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal wakeups
        wakeups += 1
        return original(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        futures = [pool.submit(time.sleep, 0.001) for _ in range(50)]
        time.sleep(0.3)  # the loop is blocked: every job finishes before it can take any result
        await asyncio.gather(*futures)
        assert wakeups == 1
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        pool.close()


async def test_a_cancelled_future_is_skipped_and_the_others_still_arrive() -> None:
    pool = WorkerPool(1)
    gate = threading.Event()
    try:
        first = pool.submit(gate.wait, 5)
        second = pool.submit(lambda: "second")
        first.cancel()
        gate.set()
        assert await second == "second"
        assert first.cancelled()
    finally:
        pool.close()


async def test_close_finishes_the_queued_jobs_then_refuses_new_ones() -> None:
    pool = WorkerPool(1)
    done: list[int] = []
    futures = [pool.submit(done.append, i) for i in range(20)]
    pool.close()
    assert done == list(range(20))
    await asyncio.gather(*futures)
    with pytest.raises(RuntimeError):
        pool.submit(done.append, 99)
