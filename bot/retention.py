"""Retention: old articles go, with everything keyed to them, and feeds' archives stay whole.

An article is *old* when nothing touched it for ``retention.articles``: it was stored or last
updated before the cutoff, none of its matches is newer, and no alert of it is still waiting
(pending or being sent: pruning never loses an alert). Pruning an article removes its matches, its
settled outbox rows, its story links (bot.story_store) and the article; settled outbox rows older
than the cutoff go even when their article stays, and so do expired mutes.

**Archive consistency.** Feeds are paged by position (bot.publish): the n-th entry that ever
entered a feed lives on archive page ceil(n / max_entries). Retention keeps that true forever:

1. it removes entries only from the *oldest end* of every feed: an old article that sits behind a
   newer entry in any feed it is in (watchlist feeds, ``all``, its source's feed) waits until
   everything before it can go too (`prunable`);
2. it counts, per feed, how many entries it removed from the front (``feed_archive_starts``), and
   the publisher numbers pages from that count, so no entry ever moves to another page;
3. a page left with no entries is no longer published and nothing links to it: the oldest page
   still published has no ``prev-archive`` link; a page that lost only its oldest entries keeps
   the others, with the same ids;
4. a pruned entry never comes back: its guid and URL key are remembered (``pruned_articles``) for
   as long as its source keeps listing it, and one retention period more.

So a reader walking the archive chain meets no dangling link, no entry twice, and no entry it saw
pruned coming back as new. Everything happens in one transaction: the candidates are locked on
PostgreSQL (FOR UPDATE; SQLite has one writer anyway), so a concurrent update of an old article
either lands before the sweep (and keeps it) or finds it gone.

**Space.** Freed SQLite pages are reused by later inserts, so in steady state (each sweep frees
about what a day adds) the file stops growing without any VACUUM. After a large prune (more than
`VACUUM_SHARE` of the file free, and at least `VACUUM_MIN_BYTES`: the first sweep of an old
database, or a shortened retention) a full ``VACUUM`` gives the space back to the disk.
Incremental vacuum is not used: it needs ``auto_vacuum=INCREMENTAL`` set before the first table
exists, i.e. a VACUUM anyway for every existing database, and it leaves the remaining pages
fragmented. PostgreSQL's autovacuum makes dead rows reusable; VACUUM FULL (an exclusive lock on
each table) is left to the operator.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, select, update

from feeds.canonical import url_key
from feeds.models import Entry

from .coordination import bump_counter
from .dialect import upsert_insert as _insert
from .schema import (
    article_stories,
    articles,
    feed_archive_starts,
    matches,
    mutes,
    outbox,
    pruned_articles,
    source_mutes,
    story_keys,
)
from .server import ALL_FEED, feed_path, source_path

log = logging.getLogger("wirewatch.retention")

WAITING_STATUSES = ("pending", "sending")
"""Outbox states of an alert that may still go out: its article is never pruned."""
SETTLED_STATUSES = ("sent", "logged", "failed", "unknown")
VACUUM_SHARE = 0.25
VACUUM_MIN_BYTES = 8 * 1024 * 1024
SEEN_REFRESH = timedelta(days=1)
"""A remembered pruned entry seen listed again is re-dated at most this often (one write a day)."""
_CHUNK = 500
"""Bound on parameters per IN (...) (see bot.store)."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    articles: int = 0
    matches: int = 0
    alerts: int = 0
    """Settled outbox rows removed (with their articles or on their own)."""
    feeds: int = 0
    """Feeds that lost entries from their oldest end (their archives were renumbered from)."""
    forgotten: int = 0
    """Remembered pruned entries no longer listed anywhere for a retention period."""
    vacuumed: bool = False


def prunable(candidates: Collection[int], histories: Iterable[Sequence[int]]) -> set[int]:
    """The candidates that may go: those that, in every feed history (article ids, oldest first)
    holding them, have only prunable articles before them.

    A fixed point: keeping one candidate (it sits behind a kept article in one feed) may keep
    others behind it in another feed, so it repeats until nothing changes; the set only shrinks,
    so it ends after at most len(candidates) rounds (in practice one or two).
    """
    histories = [list(history) for history in histories]
    chosen = set(candidates)
    while True:
        allowed: set[int] = set()
        blocked: set[int] = set()
        for history in histories:
            prefix = True
            for article_id in history:
                prefix = prefix and article_id in chosen
                (allowed if prefix else blocked).add(article_id)
        kept = chosen & blocked
        if not kept:
            return chosen
        chosen -= kept


def pruned_prefix(history: Sequence[int], pruned: Collection[int]) -> int:
    """How many entries at the oldest end of a history are in `pruned`."""
    count = 0
    for article_id in history:
        if article_id not in pruned:
            break
        count += 1
    return count


