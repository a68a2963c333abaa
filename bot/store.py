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
       └──────mark_alert_failed────────┤ (permanent: ──▶ failed)
                                       ├──crash, recover_interrupted_alerts──▶ unknown
                                       │  (or its lease expired: bot.outbox_claims)
                                       └──no answer, mark_alert_unknown──▶ unknown

A pending alert may carry `next_attempt_at` (Telegram's retry_after): bot.delivery holds its chat
until then. The rules for each outcome are in bot/delivery.py.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    case,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.dml import ReturningInsert

from bot.coordination import bump_counter
from bot.database_url import connect_arguments
from bot.database_url import parse as parse_database_url
from bot.database_url import shown as shown_database_url
from bot.dialect import upsert_insert as _insert
from bot.mutes import ActiveMute, Mutes
from bot.outbox_claims import ChatLease, claim_leased
from bot.poll_batch import NotModifiedPoll
from bot.schema import articles, chat_states, matches, mutes, outbox, source_mutes, sources
from bot.story_store import (
    StoryMate,
    also_reported_by,
    assign_story,
    related_reports,
    story_alerted,
    story_of,
)
from bot.template_store import learn_site_page, load_site_template
from feeds.models import Article, ConditionalHeaders, Match
from feeds.templates import SiteTemplate

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x77697265  # "wire": the PostgreSQL advisory lock key held while migrating

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite connection waits for another writer (the scheduler and the feed server share
the file) before giving up with "database is locked"."""

_GUID_CHUNK = 500
"""Bound on parameters per IN (...) so old SQLite builds (999 variables) are safe too."""

ALERT_OUTCOMES = ("sent", "logged")
"""Final outcomes a sender reports: delivered to Telegram, or only written to the log (dry run)."""


class DatabaseUnavailableError(Exception):
    """The database cannot be reached or opened (server down, wrong password, no such file).

    Its message names the database with the password hidden, and the driver's reason: the
    command line prints it as it is, instead of a traceback.
    """


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
    fetch_url: str | None = None
    """Where to poll: the end of a permanent redirect from `url`, else None (poll `url`)."""
    next_poll_at: datetime | None = None
    disabled_reason: str | None = None
    """Why the source is no longer polled (it answered 410 Gone); None while it is enabled."""
    last_error_kind: str | None = None
    polls: int = 0
    not_modified_polls: int = 0
    publish_gap_seconds: float | None = None
    """The median gap between the source's recent items as of the last poll that fetched the
    feed; 0: too few items for one; None: not known yet (bot.ingest)."""


@dataclass(frozen=True, slots=True)
class ArticleIdentity:
    """What tells a stored article apart beyond its guid (see feeds.canonical)."""

    url_key: str | None = None
    fingerprint: str | None = None
    page_validators: ConditionalHeaders = field(default_factory=ConditionalHeaders)


@dataclass(frozen=True, slots=True)
class KnownArticle:
    """A stored article an entry may be the same as, with what decides whether it changed."""

    id: int
    guid: str
    url_key: str | None
    fingerprint: str | None
    page_validators: ConditionalHeaders


@dataclass(frozen=True, slots=True)
class SourceActivity:
    """How much a source brought lately (for health): articles since a moment, and the last."""

    articles_since: int
    last_article_at: datetime | None


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
    related: tuple[tuple[str, str], ...] = ()
    """(outlet, url) of other outlets' reports of the same story, shown as the entry's
    rel="related" links. Empty until near-duplicate detection fills it."""


@dataclass(frozen=True, slots=True)
class PendingAlert:
    id: int
    chat_id: int
    watchlist: str
    terms: tuple[str, ...]
    snippet: str
    article: StoredArticle
    attempts: int
    next_attempt_at: datetime | None = None
    """Not to be tried before this (Telegram's retry_after); None: now."""
    created_at: datetime | None = None
    """When it was queued: digests and quiet hours are decided from it (bot.rhythm)."""


@dataclass(frozen=True, slots=True)
class ChatState:
    """What delivery learnt about a chat (see `Store.chat_states`)."""

    chat_id: int
    migrated_to: int | None
    disabled_reason: str | None
    burst_since: datetime | None = None
    """Since when the chat gets digests because of a burst of news; None: no burst."""


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
        ``postgresql://`` and ``postgres://`` open with psycopg 3 (bot.database_url).
        """
        parsed = parse_database_url(url)
        engine = _create_engine(parsed)
        try:
            _upgrade(engine)
        except OperationalError as error:
            engine.dispose()
            reason = str(error.orig or error).strip().splitlines()[0]
            raise DatabaseUnavailableError(
                f"cannot open the database {shown_database_url(url)}: {reason}"
            ) from error
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The engine, for modules that keep their own SQL beside the store (bot.outbox_claims,
        bot.retention, bot.stats, bot.admin_alerts)."""
        return self._engine

    def ping(self) -> None:
        """``SELECT 1``: raises when the database does not answer (the readiness probe)."""
        with self._engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

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
        return source_state_of(row._mapping, url)

    def source_states(self) -> list[SourceState]:
        """Every source ever polled, by name, as stored (for health reports)."""
        with self._engine.begin() as connection:
            rows = connection.execute(select(sources)).all()
        # Sorted here, in code point order: the database's collation may differ (see
        # `_merged_feed_item`).
        ordered = sorted(rows, key=lambda r: str(r.name))
        return [source_state_of(row._mapping, row.url) for row in ordered]

    def source_activity(self, since: datetime) -> dict[str, SourceActivity]:
        """Per source: articles first stored since `since`, and when the last one was stored."""
        recent = func.sum(case((articles.c.fetched_at >= since, 1), else_=0))
        query = select(articles.c.source, recent, func.max(articles.c.fetched_at)).group_by(
            articles.c.source
        )
        with self._engine.begin() as connection:
            rows = connection.execute(query).all()
        return {
            source: SourceActivity(int(count or 0), _aware(last)) for source, count, last in rows
        }

    def recent_publication_times(self, source: str, limit: int = 20) -> list[datetime]:
        """When the source's newest `limit` articles were published (stored, when undated):
        the rhythm its polling interval adapts to."""
        when = func.coalesce(articles.c.published, articles.c.fetched_at)
        query = (
            select(when.label("when"))
            .where(articles.c.source == source)
            .order_by(articles.c.id.desc())
            .limit(limit)
        )
        with self._engine.begin() as connection:
            values = connection.scalars(query).all()
        return [moment for moment in (_aware(value) for value in values) if moment is not None]

    def record_poll_success(
        self,
        name: str,
        url: str,
        validators: ConditionalHeaders,
        at: datetime,
        *,
        not_modified: bool = False,
        fetch_url: str | None = None,
        next_poll_at: datetime | None = None,
        publish_gap_seconds: float | None = None,
    ) -> None:
        """Remember the new validators, where to poll from now on (`fetch_url`, None: `url`)
        and when; reset the failure streak and count the poll (and whether it was a 304).
        `publish_gap_seconds`: the source's publication gap as the poll found it (None: keep
        the stored one)."""
        values: dict[str, Any] = {
            "url": url,
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "last_polled_at": at,
            "last_success_at": at,
            "last_error": None,
            "last_error_kind": None,
            "failure_streak": 0,
            "fetch_url": fetch_url,
            "next_poll_at": next_poll_at,
            "disabled_reason": None,
        }
        if publish_gap_seconds is not None:
            values["publish_gap_seconds"] = publish_gap_seconds
        with self._engine.begin() as connection:
            _upsert_poll_success(connection, name, values, not_modified)

    def record_not_modified_polls(self, polls: Sequence[NotModifiedPoll]) -> None:
        """Record many polls answered 304 in one transaction, each as `record_poll_success`
        with ``not_modified=True`` would (bot.poll_batch says why they wait to be written)."""
        if not polls:
            return
        with self._engine.begin() as connection:
            for poll in polls:
                _upsert_poll_success(connection, poll.name, _not_modified_values(poll), True)

    def record_poll_failure(
        self,
        name: str,
        url: str,
        error: str,
        at: datetime,
        *,
        kind: str | None = None,
        next_poll_at: datetime | None = None,
        disabled_reason: str | None = None,
    ) -> None:
        """Count one more failure in a row; validators and the stored URL are kept as they were.

        The URL is not updated so that validators stored for an older URL stay tied to it (see
        `source_state`). `disabled_reason` stops polling until the configured URL changes.
        """
        with self._engine.begin() as connection:
            statement = _insert(connection, sources).values(
                name=name,
                url=url,
                last_polled_at=at,
                last_error=error,
                last_error_kind=kind,
                failure_streak=1,
                next_poll_at=next_poll_at,
                disabled_reason=disabled_reason,
                polls=1,
                not_modified_polls=0,
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[sources.c.name],
                    set_={
                        "last_polled_at": at,
                        "last_error": error,
                        "last_error_kind": kind,
                        "failure_streak": sources.c.failure_streak + 1,
                        "next_poll_at": next_poll_at,
                        "disabled_reason": disabled_reason,
                        "polls": sources.c.polls + 1,
                    },
                )
            )

    # Learned site templates (feeds.templates; the SQL is in bot.template_store)

    def site_template(self, site: str) -> SiteTemplate:
        """The boilerplate learned so far for `site` (see feeds.templates.site_of)."""
        with self._engine.begin() as connection:
            return load_site_template(connection, site)

    def learn_site_page(self, site: str, fingerprints: Collection[str]) -> SiteTemplate:
        """Count one more cleaned page of `site` with these block fingerprints."""
        with self._engine.begin() as connection:
            return learn_site_page(connection, site, fingerprints)

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

    def known_articles(
        self, source: str, guids: Sequence[str], url_keys: Sequence[str]
    ) -> list[KnownArticle]:
        """Stored articles of `source` with one of `guids` or one of `url_keys`."""
        found: dict[int, KnownArticle] = {}
        with self._engine.begin() as connection:
            for column, values in ((articles.c.guid, guids), (articles.c.url_key, url_keys)):
                unique = [value for value in dict.fromkeys(values) if value]
                for start in range(0, len(unique), _GUID_CHUNK):
                    query = select(articles).where(
                        articles.c.source == source,
                        column.in_(unique[start : start + _GUID_CHUNK]),
                    )
                    for row in connection.execute(query):
                        page = ConditionalHeaders(row.page_etag, row.page_last_modified)
                        found[row.id] = KnownArticle(
                            row.id, row.guid, row.url_key, row.fingerprint, page
                        )
        return list(found.values())

    def article(self, article_id: int) -> StoredArticle:
        """One stored article by id (KeyError when there is none)."""
        with self._engine.begin() as connection:
            row = connection.execute(
                select(articles).where(articles.c.id == article_id)
            ).one_or_none()
        if row is None:
            raise KeyError(article_id)
        return _stored_article(row._mapping)

    def update_article_with_matches(
        self,
        article_id: int,
        article: Article,
        identity: ArticleIdentity,
        found: Sequence[Match],
        routes: Mapping[str, Sequence[int]],
        at: datetime,
    ) -> IngestedArticle:
        """Replace a stored article's content with its edited version (`updated_at` moves to
        `at`; id, guid and first fetch time stay), in one transaction with any matches it did not
        have before and their alerts. Matches it already had are kept as they were."""
        statement = (
            update(articles)
            .where(articles.c.id == article_id)
            .values(
                url=article.url,
                title=article.title,
                text=article.text,
                html=article.html,
                author=article.author,
                published=article.published,
                updated_at=at,
                **_identity_values(identity),
            )
            .returning(*articles.c)
        )
        with self._engine.begin() as connection:
            row = connection.execute(statement).one()
            stored = _stored_article(row._mapping)
            # The same story rule as for a new article: a chat already alerted about the
            # story (through this or another outlet's article) gets no second alert.
            new_matches, new_alerts = _insert_matches(
                connection, stored.id, found, routes, at, story=story_of(connection, stored.id)
            )
            bump_counter(connection)  # other workers re-publish (bot.coordination)
        return IngestedArticle(stored, new_matches, new_alerts)

    def add_article(
        self, source: str, guid: str, article: Article, fetched_at: datetime
    ) -> StoredArticle | None:
        """Store a new article; None (not an error) if (source, guid) is already stored."""
        with self._engine.begin() as connection:
            stored = _insert_article(connection, source, guid, article, fetched_at)
            if stored is not None:
                bump_counter(connection)
            return stored

    def add_article_with_matches(
        self,
        source: str,
        guid: str,
        article: Article,
        found: Sequence[Match],
        routes: Mapping[str, Sequence[int]],
        at: datetime,
        identity: ArticleIdentity = ArticleIdentity(),
    ) -> IngestedArticle | None:
        """Store a new article, its matches and their alerts in one transaction.

        All or nothing: a crash can never leave an article stored (and so "known", never looked
        at again) without the matches and alerts it should have produced. `routes` maps a
        watchlist name to the chats alerted for it. None if (source, guid) is already stored.
        """
        with self._engine.begin() as connection:
            stored = _insert_article(connection, source, guid, article, at, identity)
            if stored is None:
                return None
            # One story, one alert: copies of a story already alerted to a chat stay quiet there.
            story = assign_story(connection, stored.id, article, at)
            new_matches, new_alerts = _insert_matches(
                connection, stored.id, found, routes, at, story=story
            )
            bump_counter(connection)  # other workers re-publish (bot.coordination)
        return IngestedArticle(stored, new_matches, new_alerts)

    def add_match(self, article_id: int, match: Match, at: datetime) -> bool:
        """Record that an article matched a watchlist; False if that pair was already recorded."""
        with self._engine.begin() as connection:
            added = _insert_match(connection, article_id, match, at)
            if added:
                bump_counter(connection)
            return added

    # Alert outbox

    def enqueue_alert(self, chat_id: int, article_id: int, match: Match, at: datetime) -> bool:
        """Queue an alert; False if this chat already has one for this article (from any watchlist).

        The first watchlist to enqueue wins: a chat gets one message per article, not one per
        matching watchlist.
        """
        with self._engine.begin() as connection:
            return _insert_alert(connection, chat_id, article_id, match, at)

    def pending_alerts(
        self, limit: int = 100, exclude_chats: Collection[int] = (), chat_id: int | None = None
    ) -> list[PendingAlert]:
        """Alerts waiting to be sent, oldest first, each with its article.

        `exclude_chats` leaves out chats the caller is holding back (after a failed send), so
        that one stuck chat can never hide the alerts of the others behind it; `chat_id` keeps
        only that chat's queue. Whether an alert is due yet (`next_attempt_at`) is the caller's
        call: a chat's queue is held as a whole behind its first alert.
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
        if chat_id is not None:
            query = query.where(outbox.c.chat_id == chat_id)
        with self._engine.begin() as connection:
            rows = connection.execute(query).all()
        return [_pending_alert(row._mapping) for row in rows]

    def pending_chats(self) -> list[tuple[int, datetime | None]]:
        """Each chat with pending alerts and when its oldest one may be tried (None: now).

        Ordered by that oldest alert, so the chat waiting longest goes first. The head decides
        for the whole chat: later alerts never overtake it.
        """
        query = (
            select(outbox.c.chat_id, outbox.c.next_attempt_at)
            .where(outbox.c.status == "pending")
            .order_by(outbox.c.created_at, outbox.c.id)
        )
        heads: dict[int, datetime | None] = {}
        with self._engine.begin() as connection:
            for chat_id, next_attempt_at in connection.execute(query):
                heads.setdefault(chat_id, next_attempt_at)
        return list(heads.items())

    def mark_alert_sending(self, alert_id: int, at: datetime) -> None:
        """Claim a pending alert just before handing it to Telegram.

        Raises AlertStateError if it is not pending (someone else claimed or finished it).
        """
        _transition(self._engine, alert_id, ("pending",), status="sending", updated_at=at)

    def mark_alert_sent(
        self, alert_id: int, at: datetime, outcome: str, message_id: int | None = None
    ) -> None:
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
            message_id=message_id,
        )

    def mark_alert_failed(
        self,
        alert_id: int,
        error: str,
        at: datetime,
        *,
        permanent: bool = False,
        retry_at: datetime | None = None,
    ) -> None:
        """Record a send that certainly did not deliver the alert.

        A temporary failure puts it back in the queue, not to be tried before `retry_at` (None:
        at once); a permanent one (the chat blocked the bot, the message can never be accepted)
        ends it as `failed`, so it neither retries forever nor holds up the chat's later alerts.
        """
        _transition(
            self._engine,
            alert_id,
            ("sending", "unknown"),
            status="failed" if permanent else "pending",
            attempts=outbox.c.attempts + 1,
            last_error=error,
            updated_at=at,
            next_attempt_at=None if permanent else retry_at,
        )

    def mark_alert_unknown(self, alert_id: int, error: str, at: datetime) -> None:
        """Record a send whose request may have reached Telegram but whose answer never came.

        Like a crash mid-send (see `recover_interrupted_alerts`), it is never resent.
        """
        _transition(
            self._engine,
            alert_id,
            ("sending",),
            status="unknown",
            attempts=outbox.c.attempts + 1,
            last_error=error,
            updated_at=at,
        )

    def claim_alerts(
        self, alert_ids: Sequence[int], at: datetime, *, lease: ChatLease | None = None
    ) -> list[int]:
        """Claim several pending alerts at once for one digest message; returns those claimed.

        One transaction: every alert still pending moves to `sending` together, and one that is
        not pending any more (another process took it) is left out, so an alert can never be in
        two digests, nor in a digest and a single message. With a ``lease`` (many workers,
        bot.outbox_claims) the claim holds only while the lease is still ours: LeaseLost if not.
        """
        if not alert_ids:
            return []
        ids = list(alert_ids)
        if lease is not None:
            with self._engine.begin() as connection:
                return claim_leased(connection, ids, at, lease)
        # One UPDATE ... RETURNING, not a read then a write: in SQLite a transaction that read
        # first cannot take the write lock once another connection has committed meanwhile.
        statement = (
            update(outbox)
            .where(outbox.c.id.in_(ids), outbox.c.status == "pending")
            .values(status="sending", updated_at=at)
            .returning(outbox.c.id)
        )
        with self._engine.begin() as connection:
            claimed = set(connection.scalars(statement).all())
        return [alert_id for alert_id in ids if alert_id in claimed]

    def settle_alerts(
        self,
        alert_ids: Sequence[int],
        at: datetime,
        status: str,
        *,
        message_id: int | None = None,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record the outcome of one digest message for every alert it carried, in one
        transaction: `sent`/`logged` (with the message id), `pending` (a temporary failure, not
        before ``retry_at``), `failed` or `unknown` (see the single-alert methods above)."""
        if status not in (*ALERT_OUTCOMES, "pending", "failed", "unknown"):
            raise ValueError(f"cannot settle alerts as {status!r}")
        values: dict[str, Any] = {"status": status, "updated_at": at}
        if status in ALERT_OUTCOMES:
            values.update(sent_at=at, message_id=message_id)
        else:
            values.update(attempts=outbox.c.attempts + 1, last_error=error)
            if status != "unknown":
                values["next_attempt_at"] = retry_at if status == "pending" else None
        with self._engine.begin() as connection:
            connection.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(alert_ids)), outbox.c.status == "sending")
                .values(**values)
            )

    def recover_interrupted_alerts(self, at: datetime) -> int:
        """Settle alerts a crash left in `sending`; returns how many. Call once at start-up, and
        only when no other process can be sending (SQLite, bot.instance_lock); several workers
        on PostgreSQL settle a dead worker's sends by its lease instead (bot.outbox_claims).

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

    def alert_counts(self) -> dict[str, int]:
        """How many outbox rows are in each state (for status reports and tests)."""
        query = select(outbox.c.status, func.count()).group_by(outbox.c.status)
        with self._engine.begin() as connection:
            return {status: count for status, count in connection.execute(query)}

    # Chats

    def chat_states(self) -> dict[int, ChatState]:
        """What delivery learnt about chats: upgrades to supergroups, and chats that refused us."""
        with self._engine.begin() as connection:
            rows = connection.execute(select(chat_states)).all()
        return {
            row.chat_id: ChatState(
                row.chat_id, row.migrated_to, row.disabled_reason, row.burst_since
            )
            for row in rows
        }

    def set_chat_burst(self, chat_id: int, since: datetime | None, at: datetime) -> None:
        """Switch a chat to burst digests since ``since`` (None: back to instant alerts)."""
        with self._engine.begin() as connection:
            _upsert_chat_state(connection, chat_id, at, burst_since=since)

    def record_chat_migration(self, chat_id: int, new_chat_id: int, at: datetime) -> None:
        """Remember that a group became a supergroup: its alerts go to `new_chat_id` from now on.

        Chats that were themselves upgraded earlier and pointed at `chat_id` follow it too.
        """
        with self._engine.begin() as connection:
            _upsert_chat_state(connection, chat_id, at, migrated_to=new_chat_id)
            connection.execute(
                update(chat_states)
                .where(chat_states.c.migrated_to == chat_id)
                .values(migrated_to=new_chat_id, updated_at=at)
            )

    def other_reports(self, article_ids: list[int]) -> dict[int, tuple[str, ...]]:
        """For each article, the sources of the other reports of its story (bot.story_store),
        each once, earliest first: an alert's "also reported by"."""
        with self._engine.begin() as connection:
            related = related_reports(connection, article_ids)
        return {
            article_id: tuple(dict.fromkeys(source for source, _ in reports))
            for article_id, reports in related.items()
        }

    def mute(self, chat_id: int, watchlist: str, until: datetime) -> None:
        """Deliver the watchlist's alerts to this chat silently until ``until`` (replaces any
        earlier mute of that pair)."""
        with self._engine.begin() as connection:
            statement = _insert(connection, mutes).values(
                chat_id=chat_id, watchlist=watchlist, until=until
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[mutes.c.chat_id, mutes.c.watchlist], set_={"until": until}
                )
            )

    def unmute(self, chat_id: int, watchlist: str | None = None) -> int:
        """End the chat's mute of ``watchlist`` (None: of every watchlist); how many ended."""
        statement = mutes.delete().where(mutes.c.chat_id == chat_id)
        if watchlist is not None:
            statement = statement.where(mutes.c.watchlist == watchlist)
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount

    def muted(self, at: datetime) -> set[tuple[int, str]]:
        """(chat, watchlist) pairs muted at ``at``."""
        query = select(mutes.c.chat_id, mutes.c.watchlist).where(mutes.c.until > at)
        with self._engine.begin() as connection:
            return {(chat_id, watchlist) for chat_id, watchlist in connection.execute(query)}

    def mute_source(self, chat_id: int, source: str, until: datetime) -> None:
        """Deliver alerts from ``source`` to this chat silently until ``until``, whatever their
        watchlist (replaces any earlier mute of that pair)."""
        with self._engine.begin() as connection:
            statement = _insert(connection, source_mutes).values(
                chat_id=chat_id, source=source, until=until
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[source_mutes.c.chat_id, source_mutes.c.source],
                    set_={"until": until},
                )
            )

    def unmute_source(self, chat_id: int, source: str | None = None) -> int:
        """End the chat's mute of ``source`` (None: of every source); how many ended."""
        statement = source_mutes.delete().where(source_mutes.c.chat_id == chat_id)
        if source is not None:
            statement = statement.where(source_mutes.c.source == source)
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount

    def mutes(self, at: datetime) -> Mutes:
        """Every watchlist and source mute in force at ``at``, read in one transaction."""
        by_watchlist = select(mutes.c.chat_id, mutes.c.watchlist).where(mutes.c.until > at)
        by_source = select(source_mutes.c.chat_id, source_mutes.c.source).where(
            source_mutes.c.until > at
        )
        with self._engine.begin() as connection:
            return Mutes(
                watchlists=frozenset((c, n) for c, n in connection.execute(by_watchlist)),
                sources=frozenset((c, n) for c, n in connection.execute(by_source)),
            )

    def active_mutes(self, chat_id: int, at: datetime) -> list[ActiveMute]:
        """The chat's mutes in force at ``at``: watchlists, then sources, each by name."""
        by_watchlist = select(mutes.c.watchlist, mutes.c.until).where(
            mutes.c.chat_id == chat_id, mutes.c.until > at
        )
        by_source = select(source_mutes.c.source, source_mutes.c.until).where(
            source_mutes.c.chat_id == chat_id, source_mutes.c.until > at
        )
        with self._engine.begin() as connection:
            found = [ActiveMute("watchlist", n, u) for n, u in connection.execute(by_watchlist)]
            found += [ActiveMute("source", n, u) for n, u in connection.execute(by_source)]
        return sorted(found, key=lambda mute: (mute.kind != "watchlist", mute.name))

    def set_chat_disabled(self, chat_id: int, reason: str | None, at: datetime) -> None:
        """Stop (reason given) or resume (None) alerts to a chat."""
        with self._engine.begin() as connection:
            _upsert_chat_state(connection, chat_id, at, disabled_reason=reason)

    # Stories and backtests (feeds.stories, bot.story_store)

    def also_reported_by(self, article_id: int) -> list[StoryMate]:
        """The other articles of an article's story (copies run by other outlets, re-publications),
        earliest first; empty when the article is the only one of its story."""
        with self._engine.begin() as connection:
            return also_reported_by(connection, article_id)

    def articles_since(self, since: datetime) -> list[StoredArticle]:
        """Stored articles fetched at or after `since`, oldest first (for backtests)."""
        query = select(articles).where(articles.c.fetched_at >= since).order_by(articles.c.id)
        with self._engine.begin() as connection:
            return [_stored_article(row._mapping) for row in connection.execute(query)]

    def matched_article_ids(self, watchlist: str, since: datetime) -> set[int]:
        """Ids of articles fetched at or after `since` that are recorded as matching `watchlist`."""
        query = (
            select(matches.c.article_id)
            .join_from(matches, articles, matches.c.article_id == articles.c.id)
            .where(matches.c.watchlist == watchlist, articles.c.fetched_at >= since)
        )
        with self._engine.begin() as connection:
            return set(connection.scalars(query))

    # Feeds

    def feed_items(self, watchlist: str | None, limit: int) -> list[FeedItem]:
        """The newest matched articles of a watchlist, or of all watchlists when it is None.

        For a watchlist: newest match first (ties by article id, newest first, so feeds are
        deterministic). For None: each matched article once, with all its watchlists and the
        union of their terms, ordered by its first match (the moment it entered any feed).
        """
        with self._engine.begin() as connection:
            if watchlist is None:
                return _with_related(connection, _all_feed_items(connection, limit))
            return _with_related(connection, _watchlist_feed_items(connection, watchlist, limit))

    def feed_history(self, watchlist: str | None, *, content: bool = True) -> list[FeedItem]:
        """Every item of a watchlist's feed (or of `all`), oldest first: the order they entered
        the feed (first match, then article id), which the feed's archive pages are cut from.

        ``content=False`` leaves the articles' text and html empty (a fraction of the reading):
        enough to tell which documents changed; `articles_by_id` then fetches the rest."""
        with self._engine.begin() as connection:
            return _with_related(connection, _feed_history(connection, watchlist, content))

    def source_history(self, source: str, *, content: bool = True) -> list[FeedItem]:
        """Every article of a source, matched or not, oldest first (by when it was stored), for
        the source's full-text feed; without watchlists, terms or snippet. ``content`` as for
        `feed_history`."""
        query = (
            select(*(articles.c if content else _WITHOUT_CONTENT))
            .where(articles.c.source == source)
            .order_by(articles.c.fetched_at, articles.c.id)
        )
        with self._engine.begin() as connection:
            rows = connection.execute(query).all()
        return [
            FeedItem(
                article=(article := _stored_article(row._mapping, content=content)),
                watchlists=(),
                terms=(),
                snippet="",
                matched_at=article.fetched_at,
            )
            for row in rows
        ]

    def articles_by_id(self, ids: Collection[int]) -> dict[int, StoredArticle]:
        """Full stored articles by id (ids not found are left out)."""
        unique = list(dict.fromkeys(ids))
        found: dict[int, StoredArticle] = {}
        with self._engine.begin() as connection:
            for start in range(0, len(unique), _GUID_CHUNK):
                chunk = unique[start : start + _GUID_CHUNK]
                for row in connection.execute(select(articles).where(articles.c.id.in_(chunk))):
                    article = _stored_article(row._mapping)
                    found[article.id] = article
        return found


