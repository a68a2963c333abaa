"""Many `wirewatch run` workers on one PostgreSQL database: who polls what, and fresh feeds
everywhere.

**Fleet mode is PostgreSQL.** With a ``postgresql://`` database every worker runs
`FleetSchedule`: a claim loop that leases due sources from the shared ``sources`` table
(bot.coordination), polls what it claimed, and writes the next due time and ends the lease in one
statement. With SQLite (one process; a second one is refused) the per-source APScheduler jobs of
bot.scheduler stay. Two paths rather than the claim loop everywhere, because on SQLite the loop
would add a database round per second to the zero-setup default and nothing to share; and the
scheduler's own tests keep proving what they prove. The claims themselves run on both databases
(tests/bot/test_fleet_claims.py runs them on each), so the SQL is not PostgreSQL-only. Delivery
retries keep their APScheduler job in both modes.

**Leases.** A claim holds a source for `lease` (settings ``fleet.lease``; default three times the
fetch timeout). A running poll renews its leases every lease/3, so a long poll (many article
pages) never loses its source; a worker killed mid-poll stops renewing, and another worker claims
the source once the lease has run out. A source is claimed only when due, and its next due time is
written before its lease ends, so no source is polled twice in one interval; the one exception is
a crash between a fetch and its write, after which the source is polled again one lease later.

**Off the event loop.** Claims, renewals and releases are database rounds run in a worker thread
(asyncio.to_thread): on the loop, each would stall every poll of this worker while PostgreSQL
answers, which left one worker idle for much of a benchmark round (docs/benchmarks.md). A claim
asks for as many sources as there are free slots, and claims again at once when it got them all.
Claims and renewals are one statement each, run in autocommit on PostgreSQL
(bot.dialect.single_statements); a poll's state comes with its claim, and a 304 is recorded
with its release. The claimed feeds' hosts are entered in the host gate together, before their
polls start (bot.fleet_gate); the releases of polls that end within RELEASE_GATHER_SECONDS are
written together, in one transaction; and a poll's slot frees as soon as its release is handed
over. So an unchanged feed costs the database shares of a claim, a gate entry, a gathered slot
release and a gathered release (0.7 transactions per poll in bench/scale).
A claim takes any due source, not only this worker's (sending thousands of configured names with
every claim cost most of it); a source this worker has no settings for is handed back untouched
and skipped by its later claims.

**Fresh feeds in every process.** Each worker renders every feed from the database, so any of them
can serve any feed. Polls that store something bump a counter in the same transaction
(bot.coordination); `FeedRefresher` reads it every ``fleet.refresh_every`` and re-publishes when it
moved, so a worker serves what another worker polled within that period plus a render.

Per-host politeness across the fleet is bot.fleet_gate's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row

from feeds.politeness import HostGate, RequestGate

from .coordination import (
    Release,
    claim_source_rows,
    read_counter,
    register_sources,
    release_source,
    release_sources,
)
from .coordination import renew_leases as renew
from .dialect import single_statements
from .fleet_gate import WAITING_SINCE, FleetHostGate
from .ingest import Clock, SourceJob, utc_now
from .poll_batch import NotModifiedPoll
from .scheduler import finish_tasks
from .settings import Settings
from .store import SourceState, not_modified_update, source_state_of

log = logging.getLogger("wirewatch.fleet")

Released = Callable[[datetime | None, Sequence[NotModifiedPoll]], object]
"""Told by a poll as soon as its source is done: when it is due again (None: its interval from
now) and the poll's 304 record, if it was one, to write with the release."""

Poll = Callable[[SourceJob, Released, SourceState | None], Awaitable[datetime | None]]
"""A poll of one source, from the state its claim read, that reports when it is due again,
early through the callback."""

RELEASE_GATHER_SECONDS = 0.02
"""How long an ended poll's release waits, to be written with others: one round trip and one
commit for several polls, where one each was most of the database's work per poll left in
bench/scale; the sources are leased to this worker until then, so none is polled twice."""

EnterAhead = Callable[[list[str]], Awaitable[None]]
"""Takes the host gate's way in for these feeds' hosts at once, before their polls start
(bot.fleet_gate.FleetHostGate.enter_ahead)."""

