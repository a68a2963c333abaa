"""The database schema as SQLAlchemy Core tables: what the queries in bot.store are written against.

The migrations in bot/migrations create exactly these tables (a test compares the migrated database
with this metadata), so a change here needs a new migration revision too.

Only portable types are used, so the same tables serve SQLite and PostgreSQL. Two column types need
care that the databases do not give for free:

- `UTCDateTime`: SQLite has no timezone-aware timestamp; it would silently drop tzinfo and hand back
  naive datetimes. We store every instant normalised to UTC and return it aware, on any database.
- `JSONTerms`: the matched terms are a short list, stored as JSON text rather than a JSON column
  type so that SQLite and PostgreSQL store and compare it the same way.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Named constraints, so that later migrations (batch mode on SQLite) can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ALERT_STATUSES = ("pending", "sending", "sent", "logged", "unknown", "failed")
"""Outbox states: pending → sending → sent | logged; sending → pending on a temporary failure,
→ failed on a permanent one (never retried); sending → unknown when a crash left the outcome
unknown (never resent)."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored as UTC and always returned aware (UTC).

    Naive datetimes are refused: guessing their zone is how alerts end up an hour off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware instants")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONTerms(TypeDecorator[tuple[str, ...]]):
    """A tuple of strings, stored as a JSON array in a text column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: tuple[str, ...] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(list(value), ensure_ascii=False)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> tuple[str, ...] | None:
        if value is None:
            return None
        return tuple(str(term) for term in json.loads(value))


metadata = MetaData(naming_convention=NAMING_CONVENTION)

sources = Table(
    "sources",
    metadata,
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_polled_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("failure_streak", Integer, nullable=False),
    PrimaryKeyConstraint("name"),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, autoincrement=True, nullable=False),
    Column("source", Text, nullable=False),
    Column("guid", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("author", Text),
    Column("published", UTCDateTime),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("source", "guid"),
    Index(None, "url"),
    # Never reuse the id of a deleted article: ids appear in feed entry ids and outbox rows.
    sqlite_autoincrement=True,
)

matches = Table(
    "matches",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    Column("watchlist", Text, nullable=False),
    Column("terms", JSONTerms, nullable=False),
    Column("snippet", Text, nullable=False),
    Column("matched_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("article_id", "watchlist"),
    Index(None, "watchlist", "matched_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, autoincrement=True, nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    Column("watchlist", Text, nullable=False),
    Column("terms", JSONTerms, nullable=False),
    Column("snippet", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    PrimaryKeyConstraint("id"),
    # One alert per article per chat, even when two watchlists routed to the chat both match.
    UniqueConstraint("chat_id", "article_id"),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{status}'" for status in ALERT_STATUSES) + ")",
        name="status",
    ),
    Index(None, "status", "created_at"),
    sqlite_autoincrement=True,
)