def _with_related(connection: Connection, items: list[FeedItem]) -> list[FeedItem]:
    """Fill each item's `related` with the other outlets' reports of its story (bot.story_store)."""
    related = related_reports(connection, [item.article.id for item in items])
    return [
        dataclasses.replace(item, related=related[item.article.id])
        if related.get(item.article.id)
        else item
        for item in items
    ]


def _upsert_poll_success(
    connection: Connection, name: str, values: dict[str, Any], not_modified: bool
) -> None:
    statement = _insert(connection, sources).values(
        name=name, polls=1, not_modified_polls=int(not_modified), **values
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[sources.c.name],
            set_={
                **values,
                "polls": sources.c.polls + 1,
                "not_modified_polls": sources.c.not_modified_polls + int(not_modified),
            },
        )
    )


def _not_modified_values(poll: NotModifiedPoll) -> dict[str, Any]:
    """The source's columns a poll answered 304 sets, besides its counters."""
    gap = poll.publish_gap_seconds
    return {
        **({} if gap is None else {"publish_gap_seconds": gap}),
        "url": poll.url,
        "etag": poll.validators.etag,
        "last_modified": poll.validators.last_modified,
        "last_polled_at": poll.at,
        "last_success_at": poll.at,
        "last_error": None,
        "last_error_kind": None,
        "failure_streak": 0,
        "fetch_url": poll.fetch_url,
        "next_poll_at": poll.next_poll_at,
        "disabled_reason": None,
    }


