"""The outbox bound: no chat's queue of waiting alerts grows past ``telegram.max_pending_per_chat``.

A flood of news while Telegram is unreachable (or a chat is held back by retry_after) would
otherwise grow the outbox without limit. Past the cap, the *oldest* pending alerts of the chat are
folded: their rows are removed, their number is added to the chat's ``folded_alerts``, and the
chat is put into burst mode (bot.digest), so that what is left goes as digests. The next digest the
chat gets opens with a line saying how many alerts were folded out and that they are in the Atom
feeds (their articles and matches are untouched), and the count is cleared once that digest went.
Nothing is lost silently: every folded alert is counted, logged and reported to the chat.

The newest alerts are kept rather than the oldest, because in a flood the newest are what a reader
can still act on. An alert being sent (``sending``) is never folded.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine, case, delete, func, select, update

from .dialect import upsert_insert as _insert
from .schema import chat_states, outbox

log = logging.getLogger("wirewatch.outbox")

_CHUNK = 500
"""Bound on parameters per IN (...) (see bot.store)."""


def fold_overflow(engine: Engine, cap: int, now: datetime) -> dict[int, int]:
    """Fold every chat's pending alerts beyond `cap`, oldest first; chat id → alerts folded.

    A read decides whether there is anything to do (nearly never), so the usual call costs one
    indexed count and no write lock."""
    pending = outbox.c.status == "pending"
    over_cap = (
        select(outbox.c.chat_id, func.count())
        .where(pending)
        .group_by(outbox.c.chat_id)
        .having(func.count() > cap)
    )
    with engine.connect() as connection:
        if not connection.execute(over_cap).first():
            return {}
    folded: dict[int, int] = {}
    with engine.begin() as connection:
        # A write first (bot.store: on SQLite a transaction must take the write lock before it
        # reads); it changes no row.
        connection.execute(
            update(chat_states).where(chat_states.c.chat_id.is_(None)).values(updated_at=now)
        )
        for chat_id, count in connection.execute(over_cap).all():
            ids = list(
                connection.scalars(
                    select(outbox.c.id)
                    .where(pending, outbox.c.chat_id == chat_id)
                    .order_by(outbox.c.created_at, outbox.c.id)
                    .limit(count - cap)
                )
            )
            removed = 0
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                removed += connection.execute(
                    delete(outbox).where(outbox.c.id.in_(chunk), pending)
                ).rowcount
            statement = _insert(connection, chat_states).values(
                chat_id=chat_id, updated_at=now, burst_since=now, folded_alerts=removed
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[chat_states.c.chat_id],
                    set_={
                        "folded_alerts": chat_states.c.folded_alerts + removed,
                        "burst_since": func.coalesce(chat_states.c.burst_since, now),
                        "updated_at": now,
                    },
                )
            )
            folded[chat_id] = removed
            log.warning(
                "chat %s: %d alerts waiting, more than %d; the oldest %d are folded into the "
                "next digest (they stay in the feeds)",
                chat_id,
                count,
                cap,
                removed,
            )
    return folded


def folded_alerts(engine: Engine, chat_id: int) -> int:
    with engine.connect() as connection:
        value = connection.scalar(
            select(chat_states.c.folded_alerts).where(chat_states.c.chat_id == chat_id)
        )
    return int(value or 0)


def clear_folded(engine: Engine, chat_id: int, reported: int) -> None:
    """The digest reporting `reported` folded alerts went: subtract them (more may have been
    folded meanwhile, for the next digest to report)."""
    with engine.begin() as connection:
        connection.execute(
            update(chat_states)
            .where(chat_states.c.chat_id == chat_id)
            .values(
                folded_alerts=case(
                    (
                        chat_states.c.folded_alerts > reported,
                        chat_states.c.folded_alerts - reported,
                    ),
                    else_=0,
                )
            )
        )


def folded_note(count: int) -> str:
    """Short: it shares the digest's one note line (200 characters) with the burst note."""
    return f"{count:,} older alerts folded out (too many waiting); they are in the Atom feeds."