def prune(engine: Engine, now: datetime, max_age: timedelta) -> PruneReport:
    """Remove what is older than `max_age` (see the module docstring), then give SQLite space back
    after a large prune. The caller republishes feeds afterwards (their archive pages change)."""
    cutoff = now - max_age
    with engine.begin() as connection:
        # A write first: on SQLite it takes the write lock before anything is read (bot.store).
        forgotten = connection.execute(
            delete(pruned_articles).where(pruned_articles.c.seen_at < cutoff)
        ).rowcount
        connection.execute(delete(mutes).where(mutes.c.until < now))
        connection.execute(delete(source_mutes).where(source_mutes.c.until < now))
        candidates = _old_articles(connection, cutoff)
        histories = _feed_histories(connection) if candidates else {}
        chosen = prunable(candidates, histories.values())
        removed = _remove_articles(connection, chosen, now)
        alerts = (
            removed["alerts"]
            + connection.execute(
                delete(outbox).where(
                    outbox.c.status.in_(SETTLED_STATUSES), outbox.c.updated_at < cutoff
                )
            ).rowcount
        )
        feeds = 0
        for feed, history in histories.items():
            count = pruned_prefix(history, chosen)
            if count:
                _advance_start(connection, feed, count)
                feeds += 1
        if chosen:  # other workers re-render their feeds without the pruned entries
            bump_counter(connection)
    vacuumed = vacuum_if_worth_it(engine) if chosen else False
    report = PruneReport(len(chosen), removed["matches"], alerts, feeds, forgotten, vacuumed)
    if chosen or alerts or forgotten:
        log.info(
            "retention: pruned %d article(s), %d match(es), %d settled alert(s); %d feed(s) "
            "start later; %s",
            report.articles,
            report.matches,
            report.alerts,
            report.feeds,
            "database vacuumed" if vacuumed else "space kept for reuse",
        )
    return report


def archive_start(connection: Connection, feed: str) -> int:
    """How many entries retention removed from the front of a feed (its subscription path)."""
    value = connection.scalar(
        select(feed_archive_starts.c.pruned_entries).where(feed_archive_starts.c.feed == feed)
    )
    return int(value or 0)


def drop_pruned(
    engine: Engine, source: str, entries: Sequence[Entry], now: datetime
) -> list[Entry]:
    """The entries that are not pruned articles of `source` (by guid or URL key), in order; the
    pruned ones seen again are re-dated so they are remembered while the feed lists them."""
    guids = [entry.guid for entry in entries]
    keys = {entry.guid: url_key(entry.url) for entry in entries}
    seen: set[str] = set()
    seen_keys: set[str] = set()
    with engine.connect() as connection:
        if not connection.scalar(select(exists().select_from(pruned_articles))):
            return list(entries)
        for chunk in _chunks(guids):
            rows = connection.execute(
                select(pruned_articles.c.guid).where(
                    pruned_articles.c.source == source, pruned_articles.c.guid.in_(chunk)
                )
            )
            seen.update(rows.scalars())
        wanted_keys = [key for key in keys.values() if key]
        for chunk in _chunks(wanted_keys):
            rows = connection.execute(
                select(pruned_articles.c.url_key).where(
                    pruned_articles.c.source == source, pruned_articles.c.url_key.in_(chunk)
                )
            )
            seen_keys.update(key for key in rows.scalars() if key)
    if seen or seen_keys:  # a transaction of its own that starts with its write (bot.store)
        with engine.begin() as connection:
            _refresh_seen(connection, source, seen, seen_keys, now)
    return [
        entry
        for entry in entries
        if entry.guid not in seen and not (keys[entry.guid] and keys[entry.guid] in seen_keys)
    ]


def vacuum_if_worth_it(engine: Engine) -> bool:
    """VACUUM a SQLite file whose free pages are a large share of it (see the module docstring);
    then truncate the write-ahead log, which VACUUM filled with a copy of every page."""
    if engine.dialect.name != "sqlite" or (engine.url.database or ":memory:") == ":memory:":
        return False
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            free = _pragma(cursor, "freelist_count")
            pages = _pragma(cursor, "page_count")
            size = _pragma(cursor, "page_size")
            if not pages or free * size < VACUUM_MIN_BYTES or free / pages < VACUUM_SHARE:
                return False
            try:
                cursor.execute("VACUUM")
            except sqlite3.OperationalError as error:  # no room for the copy, or busy
                log.warning("retention: VACUUM skipped (%s); freed pages stay for reuse", error)
                return False
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            cursor.close()
    finally:
        raw.close()
    return True


def _pragma(cursor: Any, name: str) -> int:
    cursor.execute(f"PRAGMA {name}")
    return int(cursor.fetchone()[0])


