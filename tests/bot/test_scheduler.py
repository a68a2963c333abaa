"""The schedule: each source at its interval, never two polls of one source at once, and a
shutdown that cancels work still running after the grace period."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from bot.ingest import SourceJob
from bot.scheduler import Schedule


async def test_each_source_is_polled_repeatedly_at_its_interval() -> None:
    polls: list[tuple[str, float]] = []

    async def poll(job: SourceJob) -> None:
        polls.append((job.name, time.monotonic()))

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    schedule.add_source(SourceJob("fast", "http://127.0.0.1:9/a"), timedelta(seconds=0.25))
    schedule.add_source(SourceJob("slow", "http://127.0.0.1:9/b"), timedelta(hours=1))
    schedule.start()
    await asyncio.sleep(1.2)
    await schedule.stop(grace_seconds=1)

    fast = [t for name, t in polls if name == "fast"]
    slow = [t for name, t in polls if name == "slow"]
    assert len(slow) == 1  # the first poll is immediate, the next one an hour away
    # Wall-clock bounds are loose on purpose (a loaded CI machine delays timers, never hastens).
    assert 2 <= len(fast) <= 7
    assert all(later - earlier > 0.15 for earlier, later in pairwise(fast))


async def test_a_source_still_being_polled_is_not_polled_again() -> None:
    running = 0
    overlaps = 0
    calls = 0

    async def poll(job: SourceJob) -> None:
        nonlocal running, overlaps, calls
        calls += 1
        running += 1
        overlaps += running > 1
        await asyncio.sleep(0.6)
        running -= 1

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    schedule.add_source(SourceJob("s", "http://127.0.0.1:9/"), timedelta(seconds=0.1))
    schedule.start()
    await asyncio.sleep(1.0)
    await schedule.stop(grace_seconds=2)
    assert overlaps == 0
    assert 1 <= calls <= 2  # every 0.1 s would be 10 calls; a poll lasts 0.6 s


async def test_stop_cancels_work_that_outlives_the_grace_period() -> None:
    cancelled = asyncio.Event()

    async def poll(job: SourceJob) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    schedule.add_source(SourceJob("hangs", "http://127.0.0.1:9/"), timedelta(minutes=5))
    schedule.start()
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await schedule.stop(grace_seconds=0.5)
    assert cancelled.is_set()
    assert time.monotonic() - started < 3


async def test_a_failing_job_does_not_stop_the_schedule() -> None:
    calls = 0

    async def poll(job: SourceJob) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in one poll")

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    schedule.add_source(SourceJob("buggy", "http://127.0.0.1:9/"), timedelta(seconds=0.2))
    schedule.start()
    await asyncio.sleep(0.7)
    await schedule.stop(grace_seconds=1)
    assert calls >= 2


async def test_a_poll_decides_when_its_source_is_due_again() -> None:
    polls: list[float] = []

    async def poll(job: SourceJob) -> datetime:
        polls.append(time.monotonic())
        return datetime.now(UTC) + timedelta(seconds=0.3)  # e.g. Retry-After: soon

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    schedule.add_source(SourceJob("s", "http://127.0.0.1:9/"), timedelta(hours=1))
    schedule.start()
    await asyncio.sleep(1.0)
    await schedule.stop(grace_seconds=1)
    # The plain interval (an hour) would have allowed one poll; the returned times allowed more.
    assert 2 <= len(polls) <= 5
    assert all(later - earlier > 0.2 for earlier, later in pairwise(polls))


async def test_a_source_resumes_at_its_stored_time() -> None:
    polls: dict[str, float] = {}

    async def poll(job: SourceJob) -> None:
        polls.setdefault(job.name, time.monotonic())

    async def deliver() -> None:
        return None

    schedule = Schedule(poll, deliver)
    started = time.monotonic()
    due = datetime.now(UTC) + timedelta(seconds=0.5)
    schedule.add_source(SourceJob("s", "http://127.0.0.1:9/"), timedelta(hours=1), first_run=due)
    schedule.add_source(
        SourceJob("late", "http://127.0.0.1:9/x"),
        timedelta(hours=1),
        first_run=datetime.now(UTC) - timedelta(days=1),  # overdue: polled at once
    )
    schedule.start()
    deadline = time.monotonic() + 5
    while len(polls) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await schedule.stop(grace_seconds=1)
    # Timers may run late on a loaded machine, never early.
    assert polls["s"] - started >= 0.45
    assert polls["late"] < polls["s"]
