"""What workers sharing one database agree on, in SQL: source leases and the feed change counter.

Every function takes a Connection inside the caller's transaction, like bot.story_store, so the
claim, the release and the counter bump are each one statement of one transaction.

**Leases.** A worker claims due sources with one ``UPDATE ... WHERE name IN (SELECT ... FOR UPDATE
SKIP LOCKED)``: rows another worker is claiming right now are skipped instead of waited for, and a
claimed row carries the claimer's id and an expiry. A row is claimable when it is enabled, due
(``next_poll_at`` null or past) and unleased or its lease expired; so a crashed worker's sources
come back to the fleet when its leases run out. The release writes ``next_poll_at`` and clears the
lease in one statement, and only while the releaser still holds the lease: a worker that lost its
lease (it stalled past the expiry and another took over) never overwrites the new holder's state.

On PostgreSQL, due-ness and expiry are judged by the database's clock (``now()``), so workers on
machines whose clocks disagree still agree on who holds what. SQLite has no usable clock of the
same type, and holds one process only: there the caller's clock is used, and the same statements
run as plain transactions (SQLite ignores FOR UPDATE; its one writer at a time does the rest).

**Change counter.** A row of ``change_counters`` bumped in every transaction that stores or edits
an article: a worker that did not poll a source learns from it that feeds changed. A counter
rather than ``max(updated_at)``, because two transactions may commit out of the order of their
timestamps (or ids): a later-committed article with an earlier stamp would never move a maximum,
while the bumps of a counter are serialised by its row lock, so the last commit always moves it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    ClauseElement,
    ColumnElement,
    Connection,
    Row,
    Text,
    any_,
    bindparam,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)

from .dialect import upsert_insert
from .schema import UTCDateTime, change_counters, sources

FEEDS_COUNTER = "feeds"
"""The counter moved by every change of what the Atom feeds show."""


def register_sources(connection: Connection, configured: Sequence[tuple[str, str]]) -> None:
    """Make sure every configured (name, url) has a row that claims can find.

    A row stored for another URL is pointed at the configured one and loses what belonged to the
    old URL (validators, redirect target, due time, a 410's disabling), as bot.store's
    `source_state` would read it anyway: the user pointed the source somewhere new.
    """
    if not configured:
        return
    insert = upsert_insert(connection, sources)
    statement = insert.on_conflict_do_update(
        index_elements=[sources.c.name],
        set_={
            "url": insert.excluded.url,
            "etag": None,
            "last_modified": None,
            "fetch_url": None,
            "next_poll_at": None,
            "disabled_reason": None,
        },
        where=sources.c.url != insert.excluded.url,
    )
    connection.execute(
        statement,
        [
            {"name": name, "url": url, "failure_streak": 0, "polls": 0, "not_modified_polls": 0}
            for name, url in configured
        ],
    )


def claim_sources(
    connection: Connection,
    owner: str,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    skip: Collection[str] = (),
) -> list[str]:
    """Lease up to `limit` due sources, the most overdue first and then those never polled,
    except those named in `skip`; their names (see `claim_source_rows`)."""
    rows = claim_source_rows(connection, owner, now=now, lease=lease, limit=limit, skip=skip)
    return [row.name for row in rows]


def claim_source_rows(
    connection: Connection,
    owner: str,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    skip: Collection[str] = (),
) -> list[Row[Any]]:
    """Lease up to `limit` due sources, the most overdue first and then those never polled,
    except those named in `skip`; their whole rows as leased, which is the state their polls
    start from (bot.store.source_state_of): read with the claim, a poll need not read it again.

    Any due source in the table is a candidate, not only the worker's configured ones: sending
    thousands of configured names with every claim (one array parameter) was three quarters of
    a claim's cost at 10,000 sources (bench/scale/claims.py). A worker hands back at once a
    source it has no settings for and names it in `skip` from then on (bot.fleet), so in a fleet
    whose workers share one configuration `skip` stays empty.
    """
    if limit < 1:
        return []
    at = _now(connection, now)
    claimable = [
        sources.c.disabled_reason.is_(None),
        or_(sources.c.lease_owner.is_(None), sources.c.lease_expires_at <= at),
    ]
    if skip:
        claimable.append(~_named(connection, skip))
    # Overdue and never polled are looked up apart: one condition for both (``next_poll_at IS
    # NULL OR next_poll_at <= now()``) cannot bound an index scan, so PostgreSQL walks the
    # next_poll_at index unbounded, or, when its statistics say few sources are due (they were
    # gathered while none were, as after an outage), reads every due row with a bitmap scan and
    # sorts them all on every claim. In bench/scale, whose sources all come due at once, a claim
    # then cost 1.5 ms and 293 buffers instead of 0.17 ms and 63. The never polled are read
    # only when the overdue do not fill the limit: the union is cut by the limit in its own
    # order (both PostgreSQL and SQLite run a UNION ALL's parts in turn and stop at the limit),
    # and a sort over the union would read them on every claim, through the index entries of
    # every source that was once new.
    overdue = (
        select(sources.c.name)
        .where(*claimable, sources.c.next_poll_at <= at)
        .order_by(sources.c.next_poll_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("overdue")
    )
    never_polled = (
        select(sources.c.name)
        .where(*claimable, sources.c.next_poll_at.is_(None))
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("never_polled")
    )
    candidates = (
        union_all(select(overdue.c.name), select(never_polled.c.name))
        .limit(limit)
        .subquery("candidates")
    )
    statement = (
        update(sources)
        .where(sources.c.name.in_(select(candidates.c.name)))
        .values(lease_owner=owner, lease_expires_at=_now(connection, now, lease))
        .returning(*sources.c)
    )
    rows = list(connection.execute(statement))
    # Most overdue first, like the selection (RETURNING does not promise an order).
    rows.sort(key=lambda row: (row.next_poll_at is None, row.next_poll_at, row.name))
    return rows


def renew_leases(
    connection: Connection, names: Collection[str], owner: str, *, now: datetime, lease: timedelta
) -> set[str]:
    """Extend the leases `owner` still holds on `names` (polls still running); returns those."""
    if not names:
        return set()
    statement = (
        update(sources)
        .where(_named(connection, names), sources.c.lease_owner == owner)
        .values(lease_expires_at=_now(connection, now, lease))
        .returning(sources.c.name)
    )
    return set(connection.scalars(statement))


def release_source(
    connection: Connection,
    name: str,
    owner: str,
    next_poll_at: datetime | None,
    also: Mapping[str, Any] | None = None,
) -> bool:
    """Set when the source is due again (None: leave it as it is) and end `owner`'s lease, in one
    statement; False (nothing written) when `owner` no longer held the lease.

    `also`: more of the source's columns to write in the same statement (a poll answered 304
    is recorded with its release: bot.store.not_modified_update)."""
    return release_sources(connection, owner, [Release(name, next_poll_at, also or {})]) == 1


@dataclass(frozen=True, slots=True)
class Release:
    """One source to hand back with `release_sources`: as `release_source`'s arguments."""

    name: str
    next_poll_at: datetime | None
    also: Mapping[str, Any] = field(default_factory=dict)

    def written(self) -> dict[str, Any]:
        """The columns written besides the lease's end."""
        if self.next_poll_at is None:
            return dict(self.also)
        return {**self.also, "next_poll_at": self.next_poll_at}


