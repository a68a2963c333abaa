"""The database: sources' fetch state, cleaned articles, matches and the alert outbox.

SQLAlchemy 2 Core over SQLite (WAL) by default; the SQL is portable so PostgreSQL can follow without
rewriting queries. The schema is owned by Alembic migrations in bot/migrations, run at open().

INTERFACE STUB: the signatures and dataclasses below are the contract; bodies are to be implemented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from feeds.models import Article, ConditionalHeaders, Match


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
    @classmethod
    def open(cls, url: str) -> Store:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def source_state(self, name: str, url: str) -> SourceState:
        raise NotImplementedError

    def record_poll_success(
        self, name: str, url: str, validators: ConditionalHeaders, at: datetime
    ) -> None:
        raise NotImplementedError

    def record_poll_failure(self, name: str, url: str, error: str, at: datetime) -> None:
        raise NotImplementedError

    def known_guids(self, source: str, guids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    def add_article(
        self, source: str, guid: str, article: Article, fetched_at: datetime
    ) -> StoredArticle | None:
        raise NotImplementedError

    def add_match(self, article_id: int, match: Match, at: datetime) -> bool:
        raise NotImplementedError

    def enqueue_alert(
        self, chat_id: int, article_id: int, match: Match, at: datetime
    ) -> bool:
        raise NotImplementedError

    def pending_alerts(self, limit: int = 100) -> list[PendingAlert]:
        raise NotImplementedError

    def mark_alert_sending(self, alert_id: int, at: datetime) -> None:
        raise NotImplementedError

    def mark_alert_sent(self, alert_id: int, at: datetime, outcome: str) -> None:
        raise NotImplementedError

    def mark_alert_failed(self, alert_id: int, error: str, at: datetime) -> None:
        raise NotImplementedError

    def recover_interrupted_alerts(self, at: datetime) -> int:
        raise NotImplementedError

    def feed_items(self, watchlist: str | None, limit: int) -> list[FeedItem]:
        raise NotImplementedError