def _old_articles(connection: Connection, cutoff: datetime) -> set[int]:
    """Articles untouched since `cutoff` with no alert waiting; locked on PostgreSQL."""
    newer_match = exists().where(
        matches.c.article_id == articles.c.id, matches.c.matched_at >= cutoff
    )
    waiting = exists().where(
        outbox.c.article_id == articles.c.id, outbox.c.status.in_(WAITING_STATUSES)
    )
    query = (
        select(articles.c.id)
        .where(articles.c.updated_at < cutoff, ~newer_match, ~waiting)
        .with_for_update()
    )
    return set(connection.scalars(query))


def _feed_histories(connection: Connection) -> dict[str, list[int]]:
    """Every feed's article ids in the order they entered it, oldest first, keyed by the feed's
    subscription path: the same orders bot.store.feed_history and source_history give."""
    histories: dict[str, list[int]] = {}
    entered: set[int] = set()
    rows = connection.execute(
        select(matches.c.watchlist, matches.c.article_id, matches.c.matched_at).order_by(
            matches.c.matched_at, matches.c.article_id, matches.c.watchlist
        )
    )
    everything: list[int] = []
    for watchlist, article_id, _ in rows:
        histories.setdefault(feed_path(watchlist), []).append(article_id)
        if article_id not in entered:
            entered.add(article_id)
            everything.append(article_id)
    histories[feed_path(ALL_FEED)] = everything
    by_source = connection.execute(
        select(articles.c.source, articles.c.id).order_by(articles.c.fetched_at, articles.c.id)
    )
    for source, article_id in by_source:
        histories.setdefault(source_path(source), []).append(article_id)
    return histories


def _remove_articles(
    connection: Connection, chosen: Collection[int], now: datetime
) -> dict[str, int]:
    """Delete the articles and what is keyed to them (children first: no reliance on cascades),
    remembering what they were called."""
    counts = {"matches": 0, "alerts": 0}
    for chunk in _chunks(sorted(chosen)):
        names = connection.execute(
            select(articles.c.source, articles.c.guid, articles.c.url_key).where(
                articles.c.id.in_(chunk)
            )
        ).all()
        _remember(connection, names, now)
        counts["alerts"] += connection.execute(
            delete(outbox).where(outbox.c.article_id.in_(chunk))
        ).rowcount
        counts["matches"] += connection.execute(
            delete(matches).where(matches.c.article_id.in_(chunk))
        ).rowcount
        connection.execute(delete(story_keys).where(story_keys.c.article_id.in_(chunk)))
        connection.execute(delete(article_stories).where(article_stories.c.article_id.in_(chunk)))
        connection.execute(delete(articles).where(articles.c.id.in_(chunk)))
    return counts


def _remember(connection: Connection, names: Sequence[Any], now: datetime) -> None:
    """Record pruned (source, guid, url_key) rows; one already remembered is re-dated."""
    if not names:
        return
    statement = _insert(connection, pruned_articles)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[pruned_articles.c.source, pruned_articles.c.guid],
            set_={"url_key": statement.excluded.url_key, "seen_at": statement.excluded.seen_at},
        ),
        [
            {"source": source, "guid": guid, "url_key": key, "seen_at": now}
            for source, guid, key in names
        ],
    )


def _refresh_seen(
    connection: Connection,
    source: str,
    guids: Collection[str],
    keys: Collection[str],
    now: datetime,
) -> None:
    stale = pruned_articles.c.seen_at < now - SEEN_REFRESH
    for chunk in _chunks(sorted(guids)):
        connection.execute(
            update(pruned_articles)
            .where(pruned_articles.c.source == source, pruned_articles.c.guid.in_(chunk), stale)
            .values(seen_at=now)
        )
    for chunk in _chunks(sorted(keys)):
        connection.execute(
            update(pruned_articles)
            .where(pruned_articles.c.source == source, pruned_articles.c.url_key.in_(chunk), stale)
            .values(seen_at=now)
        )


def _advance_start(connection: Connection, feed: str, count: int) -> None:
    statement = _insert(connection, feed_archive_starts).values(feed=feed, pruned_entries=count)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[feed_archive_starts.c.feed],
            set_={"pruned_entries": feed_archive_starts.c.pruned_entries + count},
        )
    )


def archive_starts(connection: Connection) -> Mapping[str, int]:
    """Every feed's count of entries pruned from its front (see `archive_start`)."""
    rows = connection.execute(
        select(feed_archive_starts.c.feed, feed_archive_starts.c.pruned_entries)
    )
    return {feed: int(count) for feed, count in rows}


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


__all__ = [
    "PruneReport",
    "archive_start",
    "archive_starts",
    "drop_pruned",
    "prunable",
    "prune",
    "pruned_prefix",
    "vacuum_if_worth_it",
]
