"""The database: sources' fetch state, cleaned articles, matches and the alert outbox.

SQLAlchemy 2 Core over SQLite (WAL) by default; the SQL is portable so PostgreSQL can follow without
rewriting queries. The tables live in bot.schema; the schema is owned by the Alembic migrations in
bot/migrations, run at open().

Every method is one transaction (`engine.begin()`), so a crash leaves either all of a call's effect
or none of it. Duplicates are not errors: inserts use ON CONFLICT DO NOTHING (through `_insert`, the
one place that knows which dialect's INSERT has it) and report whether a row was created.

On SQLite, SQLAlchemy emits BEGIN itself instead of the sqlite3 driver's legacy mode, which would
run SELECTs and DDL outside the transaction. Deferred BEGIN means a transaction that first reads and
then writes can fail with "database is locked" without waiting for busy_timeout when another writer
got in between, so every writing method here starts with its write.

The outbox follows an alert through these states (see `recover_interrupted_alerts` for why a crash
never leads to a resend):

    pending ──mark_alert_sending──▶ sending ──mark_alert_sent──▶ sent | logged
       ▲                               │
       └──────mark_alert_failed────────┤
                                       └──crash, recover_interrupted_alerts──▶ unknown
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.dml import ReturningInsert

from bot.schema import articles, matches, outbox, sources
from feeds.models import Article, ConditionalHeaders, Match

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite connection waits for another writer (the scheduler and the feed server share
the file) before giving up with "database is locked"."""

_GUID_CHUNK = 500
"""Bound on parameters per IN (...) so old SQLite builds (999 variables) are safe too."""

ALERT_OUTCOMES = ("sent", "logged")
"""Final outcomes a sender reports: delivered to Telegram, or only written to the log (dry run)."""


class AlertStateError(Exception):
    """An outbox transition was asked of an alert that is missing or in the wrong state.

    Raised instead of silently doing nothing, because it means two senders handle the same alert
    or a caller lost track of one: both are how an alert gets sent twice.
    """


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers of a source between polls."""

    name: str
    url: str
    validators: ConditionalHeaders
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failure_streak: int


@dataclass(frozen=True, slots=True)
class StoredArticle:
    id: int
    source: str
    guid: str
    url: str
    title: str
    text: str
    html: str
    author: str | None
    published: datetime | None
    fetched_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IngestedArticle:
    """A newly stored article and what it led to."""

    article: StoredArticle
    new_matches: int
    new_alerts: int


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One article as a feed shows it: the article, and why it is in this feed."""

    article: StoredArticle
    watchlists: tuple[str, ...]
    terms: tuple[str, ...]
    snippet: str
    matched_at: datetime


@dataclass(frozen=True, slots=True)
class PendingAlert:
    id: int
    chat_id: int
    watchlist: str
    terms: tuple[str, ...]
    snippet: str
    article: StoredArticle
    attempts: int


