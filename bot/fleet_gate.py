"""Per-host politeness for a whole fleet of workers, kept in PostgreSQL.

The same three limits as feeds.politeness.HostGate (`total` in flight per process, `per_host` in
flight per host, `min_delay` between the starts of two requests to one host), except that the two
per-host limits hold for every worker sharing the database together, so a site sees the fleet as
one polite client:

- per-host concurrency: a host has `per_host` numbered rows in ``host_slots``; a request claims a
  free one (``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait for each other) and frees
  it when done. A claim carries an expiry, so a slot held by a worker killed mid-request comes back
  once `hold` has passed;
- spacing: ``host_turns`` holds when the host's last request started, at the latest. A request
  starts only by moving that instant to just after now with one compare-and-set, ``INSERT ...
  ON CONFLICT DO UPDATE SET last_start = now() + moment WHERE last_start <= now() - delay
  RETURNING``: of two workers trying at once, one wins and the other sleeps until a delay after
  the winner's stamp. Judged by the database's clock, whatever the workers' clocks say. The
  moment (TURN_MOMENT_SHARE of the delay) is the time the winner has to start. A request that
  cannot start within it (its answer came late, behind a busy event loop or a slow database)
  first moves its turn's stamp to now + a moment, with one statement that succeeds only while
  the stamp is still its own (no one else can take the host's turn before a delay after it),
  and doubles the moment if that answer was late too. So a request that starts late never
  reaches the site less than a delay before the fleet's next one. A turn is never reserved
  further ahead: a chain of reservations (next start = previous reservation + delay) would let
  a request that left late arrive just before the next one.

**A line per host.** When a site's limits bind, requests from the whole fleet wait for its
slots and turns, and without order the first to ask again after a slot frees wins: in
tests/test_fleet.py a feed lost that race for 17 s while five others of its site were polled
three times each. So a request that cannot start at once stands in the host's line
(``host_waiters``) with the instant it first asked, by the database's clock, or its source's
due time if it has one (WAITING_SINCE), and every statement that takes a slot or the turn first
checks that nobody who came earlier is still waiting: the site's requests start in that order,
fleet-wide, and a source whose worker died while it waited is not sent to the back. A place
lapses when its request stops renewing it (its worker died, its poll was cancelled), so a dead
request holds the line up for PLACE_KEPT_SECONDS beyond its longest pause at most. A request
that holds a slot but finds someone earlier in the line hands the slot back (a source long due
may ask after it took the host's last slot: each would wait for the other). The request that
starts leaves the line, and clears the host's lapsed places with it. Requests that start at
once never stand in it.

As in HostGate, a request takes its host's slot first and its turn after (in one statement when
both are free), and holds one of the process's own `total` slots (our bandwidth is per process)
only for those statements and the request itself, never while it sleeps, so a request waiting
for a busy host never holds a slot a request to an idle host could use. The wait for a turn is
short: at most `per_host` requests of the whole fleet contend for one host's turn, because each
holds one of its slots.

**Ahead of a claim's polls.** bot.fleet claims a few due sources at a time; `enter_ahead` then
takes a slot and the turn for all their hosts in one statement, and the first request to each of
those hosts passes without a statement of its own. Its turn is stamped like any other, and a
request that comes after the moment moves the stamp on as above. Finished requests' slots are
freed together, one statement every FREE_GATHER_SECONDS at most. Before these two, the gate's
two statements per request were most of the database's work per poll in bench/scale, and its
share of a poll is what bounds how much a second worker adds on one machine.

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
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
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

FREE_GATHER_SECONDS = 0.02
"""How long a finished request's slot waits, to be freed with others in one statement: a slot
held a moment longer costs a site nothing, a statement per request cost the database most of
its share of a poll in bench/scale."""

WAITING_SINCE: ContextVar[datetime | None] = ContextVar("waiting_since", default=None)
"""Since when the requests made in this context have been wanted: bot.fleet sets a source's
due time around its poll, so a poll takes its place in its host's line ahead of polls that came
due later, whichever worker asked first (a source taken over from a worker that died waiting
for its host goes to the front). None: since the request first asks."""

PLACE_KEPT_SECONDS = 1.0
"""How long a request's place in its host's line outlasts the longest pause between its
statements (a retry, or a wait for the turn: a delay and a moment) before it lapses: a request
that went away (its worker died, its poll was cancelled) holds up those behind it that long."""

AHEAD_KEPT_SECONDS = 2.0
"""How long a slot entered ahead waits for its request before it is freed unused."""

TURN_MOMENT_SHARE = 0.1
"""A turn's moment, as a share of the host delay: the turn is stamped that far after the
statement that won it, and its request must start within it after asking, or move the stamp on
first (the fleet's next request may start a delay after the stamp). Spaced requests to one
host are thus a delay and up to a moment apart."""

KEYED_PLANS = (
    "-c plan_cache_mode=force_generic_plan"
    " -c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off"
)
"""libpq options of the gate's own connections: each statement planned once per connection, as
index lookups in nested loops.

Every gate statement finds a few hosts' rows by primary key (or the line's (host, since)
index), so that plan is right whatever the tables hold. Left to choose, PostgreSQL planned the
entry ahead again on every call (a plan made for the call's own host array looked cheaper than
a generic one), and planning took longer than running it: 0.26 ms against 0.17 ms per call in
bench/scale, a fifth of the database's CPU per poll (pg_stat_statements with track_planning).
Generic plans alone were worse: one made while ``host_slots`` was still empty scans it in full
for as long as the connection lives (0.43 ms per call). Nested loops over indexes hold however
full the tables are when the plan is made: 0.15 ms per call, planned 36 times in a round of
2,600 calls, and the batched slot release fell from 0.31 to 0.10 ms."""

# Every statement by which a request asks for its host first looks down the host's line
# (``host_waiters``): a request that asked later than someone still waiting takes neither a slot
# nor the turn. `since` is the request's place: its source's due time, or when it first asked
# (null the first time: now).
_LINE = """WITH asked AS (SELECT coalesce(%(since)s::timestamptz, now()) AS since),
ahead AS (
    SELECT 1 FROM host_waiters, asked
    WHERE host_waiters.host = %(host)s AND host_waiters.expires_at > now()
        AND (host_waiters.since, host_waiters.waiter) < (asked.since, %(waiter)s)
    LIMIT 1
)"""
# A request that did not start (`{entered}` is empty) stands in the line, or renews its place
# there; one that did leaves it, and takes the host's lapsed places (their requests went away)
# with it.
_WAITING = """, waiting AS (
    INSERT INTO host_waiters (waiter, host, since, expires_at)
    SELECT %(waiter)s, %(host)s, asked.since, now() + %(patience)s FROM asked
    WHERE NOT EXISTS (SELECT 1 FROM {entered})
    ON CONFLICT (waiter) DO UPDATE SET expires_at = excluded.expires_at
), started AS (
    DELETE FROM host_waiters
    WHERE host = %(host)s AND (waiter = %(waiter)s OR expires_at <= now())
        AND EXISTS (SELECT 1 FROM {entered})
)"""
# The request's way in, as one statement: unless someone who asked earlier is waiting, claim
# the host's lowest free slot and, only if one was claimed, take the host's turn. The outer
# SELECT sees the tables as they were before the statement (PostgreSQL's rule for
# data-modifying WITH), which is what the wait is computed from when the turn was not won, and
# what tells whether the host still lacks its slot rows.
_ENTER = (
    _LINE
    + """, free AS (
    SELECT slot FROM host_slots
    WHERE host = %(host)s AND slot < %(per_host)s AND (owner IS NULL OR expires_at <= now())
        AND NOT EXISTS (SELECT 1 FROM ahead)
    ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE host_slots SET owner = %(owner)s, expires_at = now() + %(hold)s
    FROM free WHERE host_slots.host = %(host)s AND host_slots.slot = free.slot
    RETURNING host_slots.host, host_slots.slot
){turn}{waiting}
SELECT
    (SELECT slot FROM claimed) AS slot,
    {won} AS won,
    (SELECT extract(epoch FROM last_start + %(delay)s - now()) FROM host_turns
     WHERE host = %(host)s) AS wait,
    (SELECT count(*) FROM host_slots WHERE host = %(host)s AND slot < %(per_host)s) AS slots,
    {stamp} AS stamp,
    (SELECT since FROM asked) AS since,
    EXISTS (SELECT 1 FROM ahead) AS queued
