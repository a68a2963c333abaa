"""The parsing pool (bot.parse_pool): CPU-heavy poll steps run in a small pool of their own, so
the event loop keeps a fair share of the interpreter while pages are being cleaned."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.parse_pool import PARSE_THREADS, THREAD_NAME, off_loop


async def test_calls_run_in_the_pools_threads_and_return_or_raise() -> None:
    assert (
        await off_loop(lambda: threading.current_thread().name) != threading.current_thread().name
    )
    assert (await off_loop(threading.current_thread)).name.startswith(THREAD_NAME)
    with pytest.raises(ZeroDivisionError):
        await off_loop(lambda: 1 / 0)


async def test_no_more_than_the_pools_threads_work_at_once() -> None:
    lock = threading.Lock()
    busy = most = 0

    def work() -> None:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(0.05)
        with lock:
            busy -= 1

    # asyncio's default pool would run six of these at once on two cores.
    await asyncio.gather(*(off_loop(work) for _ in range(8)))
    assert most == PARSE_THREADS == 2
