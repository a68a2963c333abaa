"""When things run: each source when it is due, and a periodic retry of pending alerts.

A poll returns when its source is due again (bot.ingest decides: adaptive interval, publisher
hints, back-off, Retry-After) and the source's job is moved to that time; a poll that returns None
leaves the source on its plain interval. At start-up each source resumes at the time stored by its
last poll, so a restart neither forgets a Retry-After nor hammers a failing site.

APScheduler decides the times; the work itself runs as tasks this module tracks, so that a clean
shutdown can wait a short grace period for polls in flight and then cancel them (APScheduler does
not cancel coroutine jobs it started). A source whose previous poll is still running is skipped,
never polled twice at once.

This is the one-process schedule (SQLite). On PostgreSQL, workers share the sources through the
database instead (bot.fleet's claim loop), and this schedule runs only the delivery retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .ingest import SourceJob

log = logging.getLogger("wirewatch.scheduler")

# Pending alerts (e.g. after a failed send) are retried this often even when no source brings news.
DELIVERY_RETRY = timedelta(seconds=30)


async def finish_tasks(tasks: list[asyncio.Task[Any]], grace_seconds: float, what: str) -> None:
    """Give work in flight `grace_seconds` to end, then cancel what is left: a clean shutdown
    never waits on a hanging poll for longer than that (shared by bot.fleet)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in pending:
        task.cancel()
    if pending:
        log.info("cancelled %d %s still running at shutdown", len(pending), what)
        await asyncio.wait(pending, timeout=2.0)


class Schedule:
    def __init__(
        self,
        poll: Callable[[SourceJob], Awaitable[datetime | None]],
        deliver: Callable[[], Awaitable[Any]],
    ) -> None:
        self._poll = poll
        self._deliver = deliver
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: dict[str, asyncio.Task[Any]] = {}

    def add_source(
        self, job: SourceJob, every: timedelta, first_run: datetime | None = None
    ) -> None:
        """Poll `job` every `every` unless its polls say otherwise; first at `first_run` (None or
        a past time: now)."""
        # A little jitter spreads sources with the same interval instead of firing them together.
        jitter = min(every.total_seconds() * 0.1, 60.0)
        now = datetime.now(UTC)
        key = f"source:{job.name}"

        async def poll_and_reschedule() -> None:
            due = await self._poll(job)
            if due is not None and self._scheduler.running and self._scheduler.get_job(key):
                self._scheduler.modify_job(key, next_run_time=max(due, datetime.now(UTC)))

        self._scheduler.add_job(
            self._launch,
            IntervalTrigger(seconds=every.total_seconds(), jitter=jitter, timezone=UTC),
            args=(key, poll_and_reschedule),
            id=key,
            next_run_time=max(first_run, now) if first_run is not None else now,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    def start(self) -> None:
        self._scheduler.add_job(
            self._launch,
            IntervalTrigger(seconds=DELIVERY_RETRY.total_seconds(), timezone=UTC),
            args=("delivery", self._deliver),
            id="delivery",
            # At once too: alerts left pending by the last run go out without waiting a period.
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
        )
        self._scheduler.start()

    def add_periodic(
        self, key: str, every: timedelta, work: Callable[[], Awaitable[Any]], first_run: datetime
    ) -> None:
        """Run `work` every `every` from `first_run` (retention, admin alerts); like every job
        here, never twice at once, and missed turns are coalesced into one."""
        self._scheduler.add_job(
            self._launch,
            IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
            args=(key, work),
            id=key,
            next_run_time=first_run,
            coalesce=True,
            max_instances=1,
        )

    @property
    def running(self) -> bool:
        """Started and not stopped (the readiness probe, bot.readiness)."""
        return bool(self._scheduler.running)

    async def stop(self, grace_seconds: float) -> None:
        """Stop scheduling, give work in flight `grace_seconds`, then cancel what is left."""
        self._scheduler.shutdown(wait=False)
        await finish_tasks(list(self._running.values()), grace_seconds, "task(s)")

    async def _launch(self, key: str, work: Callable[[], Awaitable[Any]]) -> None:
        if key in self._running:
            log.info("%s is still running from its last turn; skipping this one", key)
            return
        task = asyncio.create_task(self._guarded(key, work))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    @staticmethod
    async def _guarded(key: str, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one job must not stop the schedule
            log.exception("%s failed", key)