class Store:
    """The one gateway to the database; build it with `Store.open(url)` and `close()` it."""

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose schema is already current; `open` is the usual way in."""
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema to the latest migration (idempotent: safe on every start).

        For SQLite the parent directory is created, and every connection gets WAL (readers do not
        block the writer), foreign keys on (off by default in SQLite) and a busy timeout.
        """
        engine = _create_engine(make_url(url))
        try:
            _upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Sources

    def source_state(self, name: str, url: str) -> SourceState:
        """The remembered state of a source, or a fresh one if it was never polled.

        Validators are dropped when the source's URL changed since they were stored: an ETag of the
        old URL must never be replayed to the new one (it could earn a wrong 304).
        """
        with self._engine.begin() as connection:
            row = connection.execute(select(sources).where(sources.c.name == name)).one_or_none()
        if row is None:
            return SourceState(
                name=name,
                url=url,
                validators=ConditionalHeaders(),
                last_polled_at=None,
                last_success_at=None,
                last_error=None,
                failure_streak=0,
            )
        same_url = row.url == url
        return SourceState(
            name=name,
            url=url,
            validators=ConditionalHeaders(row.etag, row.last_modified)
            if same_url
            else ConditionalHeaders(),
            last_polled_at=row.last_polled_at,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            failure_streak=row.failure_streak,
        )

    def record_poll_success(
        self, name: str, url: str, validators: ConditionalHeaders, at: datetime
    ) -> None:
        """Remember the new validators and reset the failure streak."""
        values: dict[str, Any] = {
            "url": url,
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "last_polled_at": at,
            "last_success_at": at,
            "last_error": None,
            "failure_streak": 0,
        }
        with self._engine.begin() as connection:
            statement = _insert(connection, sources).values(name=name, **values)
            connection.execute(
                statement.on_conflict_do_update(index_elements=[sources.c.name], set_=values)
            )

    def record_poll_failure(self, name: str, url: str, error: str, at: datetime) -> None:
        """Count one more failure in a row; validators and the stored URL are kept as they were.

        The URL is not updated so that validators stored for an older URL stay tied to it (see
        `source_state`).
        """
        with self._engine.begin() as connection:
            statement = _insert(connection, sources).values(
                name=name, url=url, last_polled_at=at, last_error=error, failure_streak=1
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[sources.c.name],
                    set_={
                        "last_polled_at": at,
                        "last_error": error,
                        "failure_streak": sources.c.failure_streak + 1,
                    },
                )
            )

    # Articles and matches

    def known_guids(self, source: str, guids: Sequence[str]) -> set[str]:
        """The subset of `guids` already stored for `source`: entries not worth fetching again."""
        unique = list(dict.fromkeys(guids))
        known: set[str] = set()
        with self._engine.begin() as connection:
            for start in range(0, len(unique), _GUID_CHUNK):
                chunk = unique[start : start + _GUID_CHUNK]
                query = select(articles.c.guid).where(
                    articles.c.source == source, articles.c.guid.in_(chunk)
                )
                known.update(connection.scalars(query))
        return known

    def add_article(
        self, source: str, guid: str, article: Article, fetched_at: datetime
    ) -> StoredArticle | None:
        """Store a new article; None (not an error) if (source, guid) is already stored."""
        with self._engine.begin() as connection:
            return _insert_article(connection, source, guid, article, fetched_at)

    def add_article_with_matches(
        self,
        source: str,
        guid: str,
        article: Article,
        found: Sequence[Match],
        routes: Mapping[str, Sequence[int]],
        at: datetime,
    ) -> IngestedArticle | None:
        """Store a new article, its matches and their alerts in one transaction.

        All or nothing: a crash can never leave an article stored (and so "known", never looked
        at again) without the matches and alerts it should have produced. `routes` maps a
        watchlist name to the chats alerted for it. None if (source, guid) is already stored.
        """
        with self._engine.begin() as connection:
            stored = _insert_article(connection, source, guid, article, at)
            if stored is None:
                return None
            new_matches = new_alerts = 0
            for match in found:
                if not _insert_match(connection, stored.id, match, at):
                    continue
                new_matches += 1
                for chat_id in routes.get(match.watchlist, ()):
                    new_alerts += _insert_alert(connection, chat_id, stored.id, match, at)
        return IngestedArticle(stored, new_matches, new_alerts)

    def add_match(self, article_id: int, match: Match, at: datetime) -> bool:
        """Record that an article matched a watchlist; False if that pair was already recorded."""
        with self._engine.begin() as connection:
            return _insert_match(connection, article_id, match, at)

    # Alert outbox

    def enqueue_alert(self, chat_id: int, article_id: int, match: Match, at: datetime) -> bool:
        """Queue an alert; False if this chat already has one for this article (from any watchlist).

        The first watchlist to enqueue wins: a chat gets one message per article, not one per
        matching watchlist.
        """
        with self._engine.begin() as connection:
            return _insert_alert(connection, chat_id, article_id, match, at)

    def pending_alerts(
        self, limit: int = 100, exclude_chats: Collection[int] = ()
    ) -> list[PendingAlert]:
        """Alerts waiting to be sent, oldest first, each with its article.

        `exclude_chats` leaves out chats the caller is holding back (after a failed send), so
        that one stuck chat can never hide the alerts of the others behind it.
        """
        query = (
            select(outbox, articles)
            .join_from(outbox, articles, outbox.c.article_id == articles.c.id)
            .where(outbox.c.status == "pending")
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
        )
        if exclude_chats:
            query = query.where(outbox.c.chat_id.not_in(list(exclude_chats)))
        with self._engine.begin() as connection:
            rows = connection.execute(query).all()
        return [_pending_alert(row._mapping) for row in rows]

    def mark_alert_sending(self, alert_id: int, at: datetime) -> None:
        """Claim a pending alert just before handing it to Telegram.

        Raises AlertStateError if it is not pending (someone else claimed or finished it).
        """
        _transition(self._engine, alert_id, ("pending",), status="sending", updated_at=at)

    def mark_alert_sent(self, alert_id: int, at: datetime, outcome: str) -> None:
        """Record the final outcome of a send: "sent" (Telegram accepted it) or "logged".

        Accepted from `unknown` too: a late confirmation turns an unknown outcome into a known one.
        """
        if outcome not in ALERT_OUTCOMES:
            raise ValueError(f"outcome must be one of {ALERT_OUTCOMES}, not {outcome!r}")
        _transition(
            self._engine,
            alert_id,
            ("sending", "unknown"),
            status=outcome,
            sent_at=at,
            updated_at=at,
        )

    def mark_alert_failed(
        self, alert_id: int, error: str, at: datetime, *, permanent: bool = False
    ) -> None:
        """Record a send that certainly did not deliver the alert.

        A temporary failure puts it back in the queue; a permanent one (the chat blocked the bot,
        the message can never be accepted) ends it as `failed`, so it neither retries forever nor
        holds up the chat's later alerts.
        """
        _transition(
            self._engine,
            alert_id,
            ("sending", "unknown"),
            status="failed" if permanent else "pending",
            attempts=outbox.c.attempts + 1,
            last_error=error,
            updated_at=at,
        )

    def recover_interrupted_alerts(self, at: datetime) -> int:
        """Settle alerts a crash left in `sending`; returns how many. Call once at start-up.

        There is a window between handing a message to Telegram and committing `sent`: a crash
        there leaves the row in `sending` although Telegram may well have delivered it. We cannot
        tell, so such rows become `unknown` and are never resent: a missed alert is visible in
        the outbox and in the feeds, a duplicate message cannot be taken back. Must not run while
        another process is sending from the same outbox, or it would settle live sends.
        """
        statement = (
            update(outbox)
            .where(outbox.c.status == "sending")
            .values(status="unknown", updated_at=at, last_error="interrupted while sending")
        )
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount

    # Feeds

    def feed_items(self, watchlist: str | None, limit: int) -> list[FeedItem]:
        """The newest matched articles of a watchlist, or of all watchlists when it is None.

        For a watchlist: newest match first (ties by article id, newest first, so feeds are
        deterministic). For None: each matched article once, with all its watchlists and the
        union of their terms, ordered by its first match (the moment it entered any feed).
        """
        with self._engine.begin() as connection:
            if watchlist is None:
                return _all_feed_items(connection, limit)
            return _watchlist_feed_items(connection, watchlist, limit)