"""
)
# The turn of each host in `claimed`, stamped at the last moment its request may start (`fresh`,
# after the statement): the fleet's next request to the host then starts a delay after that at
# the earliest.
_TURN = """, turn AS (
    INSERT INTO host_turns (host, last_start) SELECT host, now() + %(fresh)s FROM claimed
    ON CONFLICT (host) DO UPDATE SET last_start = now() + %(fresh)s
    WHERE host_turns.last_start <= now() - %(delay)s
    RETURNING host, last_start
)"""
_ENTER_SPACED = _ENTER.format(
    turn=_TURN,
    waiting=_WAITING.format(entered="turn"),
    won="(SELECT count(*) FROM turn) > 0",
    stamp="(SELECT last_start FROM turn)",
)
_ENTER_UNSPACED = _ENTER.format(
    turn="", waiting=_WAITING.format(entered="claimed"), won="true", stamp="NULL"
)
# A slot is held but the turn was lost: try the turn alone (the same compare-and-set), unless
# someone who asked earlier is waiting.
_TURN_AGAIN = (
    _LINE
    + ", claimed AS (SELECT %(host)s AS host WHERE NOT EXISTS (SELECT 1 FROM ahead))"
    + _TURN
    + _WAITING.format(entered="turn")
    + """
SELECT (SELECT count(*) FROM turn) > 0 AS won,
    (SELECT extract(epoch FROM last_start + %(delay)s - now()) FROM host_turns
     WHERE host = %(host)s) AS wait,
    (SELECT last_start FROM turn) AS stamp,
    EXISTS (SELECT 1 FROM ahead) AS queued
