"""One poll of one source, end to end: fetch → parse → full text → clean → match → store.

A poll never raises for a source's failures: it records them in the store and returns a PollReport
whose `error` says what went wrong, so one broken source never stops the others. CPU-heavy steps
(parsing, cleaning) run in worker threads so the feed server stays responsive meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from feeds.entry_article import article_from_entry, merge_page_and_feed, needs_page
from feeds.errors import FetchError, ParseError
from feeds.extract import extract_article
from feeds.fetch import PAGE_ACCEPT, FetchLimits, fetch
from feeds.match import Matcher
from feeds.models import Article, Entry, FetchResult
from feeds.parse import parse_feed

from .store import Store

log = logging.getLogger("wirewatch.ingest")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SourceJob:
    """What a poll needs to know about a source (a slice of its settings)."""

    name: str
    url: str
    full_text: str = "auto"


@dataclass(frozen=True, slots=True)
class PollReport:
    source: str
    new_articles: int = 0
    new_matches: int = 0
    new_alerts: int = 0
    not_modified: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(slots=True)
class Ingestor:
    """Everything a poll uses, built once by the app and shared by every poll."""

    store: Store
    client: httpx.AsyncClient
    matcher: Matcher
    routes: Mapping[str, Sequence[int]]
    """watchlist name → chat ids that get its alerts."""
    limits: FetchLimits
    clock: Clock = utc_now

    async def poll(self, source: SourceJob) -> PollReport:
        try:
            return await self._poll(source)
        except (FetchError, ParseError) as error:
            message = str(error)
        except Exception as error:  # a bug or a surprise in one source must not stop the rest
            log.exception("source %s: unexpected failure", source.name)
            message = f"unexpected {type(error).__name__}: {error}"
        self.store.record_poll_failure(source.name, source.url, message, self.clock())
        log.warning("source %s failed: %s", source.name, message)
        return PollReport(source.name, error=message)

    async def _poll(self, source: SourceJob) -> PollReport:
        state = self.store.source_state(source.name, source.url)
        response = await fetch(self.client, source.url, state.validators, limits=self.limits)
        if not isinstance(response, FetchResult):
            self.store.record_poll_success(
                source.name, source.url, response.validators, self.clock()
            )
            return PollReport(source.name, not_modified=True)
        entries = await asyncio.to_thread(parse_feed, response, source.name)
        report = await self._ingest_entries(source, entries)
        # Validators are stored only once the entries are safely in, so that a crash mid-poll
        # makes the next poll fetch the feed again instead of getting a 304 and missing entries.
        self.store.record_poll_success(source.name, source.url, response.validators, self.clock())
        return report

    async def _ingest_entries(self, source: SourceJob, entries: Sequence[Entry]) -> PollReport:
        known = self.store.known_guids(source.name, [entry.guid for entry in entries])
        fresh = [entry for entry in entries if entry.guid not in known]
        articles = matches = alerts = 0
        warnings: list[str] = []
        # Oldest first, so that alerts go out in the order the stories were published.
        for entry in reversed(fresh):
            article, warning = await self._article_for(source, entry)
            if warning:
                warnings.append(warning)
            found = self.matcher.match(article, source.name)
            ingested = self.store.add_article_with_matches(
                source.name, entry.guid, article, found, self.routes, self.clock()
            )
            if ingested is None:
                continue
            articles += 1
            matches += ingested.new_matches
            alerts += ingested.new_alerts
        return PollReport(source.name, articles, matches, alerts, warnings=tuple(warnings))

    async def _article_for(self, source: SourceJob, entry: Entry) -> tuple[Article, str | None]:
        """The cleaned article of an entry: its page's text when wanted, else the feed's text."""
        from_feed = await asyncio.to_thread(article_from_entry, entry)
        if not needs_page(entry, from_feed, source.full_text):
            return from_feed, None
        try:
            page = await fetch(self.client, entry.url, limits=self.limits, accept=PAGE_ACCEPT)
        except FetchError as error:
            warning = f"article page {entry.url}: {error}; using the feed's text"
            log.info("%s: %s", source.name, warning)
            return from_feed, warning
        if not isinstance(page, FetchResult):  # no validators were sent, so 304 is unexpected
            return from_feed, None
        from_page = await asyncio.to_thread(extract_article, page.content, page.url)
        return merge_page_and_feed(from_page, from_feed), None
