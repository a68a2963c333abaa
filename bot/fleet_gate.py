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

As in HostGate, a request takes its host's slot first and its turn after (in one statement when
both are free), and holds one of the process's own `total` slots (our bandwidth is per process)
only for those statements and the request itself, never while it sleeps, so a request waiting
for a busy host never holds a slot a request to an idle host could use. The wait for a turn is
short: at most `per_host` requests of the whole fleet contend for one host's turn, because each
holds one of its slots.

PostgreSQL only: SQLite serves one process, which HostGate already covers (bot.polling chooses).
Written by hand because no library coordinates request pacing through a database.

**Cost.** These statements run for every request of the fleet, so they are kept cheap and off
the event loop's back: each is one statement in autocommit (one round trip, no BEGIN and
COMMIT), sent with psycopg's asyncio connection from a small psycopg_pool pool of the gate's own,
so a worker waiting for the database goes on with its other polls (through the engine's
synchronous connections it would stall them all), and without SQLAlchemy's per-statement work,
which was a large share of a worker's CPU per poll in bench/scale. The SQL is written out as
text: a data-modifying WITH reads more plainly as SQL than as nested constructs. The pool opens
on first use and closes with `aclose()` (bot.app closes it with the app).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from feeds.politeness import SendSpacing, host_of

from .database_url import connect_arguments

log = logging.getLogger("wirewatch.fleet")

CLAIM_RETRY_SECONDS = (0.02, 0.05, 0.1, 0.2)
"""Pauses between attempts to claim a busy host's slot (then the last one, repeatedly)."""

POOL_SIZE = 4
"""Database connections of one gate: its statements take a fraction of a millisecond each."""

