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
    Float,
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
→ failed on a permanent one (never retried); sending → unknown when a crash or a lost answer left
the outcome unknown (never resent)."""


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
    # Scheduling and health (see bot.health): where polls go after a permanent redirect (null:
    # `url`), when the next poll is due, why the source is disabled (410; null: enabled), the
    # kind of the last error, and how many polls there were and how many of them were 304s.
    Column("fetch_url", Text),
    Column("next_poll_at", UTCDateTime),
    Column("disabled_reason", Text),
    Column("last_error_kind", Text),
    Column("polls", Integer, nullable=False, server_default="0"),
    Column("not_modified_polls", Integer, nullable=False, server_default="0"),
    # Fleet coordination (0009, bot.coordination): the worker polling the source and until when
    # its claim holds (null: nobody). Claims select due sources by next_poll_at.
    Column("lease_owner", Text),
    Column("lease_expires_at", UTCDateTime),
    # The median gap between the source's recent items, seconds, as of its last poll that
    # fetched the feed (0012; 0: fewer than three dated items; null: not known yet): a 304
    # needs no read of the source's articles to know its next poll (bot.ingest).
    Column("publish_gap_seconds", Float),
    PrimaryKeyConstraint("name"),
    Index(None, "next_poll_at"),
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
    # Identity beyond the guid (feeds.canonical): the URL with trackers, AMP and mobile variants
    # removed, and a fingerprint of the entry's text that tells an edited entry from an unchanged
    # one; the article page's validators, so an edited entry re-fetches its page conditionally.
    Column("url_key", Text),
    Column("fingerprint", Text),
    Column("page_etag", Text),
    Column("page_last_modified", Text),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("source", "guid"),
    Index(None, "url"),
    Index(None, "source", "url_key"),
    Index(None, "updated_at"),  # the retention sweep selects by it (0010)
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

# Near-duplicate stories (feeds.stories, bot.story_store): the story of each article, named by the
# id of its first article, and the article's fingerprint for comparing later articles with it.
article_stories = Table(
    "article_stories",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    Column("story_id", Integer, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("article_id"),
    Index(None, "story_id"),
    Index(None, "created_at"),
)

# The smallest shingle hashes of each article's fingerprint: articles sharing one are compared.
story_keys = Table(
    "story_keys",
    metadata,
    Column("key", BigInteger, nullable=False),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("key", "article_id"),
    Index(None, "article_id"),
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
    # Not before this instant (Telegram's retry_after, or back-off after an error); null: now.
    Column("next_attempt_at", UTCDateTime),
    Column("message_id", BigInteger),  # Telegram's id for the sent message
    # The worker that moved the alert to `sending` (0011; bot.outbox_claims), for people reading
    # the outbox after a worker stopped mid-send.
    Column("claimed_by", Text),
    PrimaryKeyConstraint("id"),
    # One alert per article per chat, even when two watchlists routed to the chat both match.
    UniqueConstraint("chat_id", "article_id"),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{status}'" for status in ALERT_STATUSES) + ")",
        name="status",
    ),
    Index(None, "status", "created_at"),
    Index(None, "article_id"),  # deleting an article checks its alerts (retention, 0010)
    sqlite_autoincrement=True,
)

chat_states = Table(
    "chat_states",
    metadata,
    Column("chat_id", BigInteger, nullable=False),
    # The supergroup a group was upgraded to: alerts for chat_id go there (routes keep the old id).
    Column("migrated_to", BigInteger),
    # Why alerts to this chat stopped (the bot was blocked or removed); null: enabled.
    Column("disabled_reason", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    # Since when the chat gets digests because of a burst of news (bot.delivery); null: no burst.
    Column("burst_since", UTCDateTime),
    # Alerts folded out of the chat's overflowing queue since its last digest (0010,
    # bot.outbox_bound): the next digest says how many.
    Column("folded_alerts", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("chat_id"),
)

# Chat leases (0011, bot.outbox_claims): the worker that may send to a chat, until when, and the
# last minute of sends to the chat (JSON [[POSIX seconds, owner], ...]) for the next holder.
chat_leases = Table(
    "chat_leases",
    metadata,
    Column("chat_id", BigInteger, nullable=False),
    Column("owner", Text, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("recent_sends", Text, nullable=False),
    PrimaryKeyConstraint("chat_id"),
)

mutes = Table(
    "mutes",
    metadata,
    Column("chat_id", BigInteger, nullable=False),
    Column("watchlist", Text, nullable=False),
    # Until then the watchlist's alerts reach this chat silently (no notification sound).
    Column("until", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("chat_id", "watchlist"),
)

# Until then alerts from this source reach this chat silently, whatever their watchlist (0008).
source_mutes = Table(
    "source_mutes",
    metadata,
    Column("chat_id", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    Column("until", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("chat_id", "source"),
)

# Learned per-site boilerplate (feeds.templates): a site's page count, and per block of text seen on
# its pages a decayed page count as of page `last_page` and how many pages it was ever on.
site_templates = Table(
    "site_templates",
    metadata,
    Column("site", Text, nullable=False),
    Column("pages", Integer, nullable=False),
    PrimaryKeyConstraint("site"),
)

site_blocks = Table(
    "site_blocks",
    metadata,
    Column("site", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("weight", Float, nullable=False),
    Column("last_page", Integer, nullable=False),
    Column("sightings", Integer, nullable=False),
    PrimaryKeyConstraint("site", "fingerprint"),
)

# Retention (0010, bot.retention): per feed document (its path), how many entries were pruned from
# the front of its history, so its archive pages keep their numbers and contents after a prune.
feed_archive_starts = Table(
    "feed_archive_starts",
    metadata,
    Column("feed", Text, nullable=False),
    Column("pruned_entries", Integer, nullable=False),
    PrimaryKeyConstraint("feed"),
)

# What pruned articles were called, so a feed still listing an old entry does not resurrect it;
# `seen_at`: when it was pruned or last seen listed since (forgotten a retention period later).
pruned_articles = Table(
    "pruned_articles",
    metadata,
    Column("source", Text, nullable=False),
    Column("guid", Text, nullable=False),
    Column("url_key", Text),
    Column("seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("source", "guid"),
    Index(None, "source", "url_key"),
    Index(None, "seen_at"),
)

# Admin alerts (0010, bot.admin_alerts): per condition, since when it holds (null: it does not),
# whether a report of it stands (1) or was resolved (0), and when it was last reported (at most
# once a day per condition, also across restarts).
admin_reports = Table(
    "admin_reports",
    metadata,
    Column("condition", Text, nullable=False),
    Column("active", Integer, nullable=False),
    Column("since", UTCDateTime),
    Column("reported_at", UTCDateTime),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("condition"),
)

# Fleet-wide host politeness (0009, bot.fleet_gate): per host, when any worker's last request to it
# started, and `fetch.per_host` numbered slots claimed like leases.
host_turns = Table(
    "host_turns",
    metadata,
    Column("host", Text, nullable=False),
    Column("last_start", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("host"),
)

host_slots = Table(
    "host_slots",
    metadata,
    Column("host", Text, nullable=False),
    Column("slot", Integer, nullable=False),
    Column("owner", Text),
    Column("expires_at", UTCDateTime),
    PrimaryKeyConstraint("host", "slot"),
)

# Requests of any worker waiting for a busy host (0013, bot.fleet_gate): each one's place (its
# source's due time, else when it first asked), so the host's slots and turns go to them in that
# order, and until when its place holds.
host_waiters = Table(
    "host_waiters",
    metadata,
    Column("waiter", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("waiter"),
    Index(None, "host", "since"),
)

# Counters bumped in the transactions that change what feeds show (0009, bot.coordination):
# every worker watches "feeds" and re-publishes when another worker's poll moved it.
change_counters = Table(
    "change_counters",
    metadata,
    Column("name", Text, nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)