def _insert_article(
    connection: Connection, source: str, guid: str, article: Article, fetched_at: datetime
) -> StoredArticle | None:
    """The row comes back through RETURNING, so the result is exactly what later reads give
    (instants normalised to UTC)."""
    statement = _insert(connection, articles).values(
        source=source,
        guid=guid,
        url=article.url,
        title=article.title,
        text=article.text,
        html=article.html,
        author=article.author,
        published=article.published,
        fetched_at=fetched_at,
        updated_at=fetched_at,
    )
    statement = statement.on_conflict_do_nothing(
        index_elements=[articles.c.source, articles.c.guid]
    )
    row = connection.execute(statement.returning(*articles.c)).one_or_none()
    return None if row is None else _stored_article(row._mapping)


def _insert_match(connection: Connection, article_id: int, match: Match, at: datetime) -> bool:
    statement = _insert(connection, matches).values(
        article_id=article_id,
        watchlist=match.watchlist,
        terms=match.terms,
        snippet=match.snippet,
        matched_at=at,
    )
    statement = statement.on_conflict_do_nothing(
        index_elements=[matches.c.article_id, matches.c.watchlist]
    )
    return _inserted(connection, statement.returning(matches.c.article_id))


def _insert_alert(
    connection: Connection, chat_id: int, article_id: int, match: Match, at: datetime
) -> bool:
    statement = _insert(connection, outbox).values(
        chat_id=chat_id,
        article_id=article_id,
        watchlist=match.watchlist,
        terms=match.terms,
        snippet=match.snippet,
        status="pending",
        attempts=0,
        created_at=at,
        updated_at=at,
    )
    statement = statement.on_conflict_do_nothing(
        index_elements=[outbox.c.chat_id, outbox.c.article_id]
    )
    return _inserted(connection, statement.returning(outbox.c.id))


def _create_engine(url: URL) -> Engine:
    """An engine for the URL; for SQLite, with the pragmas and transaction handling we rely on."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url)
    database = url.database or ""
    if database in ("", ":memory:"):
        # Every pooled connection would see its own empty in-memory database: share one.
        engine = create_engine(url, poolclass=StaticPool)
    else:
        if not url.query.get("uri"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(
    dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry
) -> None:
    # The driver's own transaction handling is off; _begin_sqlite_transaction emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _upgrade(engine: Engine) -> None:
    """Run Alembic `upgrade head` on one of the engine's connections, in one transaction."""
    config = Config()
    # ConfigParser interpolates "%": a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _insert(connection: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT support, in the dialect of the connection.

    Both dialects spell the clause the same way, so callers stay portable.
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no ON CONFLICT support for the {dialect} dialect")