_COUNTED_304: dict[str, Any] = {
    "polls": sources.c.polls + 1,
    "not_modified_polls": sources.c.not_modified_polls + 1,
}
"""The counters a 304 moves, as SQL: made once, so that every release that writes them holds
the same expressions (bot.coordination.release_sources groups releases by them)."""


def not_modified_update(poll: NotModifiedPoll) -> dict[str, Any]:
    """What `Store.record_not_modified_polls` writes for `poll`, as the values of an UPDATE of
    the source's existing row (bot.fleet writes it with the lease's release, in one statement)."""
    return {**_not_modified_values(poll), **_COUNTED_304}


def source_state_of(row: RowMapping, url: str) -> SourceState:
    """A stored source row (read here, or returned by a claim: bot.coordination) as the state
    of the source now configured at `url`.

    When the configured URL changed since the row was stored, what belonged to the old URL is
    dropped: its validators (an ETag of the old URL could earn a wrong 304), the redirect target
    and a 410's disabling (the user pointed the source somewhere new).
    """
    same_url = row["url"] == url
    return SourceState(
        name=row["name"],
        url=url,
        validators=ConditionalHeaders(row["etag"], row["last_modified"])
        if same_url
        else ConditionalHeaders(),
        last_polled_at=row["last_polled_at"],
        last_success_at=row["last_success_at"],
        last_error=row["last_error"],
        failure_streak=row["failure_streak"],
        fetch_url=row["fetch_url"] if same_url else None,
        next_poll_at=row["next_poll_at"] if same_url else None,
        disabled_reason=row["disabled_reason"] if same_url else None,
        last_error_kind=row["last_error_kind"],
        polls=row["polls"],
        not_modified_polls=row["not_modified_polls"],
        publish_gap_seconds=row["publish_gap_seconds"],
    )