__all__ = [
    "FeedRefresher",
    "FleetSchedule",
    "Released",
    "is_fleet",
    "lease_of",
    "request_gate",
    "worker_id",
]


def is_fleet(engine: Engine) -> bool:
    """Whether workers on this database coordinate through it (PostgreSQL) or run alone."""
    return engine.dialect.name == "postgresql"


def worker_id() -> str:
    """host:pid:random, unique across machines and restarts (a reused pid gets a new suffix)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def lease_of(settings: Settings) -> timedelta:
    return settings.fleet.lease or 3 * settings.fetch.timeout


def request_gate(settings: Settings, engine: Engine | None, owner: str) -> RequestGate:
    """The gate every request of this process passes: shared by the fleet on PostgreSQL, this
    process's own HostGate otherwise."""
    fetch = settings.fetch
    if engine is not None and is_fleet(engine):
        return FleetHostGate(
            engine,
            owner,
            total=fetch.concurrency,
            per_host=fetch.per_host,
            min_delay=fetch.host_delay.total_seconds(),
            hold=lease_of(settings),
        )
    return HostGate(
        total=fetch.concurrency,
        per_host=fetch.per_host,
        min_delay=fetch.host_delay.total_seconds(),
    )


class FleetSchedule:
    """Claim due sources, poll them, release them; until stopped.

    `poll` is the app's scheduled poll (bot.app.App.poll_one): it returns when the source is due
    again (None: its plain interval from now), and calls the function it is given with that as
    soon as the source is done, so the lease ends before the feeds and alerts that follow. At
    most `capacity` polls (with what follows them) run at once in this worker; the rest of the
    due sources stay claimable by other workers, which also takes work away from a worker whose
    deliveries are slow.

    A claim takes only as many sources as there are free slots. A queue of claimed sources
    behind the slots made claims cheaper (8 sources a claim instead of 1.7 in bench/scale) but
    let one worker hoard sources while others stood idle, when polls wait for their hosts'
    turns (tests/test_fleet.py saw a worker get none): it was taken out.
    """

    def __init__(
        self,
        engine: Engine,
        jobs: Sequence[SourceJob],
        poll: Poll,
        *,
        owner: str,
        lease: timedelta,
        capacity: int,
        claim_every: float = 1.0,
        clock: Clock = utc_now,
        enter_ahead: EnterAhead | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._engine = engine
        # Claims, renewals and releases are one statement each: on PostgreSQL they run in
        # autocommit, without the BEGIN and COMMIT round trips (SQLite's driver would roll back
        # an UPDATE ... RETURNING it has not finished with: a plain transaction there).
        self._autocommit = single_statements(engine)
        self._jobs = {job.name: job for job in jobs}
        self._poll = poll
        self.owner = owner
        self._lease = lease
        self._capacity = capacity
        self._claim_every = claim_every
        self._clock = clock
        self._enter_ahead = enter_ahead
        self._running: set[asyncio.Task[None]] = set()
        self._to_release: list[Release] = []
        """Releases of ended polls, gathered to be written together."""
        self._releasing: asyncio.Task[None] | None = None
        """Writes them, while there are any."""
        self._held: set[str] = set()
        """Sources this worker holds a lease on (polled now); renewed while held."""
        self._foreign: set[str] = set()
        """Sources in the table that this worker has no settings for: never claimed again."""
        self._claimed_full = False
        """Whether the last claim took all it asked for (more may be due at once)."""
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        with self._engine.begin() as connection:
            register_sources(connection, [(job.name, job.url) for job in self._jobs.values()])
        self._loop = asyncio.create_task(self._claim_loop())

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing more, give polls in flight `grace_seconds`, then cancel the rest (their
        leases are released as they end, so other workers take the sources at once)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await self._loop
        await finish_tasks(list(self._running), grace_seconds, "poll(s)")
        if self._releasing is not None:
            await self._releasing

    async def _claim_loop(self) -> None:
        renew_every = self._lease.total_seconds() / 3
        renew_at = time.monotonic() + renew_every
        while not self._stopping:
            try:
                await self._claim()
            except Exception:  # the database may be restarting: keep trying, never stop
                log.exception("claiming sources failed; retrying in %.1f s", self._claim_every)
            try:
                if time.monotonic() >= renew_at:
                    renew_at = time.monotonic() + renew_every
                    await self._renew()
            except Exception:  # the leases last two more renewals: the next one may succeed
                log.exception("renewing leases failed; retrying in %.1f s", renew_every)
            self._wake.clear()
            if self._capacity - len(self._running) > 0 and self._claimed_full:
                continue  # a full batch: more sources may be due, claim again at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._claim_every)

    async def _claim(self) -> None:
        """Claim as many due sources as there are free slots, in one transaction.

        The database round runs in a worker thread, as do renewals and releases: a claim
        waiting for PostgreSQL (tens of milliseconds on a busy server) would otherwise stall
        every poll of this process meanwhile.
        """
        self._claimed_full = False
        free = self._capacity - len(self._running)
        if free < 1:
            return
        rows = await asyncio.to_thread(self._claim_now, free, frozenset(self._foreign))
        self._claimed_full = len(rows) >= free
        claimed: list[tuple[SourceJob, SourceState]] = []
        for row in rows:
            name = row.name
            job = self._jobs.get(name)
            if job is None:  # configured by another worker only: hand it back untouched
                self._foreign.add(name)
                log.info("source %s: not in this worker's settings; left to the others", name)
                await asyncio.to_thread(self._release_now, name, None)
                continue
            claimed.append((job, source_state_of(row._mapping, job.url)))
        if claimed and self._enter_ahead is not None:
            try:
                await self._enter_ahead([state.fetch_url or job.url for job, state in claimed])
            except Exception:  # each poll then takes its own way in
                log.exception("entering the host gate ahead of %d polls failed", len(claimed))
        for job, state in claimed:
            task = asyncio.create_task(self._poll_and_release(job, state))
            self._held.add(job.name)
            self._running.add(task)
            task.add_done_callback(self._done)

    def _claim_now(self, limit: int, skip: frozenset[str]) -> list[Row[Any]]:
        with self._autocommit.begin() as connection:
            return claim_source_rows(
                connection,
                self.owner,
                now=self._clock(),
                lease=self._lease,
                limit=limit,
                skip=skip,
            )

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free: due sources may be waiting for it

    async def _renew(self) -> None:
        names = list(self._held)
        if not names:
            return
        held = await asyncio.to_thread(self._renew_now, names)
        for lost in set(names) - held:
            # Released while the renewal ran (the release discards it first): not lost.
            if lost in self._held:
                self._held.discard(lost)
                log.warning("source %s: lease lost (this worker stalled past it)", lost)

    def _renew_now(self, names: list[str]) -> set[str]:
        with self._autocommit.begin() as connection:
            return renew(connection, names, self.owner, now=self._clock(), lease=self._lease)

    async def _poll_and_release(self, job: SourceJob, state: SourceState) -> None:
        # The poll's requests wait in their hosts' lines from the source's due time on (this
        # task's own context: bot.fleet_gate.WAITING_SINCE).
        WAITING_SINCE.set(state.next_poll_at)
        released = False

        def release(due: datetime | None, answered_304: Sequence[NotModifiedPoll] = ()) -> None:
            """Hand the source back, due again at `due` (None: its interval from now), with the
            poll's 304 record if any; once. Written in the background, with the releases of
            the polls that end within RELEASE_GATHER_SECONDS: the poll goes on with its feeds
            and alerts, and its slot frees at once. The source stays leased to this worker until
            the write, so no claim takes it meanwhile; stop() waits for the writes."""
            nonlocal released
            if not released:
                released = True
                self._held.discard(job.name)
                at = due or self._clock() + job.cadence.every
                also = not_modified_update(answered_304[-1]) if answered_304 else {}
                self._to_release.append(Release(job.name, at, also))
                if self._releasing is None or self._releasing.done():
                    self._releasing = asyncio.create_task(self._release_gathered())

        try:
            release(await self._poll(job, release, state))
        except asyncio.CancelledError:
            if not released:  # due time unchanged: another worker polls it at once
                self._held.discard(job.name)
                self._release_now(job.name, None)
            raise
        except Exception:  # a bug in one poll must not stop the loop
            log.exception("source %s: poll failed", job.name)
            release(None)

    async def _release_gathered(self) -> None:
        while self._to_release:
            await asyncio.sleep(RELEASE_GATHER_SECONDS)
            gathered, self._to_release = self._to_release, []
            await asyncio.to_thread(self._release_all_now, gathered)

    def _release_all_now(self, releases: list[Release]) -> None:
        try:
            with self._engine.begin() as connection:
                held = release_sources(connection, self.owner, releases)
        except Exception:  # the leases run out by themselves; the next claim round goes on
            log.exception("releasing the leases of %d source(s) failed", len(releases))
            return
        if held < len(releases):
            log.warning(
                "%d of %d source(s) released had passed to another worker before (among %s)",
                len(releases) - held,
                len(releases),
                ", ".join(release.name for release in releases),
            )

    def _release_now(self, name: str, due: datetime | None) -> None:
        """Hand one source back at once (a cancelled poll, a source of another worker's)."""
        try:
            with self._autocommit.begin() as connection:
                held = release_source(connection, name, self.owner, due)
        except Exception:  # the lease runs out by itself; the next claim round goes on
            log.exception("source %s: releasing its lease failed", name)
            return
        if not held:
            log.warning("source %s: lease had passed to another worker before release", name)


class FeedRefresher:
    """Re-publish this process's feeds whenever another worker stored something."""

    def __init__(
        self, engine: Engine, publish: Callable[[], Awaitable[Any]], every: float = 2.0
    ) -> None:
        self._engine = engine
        self._publish = publish
        self._every = every
        self._seen: int | None = None

    async def check(self) -> bool:
        """Publish if the counter moved since the last check (or this is the first); whether
        it did. The counter is read before publishing, so a change made while rendering is
        caught by the next check."""
        current = await asyncio.to_thread(self._read)
        if current == self._seen:
            return False
        await self._publish()
        self._seen = current
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("re-publishing feeds failed; trying again in %.1f s", self._every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._every)

    def _read(self) -> int:
        with self._engine.begin() as connection:
            return read_counter(connection)


class Fleet:
    """This worker's part in the fleet: the claim loop and the feed refresher, run together."""

    def __init__(self, schedule: FleetSchedule, refresher: FeedRefresher) -> None:
        self.schedule = schedule
        self.refresher = refresher
        self._stop = asyncio.Event()
        self._refreshing: asyncio.Task[None] | None = None

    @classmethod
    def start_if_shared(
        cls,
        engine: Engine,
        settings: Settings,
        jobs: Sequence[SourceJob],
        poll: Poll,
        publish: Callable[[], Awaitable[Any]],
        *,
        owner: str,
        clock: Clock = utc_now,
        gate: RequestGate | None = None,
    ) -> Fleet | None:
        """Start fleet mode on PostgreSQL; None on SQLite, where bot.scheduler polls alone.
        `gate`: the host gate this worker's polls pass (its claims enter a fleet gate ahead)."""
        if not is_fleet(engine):
            return None
        fleet = cls(
            FleetSchedule(
                engine,
                jobs,
                poll,
                owner=owner,
                lease=lease_of(settings),
                capacity=settings.fetch.concurrency,
                claim_every=settings.fleet.claim_every.total_seconds(),
                clock=clock,
                enter_ahead=gate.enter_ahead if isinstance(gate, FleetHostGate) else None,
            ),
            FeedRefresher(engine, publish, settings.fleet.refresh_every.total_seconds()),
        )
        fleet.schedule.start()
        fleet._refreshing = asyncio.create_task(fleet.refresher.run(fleet._stop))
        log.info("fleet mode: worker %s claims sources from the shared database", owner)
        return fleet

    async def stop(self, grace_seconds: float) -> None:
        self._stop.set()
        await self.schedule.stop(grace_seconds)
        if self._refreshing is not None:
            await asyncio.wait([self._refreshing], timeout=grace_seconds)
            self._refreshing.cancel()