"""
)
# A turn won whose request could not start within its moment: no one else can take the host's
# turn before a delay after its stamp, so the winner moves the stamp on, if it is still its own.
_RENEW = """
UPDATE host_turns SET last_start = now() + %(fresh)s
WHERE host = %(host)s AND last_start = %(stamp)s
RETURNING last_start
"""
# Hosts seen for the first time (or per_host raised): their slot rows.
_ADD_SLOTS = """
INSERT INTO host_slots (host, slot)
SELECT host, generate_series(0, %(per_host)s - 1) FROM unnest(%(hosts)s::text[]) AS host
ON CONFLICT (host, slot) DO NOTHING
"""
# The way in for several hosts at once, ahead of their requests (`enter_ahead`): per host the
# same claim of its lowest free slot, unless a request is waiting in the host's line, and with
# it the same compare-and-set of its turn.
_ENTER_AHEAD = """
WITH wanted AS (SELECT unnest(%(hosts)s::text[]) AS host),
free AS (
    SELECT wanted.host, lowest.slot FROM wanted CROSS JOIN LATERAL (
        SELECT slot FROM host_slots
        WHERE host = wanted.host AND slot < %(per_host)s
            AND (owner IS NULL OR expires_at <= now())
            AND NOT EXISTS (
                SELECT 1 FROM host_waiters
                WHERE host_waiters.host = wanted.host AND host_waiters.expires_at > now()
            )
        ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
    ) AS lowest
), claimed AS (
    UPDATE host_slots SET owner = %(owner)s, expires_at = now() + %(hold)s
    FROM free WHERE host_slots.host = free.host AND host_slots.slot = free.slot
    RETURNING host_slots.host, host_slots.slot
){turn}
SELECT wanted.host, claimed.slot,
    {won} AS won,
    (SELECT extract(epoch FROM last_start + %(delay)s - now()) FROM host_turns
     WHERE host_turns.host = wanted.host) AS wait,
    (SELECT count(*) FROM host_slots
     WHERE host_slots.host = wanted.host AND slot < %(per_host)s) AS slots,
    {stamp} AS stamp,
    now() AS since