def _aware(value: Any) -> datetime | None:
    """An instant read through an aggregate (no column type applied): aware UTC, or None.

    SQLite hands aggregates back as text, other drivers as datetimes.
    """
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _identity_values(identity: ArticleIdentity) -> dict[str, Any]:
    return {
        "url_key": identity.url_key,
        "fingerprint": identity.fingerprint,
        "page_etag": identity.page_validators.etag,
        "page_last_modified": identity.page_validators.last_modified,
    }


def _insert_matches(
    connection: Connection,
    article_id: int,
    found: Sequence[Match],
    routes: Mapping[str, Sequence[int]],
    at: datetime,
    story: int | None = None,
) -> tuple[int, int]:
    """Record the matches not recorded yet and queue their alerts: (new matches, new alerts).

    With a `story`, a chat that already had an alert for an article of it gets none."""
    new_matches = new_alerts = 0
    for match in found:
        if not _insert_match(connection, article_id, match, at):
            continue
        new_matches += 1
        for chat_id in routes.get(match.watchlist, ()):
            if story is not None and story_alerted(connection, story, chat_id):
                continue
            new_alerts += _insert_alert(connection, chat_id, article_id, match, at)
    return new_matches, new_alerts


def _upsert_chat_state(
    connection: Connection, chat_id: int, at: datetime, **values: object
) -> None:
    """Set some of a chat's state columns, creating its row on first use."""
    statement = _insert(connection, chat_states).values(chat_id=chat_id, updated_at=at, **values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[chat_states.c.chat_id], set_={**values, "updated_at": at}
        )
    )


