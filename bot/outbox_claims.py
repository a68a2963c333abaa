"""Claims on the alert outbox for many workers sharing one database: a lease per chat.

Many `wirewatch run` processes may deliver from one PostgreSQL outbox. What must hold across
all of them is what bot.delivery promises inside one: no alert sent twice, none lost when a
worker dies, each chat's alerts in order, and Telegram's per-chat limits (1 message a second,
20 a minute to a group). All of these are per chat, so the unit of a claim is the chat:

- **Lease a chat, then send its queue.** `ChatLeases.acquire` takes the chat's row in
  ``chat_leases`` with ``SELECT ... FOR UPDATE SKIP LOCKED`` (a worker never waits on another's
  claim; it goes on to other chats) and writes its owner id and an expiry. Only the holder sends
  to the chat, oldest first, so order and the per-chat limit hold fleet-wide.
- **Fenced claims.** Moving alerts to ``sending`` (`claim_leased`, through Store.claim_alerts)
  checks in the same transaction that the lease is still this worker's, and renews it. A worker
  that stalled past its expiry and lost the chat to another cannot claim again: it gets
  `LeaseLost` and leaves the chat. A send already in flight at that moment is the one overlap.
- **Heartbeat.** A live worker renews its leases (`renew`) well before they expire, so an
  expired lease means its owner died (or stalled for the whole lease). A worker's chats wait
  at most one lease period after its death.
- **Dead owners' alerts.** A dead holder's *pending* alerts were only planned, never claimed:
  they go to whoever takes the chat next. Its ``sending`` alerts may have reached Telegram, so
  they follow bot.delivery's at-most-once rule and become ``unknown``, but only once the owner
  is known dead: when another worker takes the chat after the lease expired (`acquire`), or when
  a sweep finds ``sending`` alerts of a chat nobody holds a live lease on (`recover_abandoned`).
  Nothing is settled merely because another process started.
- **Rate limits across a hand-over.** Every claim records its moment in the lease row
  (``recent_sends``, the last minute), moved to the moment Telegram answered once it did. A
  worker taking a chat over gets the previous holders' sends (`ChatLease.others_sends`) and
  counts them in its own throttle, so a group that just got 20 messages from one worker gets
  none from the next before the minute is over.

Telegram's overall limit (30 messages a second per bot) is paced by each process on its own
(bot.ratelimit): a fleet of N workers may send up to N × 30 a second in total. Telegram answers
the excess with 429 and ``retry_after``, which bot.delivery honours per chat (stored on the alert,
nothing lost). See README "Running several workers on PostgreSQL".

On SQLite, one process runs (bot.instance_lock refuses a second), so at start-up every lease in
the file belongs to a process that is gone: `recover_at_start` frees them and settles ``sending``
alerts at once, as before.

Written by hand rather than with a job-queue library: the queue is the outbox the rest of the
store already owns, and the claim must sit in the same transaction as its state change.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, Engine, exists, select, update

from .dialect import upsert_insert
from .schema import chat_leases, outbox

if TYPE_CHECKING:
    from .store import Store

LEASE_SECONDS = 60.0
"""Default lease length (`fleet.chat_lease`): a dead worker's chats are free this long after its
last renewal."""

SEND_MEMORY = timedelta(seconds=62)
"""How far back `recent_sends` remembers: Telegram's group window (60 s) and bot.ratelimit's
margin (1 s), plus a second for clocks of different machines."""

_FREE = ""
"""The owner of a released lease: nobody; any worker may take it at once."""


class LeaseLost(Exception):
    """This worker's lease on a chat was taken by another worker (ours had expired)."""