FROM wanted LEFT JOIN claimed ON claimed.host = wanted.host
"""
_ENTER_AHEAD_SPACED = _ENTER_AHEAD.format(
    turn=_TURN,
    won="claimed.slot IS NOT NULL AND wanted.host IN (SELECT host FROM turn)",
    stamp="(SELECT last_start FROM turn WHERE turn.host = wanted.host)",
)
_ENTER_AHEAD_UNSPACED = _ENTER_AHEAD.format(
    turn="", won="claimed.slot IS NOT NULL", stamp="NULL"
)
_LEAVE = """
UPDATE host_slots SET owner = NULL, expires_at = NULL
FROM unnest(%(hosts)s::text[], %(slots)s::integer[]) AS freed (host, slot)
WHERE host_slots.host = freed.host AND host_slots.slot = freed.slot
    AND host_slots.owner = %(owner)s
"""


@dataclass(frozen=True, slots=True)
class _Turn:
    """A host's turn, won: its request may start until `moment` after `asked`."""

    asked: float
    """time.monotonic() before the statement that won it was sent."""
    stamp: Any
    """The turn's instant in ``host_turns`` (None when requests are not spaced)."""
    moment: float

    def startable(self) -> bool:
        return time.monotonic() - self.asked <= self.moment


@dataclass(slots=True)
class _Waiter:
    """A request's place in its host's line: its name there, and its place (its source's due
    time, else when it first asked by the database's clock; None before its first statement)."""

    name: str
    since: datetime | None

    def asking(self, host: str, moment: float) -> dict[str, Any]:
        """The parameters by which it asks for `host`'s slot or turn, stamped `moment` ahead."""
        return {"host": host, "fresh": _seconds(moment), "waiter": self.name, "since": self.since}


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A host's slot claimed ahead of its request (`FleetHostGate.enter_ahead`)."""

    slot: int
    turn: _Turn | None
    """The host's turn, when it was won with the slot."""
    wait: float
    """When it was not: seconds until it may be, as of `asked`."""
    asked: float
    since: datetime
    """When the slot was claimed, by the database's clock: the request's place in its host's
    line if it has to wait for the turn."""


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
        self._enter_ahead = _ENTER_AHEAD_SPACED if min_delay > 0 else _ENTER_AHEAD_UNSPACED
        self._moment = TURN_MOMENT_SHARE * min_delay if min_delay > 0 else float("inf")
        self._ahead: dict[str, _Ahead] = {}
        self._requests = itertools.count()
        self._to_free: list[tuple[str, int]] = []
        self._freeing: asyncio.Task[None] | None = None
        self._params = {
            "owner": owner,
            "hold": hold,
            "delay": timedelta(seconds=min_delay),
            "per_host": per_host,
            "patience": timedelta(
                seconds=min_delay * (1 + TURN_MOMENT_SHARE) + PLACE_KEPT_SECONDS
            ),
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
        """Free the slots entered ahead and unused, and close the gate's connections (no
        request may be waiting on it any more)."""
        for host in list(self._ahead):
            self._free_unused(host, self._ahead[host])
        if self._freeing is not None:
            await self._freeing
        if self._opened:
            await self._pool.close()

    async def enter_ahead(self, urls: Iterable[str]) -> None:
        """Claim a slot and the turn of each URL's host in one statement, for requests about to
        start: the next request to that host passes the gate without a statement of its own.

        bot.fleet calls this with the feeds a claim just leased: one statement for the claim's
        hosts instead of one per poll, which was the database's largest share of a poll in
        bench/scale. A host whose slots are all busy, or that already has a slot entered ahead,
        is left to its request's own way in. A slot entered ahead and not used within
        AHEAD_KEPT_SECONDS is freed.
        """
        hosts = sorted({host_of(url) for url in urls} - self._ahead.keys())
        if not hosts:
            return
        asked = time.monotonic()
        fresh = _seconds(self._moment)
        rows = await self._execute_all(self._enter_ahead, hosts=hosts, fresh=fresh)
        unmade = [row[0] for row in rows if row[1] is None and not row[4]]
        if unmade:  # hosts seen for the first time: make their slots, claim those again
            await self._execute(_ADD_SLOTS, hosts=unmade)
            asked = time.monotonic()
            rows = [row for row in rows if row[0] not in unmade]
            rows += await self._execute_all(self._enter_ahead, hosts=unmade, fresh=fresh)
        loop = asyncio.get_running_loop()
        for host, number, won, wait, _, stamp, since in rows:
            if number is None:
                continue
            turn = _Turn(asked, stamp, self._moment) if won else None
            ahead = _Ahead(
                int(number), turn, 0.0 if won else _at_least_a_moment(wait), asked, since
            )
            self._ahead[host] = ahead
            loop.call_later(AHEAD_KEPT_SECONDS, self._free_unused, host, ahead)

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = host_of(url)
        ahead = self._ahead.pop(host, None)
        number = None if ahead is None else ahead.slot
        turn = None if ahead is None else ahead.turn
        since = WAITING_SINCE.get() or (None if ahead is None else ahead.since)
        waiter = _Waiter(f"{self._owner}/{next(self._requests)}", since)
        moment = self._moment
        attempt = 0
        try:
            if ahead is not None and turn is None:
                await asyncio.sleep(max(0.0, ahead.asked + ahead.wait - time.monotonic()))
            while True:
                wait, queued = 0.0, False
                async with self._global:
                    if turn is not None and not turn.startable():
                        # Won, but this request could not start within the turn's moment (it
                        # came late, or the answer did): move the turn's stamp on while it is
                        # ours, with a moment long enough for answers as slow as the last.
                        turn = await self._renew(host, turn, moment)
                        if turn is not None and not turn.startable():
                            moment = max(2 * moment, 2 * (time.monotonic() - turn.asked))
                    elif turn is None:
                        if number is None:
                            number, turn, wait, queued = await self._try_enter(
                                host, moment, waiter
                            )
                        else:
                            turn, wait, queued = await self._try_turn(host, moment, waiter)
                            if queued:
                                # Someone who came earlier waits, maybe for this very slot (a
                                # source long due asked after this one took it): hand it back,
                                # keep the place in line.
                                self._free(host, number)
                                number = None
                        if turn is not None and not turn.startable():
                            moment = max(2 * moment, 2 * (time.monotonic() - turn.asked))
                    if turn is not None and turn.startable():
                        yield
                        return
                if number is None or queued:  # busy slots, or others first: try again shortly
                    pause = CLAIM_RETRY_SECONDS[min(attempt, len(CLAIM_RETRY_SECONDS) - 1)]
                    wait = max(wait, pause)
                    attempt += 1
                await asyncio.sleep(wait)
        finally:
            if number is not None:
                self._free(host, number)

    async def sending(self, url: str) -> None:
        """Spaces this process's own requests as they leave (a redirect hop back to the host, a
        resend, a request that left late): the turn in the database spaces the fleet's starts."""
        await self._spacing.wait(url)

    def sent(self, url: str) -> None:
        self._spacing.sent(url)

    def _free_unused(self, host: str, ahead: _Ahead) -> None:
        if self._ahead.get(host) is not ahead:
            return  # used (or replaced) meanwhile
        del self._ahead[host]
        self._free(host, ahead.slot)

    def _free(self, host: str, number: int) -> None:
        """Free the slot with the others finished within FREE_GATHER_SECONDS (the slot's hold
        frees it anyway if the statement fails or the process dies first)."""
        self._to_free.append((host, number))
        if self._freeing is None or self._freeing.done():
            self._freeing = asyncio.get_running_loop().create_task(self._free_gathered())

    async def _free_gathered(self) -> None:
        while self._to_free:
            await asyncio.sleep(FREE_GATHER_SECONDS)
            gathered, self._to_free = self._to_free, []
            try:
                await self._execute(
                    _LEAVE,
                    hosts=[host for host, _ in gathered],
                    slots=[number for _, number in gathered],
                )
            except Exception:  # never fail a request for it
                log.exception("could not free %d request slot(s)", len(gathered))

    async def _open(self) -> None:
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await self._pool.open()
                    self._opened = True

    async def _execute(self, sql: str, **params: Any) -> tuple[Any, ...] | None:
        """The statement's first row (None: no row, or a statement that returns none)."""
        rows = await self._execute_all(sql, **params)
        return rows[0] if rows else None

    async def _execute_all(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        await self._open()
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, {**self._params, **params})
            return await cursor.fetchall() if cursor.description else []

    async def _try_enter(
        self, host: str, moment: float, waiter: _Waiter
    ) -> tuple[int | None, _Turn | None, float, bool]:
        """Claim a slot and, with it, the host's turn stamped `moment` ahead, unless others who
        asked first are waiting: (slot or None, the turn if won, seconds to wait for it when it
        was not, whether others are first). Stands in the host's line until it is in."""
        asked = time.monotonic()
        params = waiter.asking(host, moment)
        row = await self._execute(self._enter, **params)
        assert row is not None
        number, won, wait, slots, stamp, since, queued = row
        if number is None and not queued and int(slots or 0) < self._per_host:
            # A host seen for the first time (or per_host raised): make its slots, claim again.
            await self._execute(_ADD_SLOTS, hosts=[host])
            row = await self._execute(self._enter, **{**params, "since": since})
            assert row is not None
            number, won, wait, _, stamp, since, queued = row
        waiter.since = since
        if number is None:
            return None, None, 0.0, bool(queued)
        if won:
            return int(number), _Turn(asked, stamp, moment), 0.0, False
        return int(number), None, _at_least_a_moment(wait), bool(queued)

    async def _try_turn(
        self, host: str, moment: float, waiter: _Waiter
    ) -> tuple[_Turn | None, float, bool]:
        asked = time.monotonic()
        row = await self._execute(_TURN_AGAIN, **waiter.asking(host, moment))
        assert row is not None
        won, wait, stamp, queued = row
        if won:
            return _Turn(asked, stamp, moment), 0.0, False
        return None, _at_least_a_moment(wait), bool(queued)

    async def _renew(self, host: str, turn: _Turn, moment: float) -> _Turn | None:
        """The turn with its stamp moved to `moment` from now; None if it is no longer ours."""
        asked = time.monotonic()
        row = await self._execute(_RENEW, host=host, stamp=turn.stamp, fresh=_seconds(moment))
        return None if row is None else _Turn(asked, row[0], moment)


def _connect_arguments(engine: Engine) -> dict[str, Any]:
    """What the engine's own connections are opened with (host, database, user, password,
    libpq options and bot.database_url's connect timeout), in autocommit, planned as
    KEYED_PLANS says."""
    _, arguments = engine.dialect.create_connect_args(engine.url)
    arguments = {key: value for key, value in arguments.items() if key != "context"}
    options = " ".join(part for part in (arguments.get("options"), KEYED_PLANS) if part)
    return {
        **arguments,
        **connect_arguments(engine.url),
        "options": options,
        "autocommit": True,
        "row_factory": tuple_row,
    }


def _seconds(moment: float) -> timedelta:
    """A moment as the stamp's interval (none when requests are not spaced)."""
    return timedelta(seconds=moment) if moment != float("inf") else timedelta(0)


def _at_least_a_moment(seconds: Any) -> float:
    """Seconds until the turn may be taken; at least a little, since the other request's start
    may have been a moment ago (and the database's clock runs on between statements)."""
    return max(float(seconds or 0.0), CLAIM_RETRY_SECONDS[0])