def _insert_article(
    connection: Connection,
    source: str,
    guid: str,
    article: Article,
    fetched_at: datetime,
    identity: ArticleIdentity = ArticleIdentity(),
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
        **_identity_values(identity),
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


SERVER_POOL_SIZE = 12
"""Connections a PostgreSQL engine keeps open. SQLAlchemy closes a connection opened beyond its
pool as soon as it is returned, so a pool smaller than the threads using it at once (asyncio's
default executor runs up to the CPU count + 4, besides the event loop's own calls) opened and
closed a connection for nearly every statement under load: 74 new sessions, each a new server
process, in a 14 s bench/scale round with the default of 5."""

SERVER_POOL_OVERFLOW = 8
"""Connections opened beyond the pool at busy moments (closed again as they come back)."""


def _create_engine(url: URL) -> Engine:
    """An engine for the URL; for SQLite, with the pragmas and transaction handling we rely on."""
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url,
            connect_args=connect_arguments(url),
            pool_size=SERVER_POOL_SIZE,
            max_overflow=SERVER_POOL_OVERFLOW,
        )
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
        if connection.dialect.name == "postgresql":
            # Workers of a fleet starting together take turns: the first migrates, the others
            # wait for its commit and find the schema current (the lock ends with the transaction).
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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


def _merged_feed_item(article: StoredArticle, rows: Sequence[Mapping[Any, Any]]) -> FeedItem:
    """One feed item for all matches of an article, earliest first.

    Ties (an article's matches share their instant) go by watchlist name in code point order,
    sorted here rather than by the database: PostgreSQL orders text by the database's collation
    (en_US puts "a_b" before "a1"), SQLite by bytes, and a feed must be the same bytes on both."""
    rows = sorted(rows, key=lambda row: (row["matched_at"], row["watchlist"]))
    terms = dict.fromkeys(term for row in rows for term in row["terms"])
    return FeedItem(
        article=article,
        watchlists=tuple(row["watchlist"] for row in rows),
        terms=tuple(terms),
        snippet=rows[0]["snippet"],
        matched_at=rows[0]["matched_at"],
    )


