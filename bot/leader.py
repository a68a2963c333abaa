"""The one process of a fleet that reads Telegram updates: a PostgreSQL advisory lock.

Telegram allows one getUpdates caller per bot token (a second gets 409 Conflict), so of all the
`wirewatch run` processes sharing a database exactly one answers chat commands. It is the one
holding a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own, kept
open for as long as it leads. The database frees the lock when that session ends, however it
ends: a clean stop, a killed process (the kernel closes its socket), or a lost network (TCP
keepalives, switched on for this session at both ends, notice within seconds). The others try
again every ``retry`` seconds, and the first to get the lock leads.

The leader checks its connection every ``retry`` seconds too; when the check fails it steps down
at once (stops its duties) and tries again like any other process. Between the server freeing
the lock and the old leader noticing, two processes may poll Telegram for up to ``retry``
seconds: Telegram answers one of them 409, python-telegram-bot logs it and retries, no update
is lost (an update is confirmed only by the next getUpdates of whoever reads it).

Digests need no leader: each chat's digest is composed and sent by the worker holding that
chat's lease (bot.outbox_claims), the same as its single alerts, so it goes once and in order.

On SQLite a second process is refused outright (bot.instance_lock), so the one process leads
from the start and never steps down.

The lock key is derived from a fixed name; advisory locks are per database, so two deployments
in different databases of one server do not contend.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from .database_url import connect_arguments
from .database_url import parse as parse_database_url

log = logging.getLogger("wirewatch.leader")

LOCK_NAME = "wirewatch: reads Telegram updates"
LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
"""The advisory lock's 64-bit key (signed, as PostgreSQL's bigint)."""

_KEEPALIVE: dict[str, object] = {
    # This side (libpq): notice a dead connection instead of waiting on it for many minutes.
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    # The server's side of this session: notice a vanished leader and free its lock.
    "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
}
"""TCP keepalives for the lock's connection, both ways: a leader cut off by the network without
a close loses the lock, and notices it lost it, within about 11 seconds (not the operating
system's default of two hours)."""


class Leadership:
    """Who leads: ``run`` takes the lock when it can, and calls ``lead`` on becoming leader and
    ``follow`` on losing it (including at the end of ``run``)."""

    def __init__(
        self,
        database: str,
        *,
        retry: float = 5.0,
        lead: Callable[[], Awaitable[object]],
        follow: Callable[[], Awaitable[object]],
    ) -> None:
        if retry <= 0:
            raise ValueError(f"retry must be more than 0 seconds, not {retry}")
        url = parse_database_url(database)
        self._engine: Engine | None = None
        if url.get_backend_name() == "postgresql":
            self._engine = create_engine(
                url, poolclass=NullPool, connect_args={**connect_arguments(url), **_KEEPALIVE}
            )
        self.retry = retry
        self._lead = lead
        self._follow = follow
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.leading = False
        self.backend_pid: int | None = None
        """The PostgreSQL server process of the lock's session while leading (for operators
        and tests: ending that process is how a lost connection looks)."""

    def start(self, stop: asyncio.Event) -> None:
        """Run in the background until ``stop`` is set (see `finish`)."""
        self._task = asyncio.create_task(self.run(stop))

    async def finish(self, grace: float) -> None:
        """After ``stop`` was set: wait up to ``grace`` seconds for `run` to step down (a lock
        attempt may be waiting on the network), then cancel it."""
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
        if not self._task.cancelled() and self._task.exception() is not None:
            log.error("the leader lock failed", exc_info=self._task.exception())

    async def run(self, stop: asyncio.Event) -> None:
        """Lead when possible until ``stop`` is set; always ends as a follower."""
        try:
            while not stop.is_set():
                if self.leading:
                    if not await asyncio.to_thread(self._still_holding):
                        log.warning("lost the leader lock: no longer reading Telegram updates")
                        await self._step_down()
                elif await asyncio.to_thread(self._try_lock):
                    log.info("this process leads: it reads Telegram updates")
                    self.leading = True
                    await self._lead()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry)
        finally:
            if self.leading:
                await self._step_down()
            if self._engine is not None:
                self._engine.dispose()

    async def _step_down(self) -> None:
        self.leading = False
        try:
            await self._follow()
        finally:
            await asyncio.to_thread(self._disconnect)

    def _try_lock(self) -> bool:
        """One attempt; True when this process now holds the lock (always on SQLite)."""
        if self._engine is None:
            return True
        try:
            connection = self._engine.connect()
        except Exception as error:  # the database is away: try again next time
            log.warning("cannot reach the database for the leader lock: %s", error)
            return False
        try:
            taken, pid = connection.execute(
                text("SELECT pg_try_advisory_lock(:key), pg_backend_pid()"), {"key": LOCK_KEY}
            ).one()
            connection.commit()  # the lock is the session's; the transaction must not linger
        except Exception as error:
            log.warning("cannot take the leader lock: %s", error)
            connection.close()
            return False
        if not taken:
            connection.close()
            return False
        self._connection = connection
        self.backend_pid = int(pid)
        return True

    def _still_holding(self) -> bool:
        """Whether the lock's session is alive (the lock lives exactly as long as it)."""
        if self._connection is None:
            return self._engine is None
        try:
            self._connection.exec_driver_sql("SELECT 1")
            self._connection.commit()
        except Exception as error:
            log.warning("the leader lock's connection failed: %s", error)
            return False
        return True

    def _disconnect(self) -> None:
        self.backend_pid = None
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