def _inserted(connection: Connection, statement: ReturningInsert[Any]) -> bool:
    """Run an INSERT ... ON CONFLICT DO NOTHING RETURNING: did it create a row?

    RETURNING rather than rowcount, whose meaning for INSERT differs between drivers.
    """
    return connection.execute(statement).first() is not None


def _transition(
    engine: Engine, alert_id: int, allowed_from: tuple[str, ...], **values: Any
) -> None:
    """Move one outbox row from one of `allowed_from` to new values, or raise AlertStateError."""
    statement = (
        update(outbox)
        .where(outbox.c.id == alert_id, outbox.c.status.in_(allowed_from))
        .values(**values)
    )
    with engine.begin() as connection:
        if connection.execute(statement).rowcount == 1:
            return
        status = connection.scalar(select(outbox.c.status).where(outbox.c.id == alert_id))
    state = "does not exist" if status is None else f"is {status}"
    raise AlertStateError(f"alert {alert_id} {state}, expected one of {allowed_from}")


def _watchlist_feed_items(connection: Connection, watchlist: str, limit: int) -> list[FeedItem]:
    query = (
        select(matches, articles)
        .join_from(matches, articles, matches.c.article_id == articles.c.id)
        .where(matches.c.watchlist == watchlist)
        .order_by(matches.c.matched_at.desc(), articles.c.id.desc())
        .limit(limit)
    )
    return [
        FeedItem(
            article=_stored_article(row._mapping),
            watchlists=(row._mapping[matches.c.watchlist],),
            terms=row._mapping[matches.c.terms],
            snippet=row._mapping[matches.c.snippet],
            matched_at=row._mapping[matches.c.matched_at],
        )
        for row in connection.execute(query)
    ]


def _all_feed_items(connection: Connection, limit: int) -> list[FeedItem]:
    """Pick the page of articles by first match in SQL, then gather their matches in a second query.

    Aggregating watchlists and terms in Python avoids string_agg/group_concat, which differ
    between SQLite and PostgreSQL.
    """
    first = (
        select(matches.c.article_id, func.min(matches.c.matched_at).label("first_matched_at"))
        .group_by(matches.c.article_id)
        .subquery()
    )
    page = connection.execute(
        select(articles)
        .join_from(first, articles, first.c.article_id == articles.c.id)
        .order_by(first.c.first_matched_at.desc(), articles.c.id.desc())
        .limit(limit)
    ).all()
    if not page:
        return []
    by_article: dict[int, list[RowMapping]] = {row.id: [] for row in page}
    match_rows = connection.execute(
        select(matches)
        .where(matches.c.article_id.in_(list(by_article)))
        .order_by(matches.c.matched_at, matches.c.watchlist)
    )
    for match_row in match_rows:
        by_article[match_row.article_id].append(match_row._mapping)
    return [_merged_feed_item(_stored_article(row._mapping), by_article[row.id]) for row in page]


def _merged_feed_item(article: StoredArticle, rows: list[RowMapping]) -> FeedItem:
    """One feed item for all matches of an article, which `rows` holds earliest first."""
    terms = dict.fromkeys(term for row in rows for term in row["terms"])
    return FeedItem(
        article=article,
        watchlists=tuple(row["watchlist"] for row in rows),
        terms=tuple(terms),
        snippet=rows[0]["snippet"],
        matched_at=rows[0]["matched_at"],
    )


def _stored_article(row: RowMapping) -> StoredArticle:
    """The article columns of a row, looked up by Column so joins with clashing names work."""
    columns = articles.c
    return StoredArticle(
        id=row[columns.id],
        source=row[columns.source],
        guid=row[columns.guid],
        url=row[columns.url],
        title=row[columns.title],
        text=row[columns.text],
        html=row[columns.html],
        author=row[columns.author],
        published=row[columns.published],
        fetched_at=row[columns.fetched_at],
        updated_at=row[columns.updated_at],
    )


def _pending_alert(row: RowMapping) -> PendingAlert:
    return PendingAlert(
        id=row[outbox.c.id],
        chat_id=row[outbox.c.chat_id],
        watchlist=row[outbox.c.watchlist],
        terms=row[outbox.c.terms],
        snippet=row[outbox.c.snippet],
        article=_stored_article(row),
        attempts=row[outbox.c.attempts],
    )