def release_sources(connection: Connection, owner: str, releases: Sequence[Release]) -> int:
    """Hand back several sources in the caller's transaction, as `release_source` does each;
    how many `owner` still held (the others were left untouched).

    One executemany per shape of what is written (which columns, and which SQL expression for
    those computed in SQL, such as ``polls + 1``): a worker gathers the releases of the polls
    that ended within a moment (bot.fleet), and the database gets them in one round trip and
    one commit instead of one each. Expressions are told apart by identity, not by their SQL
    text, which would cost a compilation per release on the poll's path: releases share them
    when they come from one place (bot.store.not_modified_update keeps its expressions).
    """
    shapes: dict[tuple[tuple[str, int], ...], list[dict[str, Any]]] = {}
    names: dict[tuple[tuple[str, int], ...], list[str]] = {}
    for release in releases:
        written = release.written()
        shape = tuple(
            sorted((key, id(value) if _computed(value) else 0) for key, value in written.items())
        )
        shapes.setdefault(shape, []).append(written)
        names.setdefault(shape, []).append(release.name)
    held = 0
    for shape, group in shapes.items():
        computed = {key: value for key, value in group[0].items() if _computed(value)}
        bound = [key for key in group[0] if key not in computed]
        statement = (
            update(sources)
            .where(sources.c.name == bindparam("r_name"), sources.c.lease_owner == owner)
            .values(
                lease_owner=None,
                lease_expires_at=None,
                **computed,
                **{key: bindparam(f"r_{key}", type_=sources.c[key].type) for key in bound},
            )
        )
        rows = [
            {"r_name": name, **{f"r_{key}": written[key] for key in bound}}
            for name, written in zip(names[shape], group, strict=True)
        ]
        held += connection.execute(statement, rows).rowcount
    return held


def _computed(value: object) -> bool:
    """Whether a value to write is an SQL expression (``polls + 1``) rather than a value."""
    return isinstance(value, ClauseElement)


def bump_counter(connection: Connection, name: str = FEEDS_COUNTER) -> None:
    """Move the counter `name` on by one, in the caller's transaction."""
    insert = upsert_insert(connection, change_counters).values(name=name, value=1)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[change_counters.c.name],
            set_={"value": change_counters.c.value + 1},
        )
    )


def read_counter(connection: Connection, name: str = FEEDS_COUNTER) -> int:
    """The counter's value (0 before its first bump)."""
    value = connection.scalar(select(change_counters.c.value).where(change_counters.c.name == name))
    return int(value or 0)


def _now(connection: Connection, now: datetime, plus: timedelta = timedelta(0)) -> Any:
    """The instant `plus` from now: the database's clock on PostgreSQL, `now` elsewhere."""
    if connection.dialect.name == "postgresql":
        return func.now() + plus if plus else func.now()
    return literal(now + plus, UTCDateTime)


def _named(connection: Connection, names: Collection[str]) -> ColumnElement[bool]:
    """``name IN (names)``; on PostgreSQL one array parameter instead of one per name, so that
    a worker with thousands of sources sends a short statement the server parses once."""
    if connection.dialect.name == "postgresql":
        return sources.c.name == any_(literal(list(names), ARRAY(Text)))
    return sources.c.name.in_(list(names))
