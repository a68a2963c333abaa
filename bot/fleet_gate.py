"""Per-host politeness for a whole fleet of workers, kept in PostgreSQL.

The same three limits as feeds.politeness.HostGate (`total` in flight per process, `per_host` in
flight per host, `min_delay` between the starts of two requests to one host), except that the two
per-host limits hold for every worker sharing the database together, so a site sees the fleet as
one polite client:

- per-host concurrency: a host has `per_host` numbered rows in ``host_slots``; a request claims a
  free one (``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait for each other) and frees
  it when done. A claim carries an expiry, so a slot held by a worker killed mid-request comes back
  once `hold` has passed;
- spacing: ``host_turns`` holds when the host's last request started. A request starts only by
  moving that instant to now with one compare-and-set, ``INSERT ... ON CONFLICT DO UPDATE SET
  last_start = now() WHERE last_start <= now() - delay RETURNING``: of two workers trying at
  once, one wins and the other sleeps until a delay after the winner's start. Judged by the
  database's clock, whatever the workers' clocks say. The start is taken at the moment of
  sending, not reserved ahead: a reservation (next start = previous reservation + delay) would
  let a request that left late, behind a busy event loop, arrive just before the next one.

As in HostGate, a request takes its host's slot first and its turn after, and holds one of the
process's own `total` slots (our bandwidth is per process) only for the compare-and-set and the
request itself, never while it sleeps, so a request waiting for a busy host never holds a slot a
request to an idle host could use. The wait for a turn is short: at most `per_host` requests of
the whole fleet contend for one host's turn, because each holds one of its slots.

PostgreSQL only: SQLite serves one process, which HostGate already covers (bot.polling chooses).
Written by hand because no library coordinates request pacing through a database; the SQL is
two statements.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import Engine, Interval, and_, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql

from feeds.politeness import host_of

from .schema import host_slots, host_turns

log = logging.getLogger("wirewatch.fleet")

CLAIM_RETRY_SECONDS = (0.02, 0.05, 0.1, 0.2)
"""Pauses between attempts to claim a busy host's slot (then the last one, repeatedly)."""


class FleetHostGate:
    """A feeds.politeness.RequestGate whose per-host limits hold across processes."""

    def __init__(
        self,
        engine: Engine,
        owner: str,
        *,
        total: int = 8,
        per_host: int = 2,
        min_delay: float = 1.0,
        hold: timedelta = timedelta(minutes=2),
    ) -> None:
        if total < 1 or per_host < 1 or min_delay < 0:
            raise ValueError("total and per_host must be at least 1, min_delay at least 0")
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"the fleet host gate needs PostgreSQL, not {engine.dialect.name} "
                "(one process on SQLite uses feeds.politeness.HostGate)"
            )
        self._engine = engine
        self._owner = owner
        self._global = asyncio.Semaphore(total)
        self._per_host = per_host
        self._interval = literal(timedelta(seconds=min_delay), Interval())
        self._spaced = min_delay > 0
        self._hold = hold

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = host_of(url)
        number = await self._claim_slot(host)
        try:
            while True:
                async with self._global:
                    wait = self._take_turn(host) if self._spaced else None
                    if wait is None:
                        yield
                        return
                await asyncio.sleep(wait)
        finally:
            self._release_slot(host, number)

    async def _claim_slot(self, host: str) -> int:
        attempt = 0
        while True:
            number = self._try_claim(host)
            if number is not None:
                return number
            await asyncio.sleep(CLAIM_RETRY_SECONDS[min(attempt, len(CLAIM_RETRY_SECONDS) - 1)])
            attempt += 1

    def _try_claim(self, host: str) -> int | None:
        free = (
            select(host_slots.c.slot)
            .where(
                host_slots.c.host == host,
                host_slots.c.slot < self._per_host,
                or_(host_slots.c.owner.is_(None), host_slots.c.expires_at <= func.now()),
            )
            .order_by(host_slots.c.slot)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(host_slots)
            .where(host_slots.c.host == host, host_slots.c.slot == free.scalar_subquery())
            .values(owner=self._owner, expires_at=func.now() + self._hold)
            .returning(host_slots.c.slot)
        )
        with self._engine.begin() as connection:
            number = connection.scalar(claim)
            if number is None:
                # A host seen for the first time (or per_host raised): make its slots exist.
                # Claiming again is left to the caller's next attempt, which comes at once.
                connection.execute(
                    postgresql.insert(host_slots)
                    .values([{"host": host, "slot": slot} for slot in range(self._per_host)])
                    .on_conflict_do_nothing(index_elements=[host_slots.c.host, host_slots.c.slot])
                )
        if number is None:
            with self._engine.begin() as connection:
                number = connection.scalar(claim)
        return None if number is None else int(number)

    def _take_turn(self, host: str) -> float | None:
        """Start now if the host's last start is a delay ago (None), else the seconds to wait."""
        insert = postgresql.insert(host_turns).values(host=host, last_start=func.now())
        statement = insert.on_conflict_do_update(
            index_elements=[host_turns.c.host],
            set_={"last_start": func.now()},
            where=host_turns.c.last_start <= func.now() - self._interval,
        ).returning(host_turns.c.host)
        wait = select(
            func.extract("epoch", host_turns.c.last_start + self._interval - func.now())
        ).where(host_turns.c.host == host)
        with self._engine.begin() as connection:
            if connection.scalar(statement) is not None:
                return None
        with self._engine.begin() as connection:
            seconds = connection.scalar(wait)
        # At least a little: the other request's start may have been a moment ago.
        return max(float(seconds or 0.0), CLAIM_RETRY_SECONDS[0])

    def _release_slot(self, host: str, number: int) -> None:
        statement = (
            update(host_slots)
            .where(
                and_(
                    host_slots.c.host == host,
                    host_slots.c.slot == number,
                    host_slots.c.owner == self._owner,
                )
            )
            .values(owner=None, expires_at=None)
        )
        try:
            with self._engine.begin() as connection:
                connection.execute(statement)
        except Exception:  # the slot's expiry frees it anyway; never fail the request for it
            log.exception("could not free request slot %d of %s", number, host)