def new_owner() -> str:
    """An owner id unique to this process and run: host, pid and a random part (a pid can be
    reused after a restart; the lease of the dead process must not look like ours)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class ChatLease:
    """This worker may send to ``chat_id`` (the outbox queue's chat id)."""

    chat_id: int
    owner: str
    seconds: float
    others_sends: tuple[datetime, ...] = ()
    """Messages other workers sent to the chat in the last minute (for bot.ratelimit)."""
    recovered: int = 0
    """Alerts the previous (dead) holder left `sending`, settled `unknown` on taking the chat."""


@dataclass(frozen=True, slots=True)
class LeasedElsewhere:
    """Another worker holds the chat: until ``until``, or (None) it is claiming it right now."""

    chat_id: int
    until: datetime | None


class ChatLeases:
    """This worker's leases on chats; one per process (its owner id names the process)."""

    def __init__(
        self, engine: Engine, *, owner: str | None = None, seconds: float = LEASE_SECONDS
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"a lease must last more than 0 seconds, not {seconds}")
        self.engine = engine
        self.owner = owner or new_owner()
        self.seconds = seconds

    def acquire(self, chat_id: int, at: datetime) -> ChatLease | LeasedElsewhere:
        """Take the chat if it is free, expired, or already ours.

        Settles as `unknown` any `sending` alert of the chat when the lease passes from a dead
        (expired) or released holder to this one, in the same transaction.
        """
        with self.engine.begin() as connection:
            # A write first: on SQLite, a transaction that reads first cannot write later once
            # another connection committed (see bot.store); on PostgreSQL the row then exists to
            # be locked.
            connection.execute(
                upsert_insert(connection, chat_leases)
                .values(chat_id=chat_id, owner=_FREE, expires_at=at, recent_sends="[]")
                .on_conflict_do_nothing(index_elements=[chat_leases.c.chat_id])
            )
            row = connection.execute(
                select(chat_leases)
                .where(chat_leases.c.chat_id == chat_id)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if row is None:  # another worker's transaction holds the row: it is claiming it
                return LeasedElsewhere(chat_id, None)
            if row.owner not in (_FREE, self.owner) and row.expires_at > at:
                return LeasedElsewhere(chat_id, row.expires_at)
            connection.execute(
                update(chat_leases)
                .where(chat_leases.c.chat_id == chat_id)
                .values(owner=self.owner, expires_at=at + timedelta(seconds=self.seconds))
            )
            recovered = 0
            if row.owner != self.owner:
                recovered = _settle_interrupted(
                    connection, outbox.c.chat_id == chat_id, at, row.owner or "a stopped worker"
                )
            sends = _recent_sends(row.recent_sends, at)
        others = tuple(moment for moment, owner in sends if owner != self.owner)
        return ChatLease(chat_id, self.owner, self.seconds, others, recovered)

    def renew(self, at: datetime) -> int:
        """Push back the expiry of every lease this worker holds; how many it holds.

        A lease that expired without being taken is still this worker's and is renewed too;
        one another worker took is not (its owner changed)."""
        with self.engine.begin() as connection:
            return connection.execute(
                update(chat_leases)
                .where(chat_leases.c.owner == self.owner)
                .values(expires_at=at + timedelta(seconds=self.seconds))
            ).rowcount

    def release(self, chat_id: int, at: datetime) -> None:
        """Give the chat back: any worker may take it at once (its recent sends stay)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(chat_leases)
                .where(chat_leases.c.chat_id == chat_id, chat_leases.c.owner == self.owner)
                .values(owner=_FREE, expires_at=at)
            )

    def note_sent(self, chat_id: int, at: datetime) -> None:
        """Telegram answered the message this worker claimed last for the chat: move its
        moment in ``recent_sends`` from the claim to ``at``, an upper bound of its arrival, so
        the next holder's spacing never counts from too early (a slow claim commit).

        Skipped on SQLite: its one process knows its own sends, and a restart takes longer than
        the spacing this refines, so the claim's moment is enough there and a commit (a disk
        sync) per message is saved."""
        if self.engine.dialect.name == "sqlite":
            return
        with self.engine.begin() as connection:
            mine = chat_leases.c.chat_id == chat_id, chat_leases.c.owner == self.owner
            # A write first, for SQLite (see acquire); nothing to do once the chat is not ours.
            claim_row = update(chat_leases).where(*mine).values(owner=chat_leases.c.owner)
            if connection.execute(claim_row).rowcount != 1:
                return
            stored = connection.scalar(select(chat_leases.c.recent_sends).where(*mine))
            sends = _recent_sends(stored or "[]", at)
            for index in range(len(sends) - 1, -1, -1):
                if sends[index][1] == self.owner:
                    sends[index] = (max(at, sends[index][0]), self.owner)
                    break
            connection.execute(
                update(chat_leases).where(*mine).values(recent_sends=_dump_sends(sends))
            )

    def recover_abandoned(self, at: datetime) -> int:
        """Settle as `unknown` the `sending` alerts of chats no live lease covers: their sender
        died (its lease expired) or stopped mid-send (it released the chat). Returns how many.

        A claim needs a live lease on the chat, and a live sender renews its lease until it
        settles its send, so a live sender's alert is never touched."""
        live = exists().where(
            chat_leases.c.chat_id == outbox.c.chat_id,
            chat_leases.c.owner != _FREE,
            chat_leases.c.expires_at > at,
        )
        with self.engine.begin() as connection:
            return _settle_interrupted(connection, ~live, at, "a worker whose lease expired")

    def free_all(self, at: datetime) -> int:
        """Release every lease, whoever holds it: only when no other process can be running
        (SQLite, under bot.instance_lock). Returns how many were held."""
        with self.engine.begin() as connection:
            return connection.execute(
                update(chat_leases)
                .where(chat_leases.c.owner != _FREE)
                .values(owner=_FREE, expires_at=at)
            ).rowcount


def claim_leased(
    connection: Connection, alert_ids: list[int], at: datetime, lease: ChatLease
) -> list[int]:
    """Move those of ``alert_ids`` that are still pending to `sending` for ``lease``'s owner,
    if the lease is still the owner's (renewing it); returns the ids claimed.

    Raises LeaseLost when another worker took the chat: this one must stop sending to it."""
    renewed = connection.execute(
        update(chat_leases)
        .where(chat_leases.c.chat_id == lease.chat_id, chat_leases.c.owner == lease.owner)
        .values(expires_at=at + timedelta(seconds=lease.seconds))
    ).rowcount
    if renewed != 1:
        raise LeaseLost(f"chat {lease.chat_id} is now delivered by another worker")
    claimed = set(
        connection.scalars(
            update(outbox)
            .where(
                outbox.c.id.in_(alert_ids),
                outbox.c.chat_id == lease.chat_id,
                outbox.c.status == "pending",
            )
            .values(status="sending", updated_at=at, claimed_by=lease.owner)
            .returning(outbox.c.id)
        ).all()
    )
    if claimed:
        stored = connection.scalar(
            select(chat_leases.c.recent_sends).where(chat_leases.c.chat_id == lease.chat_id)
        )
        sends = [*_recent_sends(stored or "[]", at), (at, lease.owner)]
        connection.execute(
            update(chat_leases)
            .where(chat_leases.c.chat_id == lease.chat_id)
            .values(recent_sends=_dump_sends(sends))
        )
    return [alert_id for alert_id in alert_ids if alert_id in claimed]


def recover_at_start(store: Store, at: datetime) -> int:
    """What start-up may settle: on SQLite (one process, bot.instance_lock), every lease and
    every `sending` alert belongs to a process that is gone; on PostgreSQL nothing, because
    other workers may be sending right now (their dead peers are found by lease expiry)."""
    if store.engine.dialect.name != "sqlite":
        return 0
    ChatLeases(store.engine).free_all(at)
    return store.recover_interrupted_alerts(at)


def _settle_interrupted(
    connection: Connection, which: ColumnElement[bool], at: datetime, whose: str
) -> int:
    statement = (
        update(outbox)
        .where(outbox.c.status == "sending", which)
        .values(status="unknown", updated_at=at, last_error=f"interrupted while sending ({whose})")
    )
    return connection.execute(statement).rowcount


def _recent_sends(stored: str, at: datetime) -> list[tuple[datetime, str]]:
    """The sends in ``stored`` (JSON [[POSIX seconds, owner], ...]) within SEND_MEMORY of ``at``."""
    since = at - SEND_MEMORY
    sends = []
    for seconds, owner in json.loads(stored):
        moment = datetime.fromtimestamp(float(seconds), UTC)
        if moment > since:
            sends.append((moment, str(owner)))
    return sends


def _dump_sends(sends: list[tuple[datetime, str]]) -> str:
    return json.dumps([[round(moment.timestamp(), 3), owner] for moment, owner in sends])