# The request's way in, as one statement: claim the host's lowest free slot and, only if one
# was claimed, take the host's turn. The outer SELECT sees the tables as they were before the
# statement (PostgreSQL's rule for data-modifying WITH), which is what the wait is computed from
# when the turn was not won, and what tells whether the host still lacks its slot rows.
_ENTER = """
WITH free AS (
    SELECT slot FROM host_slots
    WHERE host = %(host)s AND slot < %(per_host)s AND (owner IS NULL OR expires_at <= now())
    ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE host_slots SET owner = %(owner)s, expires_at = now() + %(hold)s
    FROM free WHERE host_slots.host = %(host)s AND host_slots.slot = free.slot
    RETURNING host_slots.slot
){turn}
SELECT
    (SELECT slot FROM claimed) AS slot,
    {won} AS won,
    (SELECT extract(epoch FROM last_start + %(delay)s - now()) FROM host_turns
     WHERE host = %(host)s) AS wait,
    (SELECT count(*) FROM host_slots WHERE host = %(host)s AND slot < %(per_host)s) AS slots
"""
_TURN = """, turn AS (
    INSERT INTO host_turns (host, last_start) SELECT %(host)s, now() FROM claimed
    ON CONFLICT (host) DO UPDATE SET last_start = now()
    WHERE host_turns.last_start <= now() - %(delay)s
    RETURNING host
)"""
_ENTER_SPACED = _ENTER.format(turn=_TURN, won="(SELECT count(*) FROM turn) > 0")
_ENTER_UNSPACED = _ENTER.format(turn="", won="true")
# A slot is held but the turn was lost: try the turn alone (the same compare-and-set).
_TURN_AGAIN = (
    "WITH claimed AS (SELECT 1)"
    + _TURN
    + """
SELECT (SELECT count(*) FROM turn) > 0 AS won,
    (SELECT extract(epoch FROM last_start + %(delay)s - now()) FROM host_turns
     WHERE host = %(host)s) AS wait
"""
)
# A host seen for the first time (or per_host raised): its slot rows.
_ADD_SLOTS = """
INSERT INTO host_slots (host, slot) SELECT %(host)s, generate_series(0, %(per_host)s - 1)
ON CONFLICT (host, slot) DO NOTHING
"""
_LEAVE = """
UPDATE host_slots SET owner = NULL, expires_at = NULL
WHERE host = %(host)s AND slot = %(slot)s AND owner = %(owner)s
"""


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
        self._owner = owner
        self._global = asyncio.Semaphore(total)
        self._per_host = per_host
        self._enter = _ENTER_SPACED if min_delay > 0 else _ENTER_UNSPACED
        self._params = {
            "owner": owner,
            "hold": hold,
            "delay": timedelta(seconds=min_delay),
            "per_host": per_host,
        }
        self._pool = AsyncConnectionPool(
            kwargs=_connect_arguments(engine),
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            name=f"host gate {owner}",
        )
        self._opening = asyncio.Lock()
        self._opened = False
        self._spacing = SendSpacing(min_delay)

    async def aclose(self) -> None:
        """Close the gate's connections (no request may be waiting on it any more)."""
        if self._opened:
            await self._pool.close()

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = host_of(url)
        number: int | None = None
        attempt = 0
        try:
            while True:
                async with self._global:
                    if number is None:
                        number, won, wait = await self._try_enter(host)
                    else:
                        won, wait = await self._try_turn(host)
                    if won:
                        yield
                        return
                if number is None:  # every slot of the host is busy: try again shortly
                    wait = CLAIM_RETRY_SECONDS[min(attempt, len(CLAIM_RETRY_SECONDS) - 1)]
                    attempt += 1
                await asyncio.sleep(wait)
        finally:
            if number is not None:
                await self._release_slot(host, number)

    async def sending(self, url: str) -> None:
        """Spaces this process's own requests as they leave (a redirect hop back to the host, a
        resend, a request that left late): the turn in the database spaces the fleet's starts."""
        await self._spacing.wait(url)

    def sent(self, url: str) -> None:
        self._spacing.sent(url)

    async def _execute(self, sql: str, **params: Any) -> tuple[Any, ...] | None:
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await self._pool.open()
                    self._opened = True
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, {**self._params, **params})
            return await cursor.fetchone() if cursor.description else None

    async def _try_enter(self, host: str) -> tuple[int | None, bool, float]:
        """Claim a slot and, with it, the host's turn: (slot or None, turn won, seconds to wait
        for the turn when it was not)."""
        row = await self._execute(self._enter, host=host)
        assert row is not None
        number, won, wait, slots = row
        if number is None and int(slots or 0) < self._per_host:
            # A host seen for the first time (or per_host raised): make its slots, claim again.
            await self._execute(_ADD_SLOTS, host=host)
            row = await self._execute(self._enter, host=host)
            assert row is not None
            number, won, wait, _ = row
        if number is None:
            return None, False, 0.0
        return int(number), bool(won), _at_least_a_moment(wait)

    async def _try_turn(self, host: str) -> tuple[bool, float]:
        row = await self._execute(_TURN_AGAIN, host=host)
        assert row is not None
        won, wait = row
        return bool(won), _at_least_a_moment(wait)

    async def _release_slot(self, host: str, number: int) -> None:
        try:
            await self._execute(_LEAVE, host=host, slot=number)
        except Exception:  # the slot's expiry frees it anyway; never fail the request for it
            log.exception("could not free request slot %d of %s", number, host)


def _connect_arguments(engine: Engine) -> dict[str, Any]:
    """What the engine's own connections are opened with (host, database, user, password,
    libpq options and bot.database_url's connect timeout), in autocommit."""
    _, arguments = engine.dialect.create_connect_args(engine.url)
    arguments = {key: value for key, value in arguments.items() if key != "context"}
    return {
        **arguments,
        **connect_arguments(engine.url),
        "autocommit": True,
        "row_factory": tuple_row,
    }


def _at_least_a_moment(seconds: Any) -> float:
    """Seconds until the turn may be taken; at least a little, since the other request's start
    may have been a moment ago (and the database's clock runs on between statements)."""
    return max(float(seconds or 0.0), CLAIM_RETRY_SECONDS[0])