_WITHOUT_CONTENT = tuple(column for column in articles.c if column.name not in ("text", "html"))
"""The article columns a feed needs to tell whether an entry changed (updated_at moves with any
edit), without the bulk of the text."""


def _feed_history(connection: Connection, watchlist: str | None, content: bool) -> list[FeedItem]:
    """One pass over the matches joined to their articles, grouped per article in Python (no IN
    list, so any length of history is fine); the first row of an article is its first match."""
    query = (
        select(matches, *(articles.c if content else _WITHOUT_CONTENT))
        .join_from(matches, articles, matches.c.article_id == articles.c.id)
        .order_by(matches.c.matched_at, articles.c.id, matches.c.watchlist)
    )
    if watchlist is not None:
        query = query.where(matches.c.watchlist == watchlist)
    grouped: dict[int, tuple[StoredArticle, list[dict[str, Any]]]] = {}
    for row in connection.execute(query):
        mapping = row._mapping
        article_id = mapping[articles.c.id]
        if article_id not in grouped:
            grouped[article_id] = (_stored_article(mapping, content=content), [])
        grouped[article_id][1].append(
            {
                "watchlist": mapping[matches.c.watchlist],
                "terms": mapping[matches.c.terms],
                "snippet": mapping[matches.c.snippet],
                "matched_at": mapping[matches.c.matched_at],
            }
        )
    return [_merged_feed_item(article, rows) for article, rows in grouped.values()]


def _stored_article(row: RowMapping, *, content: bool = True) -> StoredArticle:
    """The article columns of a row, looked up by Column so joins with clashing names work.

    ``content=False`` for a row selected without text and html (see `_WITHOUT_CONTENT`): they
    are left empty."""
    columns = articles.c
    return StoredArticle(
        id=row[columns.id],
        source=row[columns.source],
        guid=row[columns.guid],
        url=row[columns.url],
        title=row[columns.title],
        text=row[columns.text] if content else "",
        html=row[columns.html] if content else "",
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
        next_attempt_at=row[outbox.c.next_attempt_at],
        created_at=row[outbox.c.created_at],
    )
