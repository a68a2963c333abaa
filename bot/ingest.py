"""One poll of one source, end to end: fetch → parse → full text → clean → match → store.

A poll never raises for a source's failures: it records them in the store and returns a PollReport
whose `error` says what went wrong, so one broken source never stops the others. CPU-heavy steps
(parsing, cleaning) run in worker threads so the feed server stays responsive meanwhile.

Every poll also decides when the next one is due (feeds.cadence) and stores it with the source's
health: a failure backs off or obeys Retry-After, a 410 disables the source with its reason, a
permanent redirect moves the source. Every request, feed or article page, waits for its host's
turn at the shared host gate, and article pages are fetched only where robots.txt allows.

An entry is the same article as a stored one when its guid or its canonical URL key is the same
(feeds.canonical); it is new otherwise. A known entry whose fingerprint changed is an update: the
stored article is rewritten in place (same id, `updated_at` moves) and its page fetched again only
if the page changed (conditional GET with the page's stored validators).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.exc import OperationalError

from feeds.cadence import (
    Cadence,
    FeedHints,
    after_failure,
    after_success,
    interval_for_gap,
    publication_gap,
)
from feeds.canonical import canonical_link, clean_url, fingerprint, url_key
from feeds.connector import guarding
from feeds.entry_article import article_from_entry, merge_page_and_feed, needs_page
from feeds.errors import FetchError, ParseError
from feeds.extract import clean_page
from feeds.fetch import FEED_ACCEPT, PAGE_ACCEPT, FetchLimits, fetch
from feeds.listing import ListingSelectors, parse_listing
from feeds.match import Matcher
from feeds.models import Article, ConditionalHeaders, Entry, FetchResult
from feeds.netguard import AddressPolicy, BlockedAddress, check_url
from feeds.parse import parse_feed_salvaged, parse_hints
from feeds.politeness import RequestGate
from feeds.robots import RobotsCache
from feeds.templates import site_of

from .bounds import bounded_article, newest_entries
from .database_faults import database_problem
from .metrics import Metrics
from .parse_pool import off_loop
from .poll_batch import NotModifiedBatch, NotModifiedPoll
from .retention import drop_pruned
from .store import ArticleIdentity, KnownArticle, SourceState, Store

log = logging.getLogger("wirewatch.ingest")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


DEFAULT_CADENCE = Cadence(
    every=timedelta(minutes=15), min_every=timedelta(minutes=15), max_every=timedelta(hours=1)
)
"""The settings' defaults, for jobs built without settings (tests, one-off polls)."""


@dataclass(frozen=True, slots=True)
class SourceJob:
    """What a poll needs to know about a source (a slice of its settings)."""

    name: str
    url: str
    full_text: str = "auto"
    cadence: Cadence = DEFAULT_CADENCE
    """The polling bounds the next poll is chosen within."""
    listing: ListingSelectors | None = None
    """For a `page` source: how to read article links off the listing page; None for a feed."""
    policy: AddressPolicy | None = None
    """The addresses its feed, redirects and article pages may reach; None: any (tests)."""


@dataclass(frozen=True, slots=True)
class PollReport:
    source: str
    new_articles: int = 0
    new_matches: int = 0
    new_alerts: int = 0
    not_modified: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())
    updated_articles: int = 0
    """Known articles whose entry changed, stored again as updates of the same article."""
    next_poll_at: datetime | None = None
    """When this source is due again; None when it is disabled."""


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
    gate: RequestGate | None = None
    """Per-host and global request limits shared by every poll; None: no limits (tests)."""
    robots: RobotsCache | None = None
    """robots.txt rules for article pages; None: not checked."""
    random: Callable[[], float] = random.random
    """Jitter for back-off (tests pass a fixed value)."""
    max_entries: int | None = None
    """Entries taken per poll, newest first (bot.bounds); None: all."""
    max_article_chars: int | None = None
    """Stored article text is cut to this at a paragraph (bot.bounds); None: no bound."""
    metrics: Metrics = field(default_factory=Metrics)
    """Where polls, articles, matches and cleaning times are counted (bot.metrics)."""

    async def poll(
        self,
        source: SourceJob,
        batch: NotModifiedBatch | None = None,
        state: SourceState | None = None,
    ) -> PollReport:
        """Poll one source; a 304 is recorded in `batch` when given (its owner writes the batch
        to the store, see bot.poll_batch), else in the store at once. `state`: the source's
        stored state when the caller has just read it (bot.fleet's claim returns it), else read
        here.

        A database that cannot be used (locked by another process, the disk full: see
        bot.database_faults) fails the poll with one clear line and records nothing; the next
        scheduled poll tries again.
        """
        try:
            return await self._poll_recorded(source, batch, state)
        except OperationalError as error:
            problem = database_problem(error)
            if problem is None:  # pragma: no cover - every OperationalError is sorted
                raise
            log.error("source %s: not polled: %s", source.name, problem)
            self.metrics.count_failed_poll("database")
            return PollReport(source.name, error=problem)

    async def _poll_recorded(
        self, source: SourceJob, batch: NotModifiedBatch | None, state: SourceState | None
    ) -> PollReport:
        if state is None:
            state = self.store.source_state(source.name, source.url)
        if state.disabled_reason:
            return PollReport(source.name, error=f"disabled: {state.disabled_reason}")
        failure: Exception
        try:
            report = await self._poll(source, state, batch)
            self.metrics.count_poll(report)
            return report
        except (FetchError, ParseError) as error:
            message = str(error)
            failure = error
        except Exception as error:  # a bug or a surprise in one source must not stop the rest
            if database_problem(error) is not None:
                raise  # not the source's failure, and not recordable now: see poll()
            log.exception("source %s: unexpected failure", source.name)
            message = f"unexpected {type(error).__name__}: {error}"
            failure = error
        return self._record_failure(source, state, failure, message)

    def _record_failure(
        self, source: SourceJob, state: SourceState, error: Exception, message: str
    ) -> PollReport:
        now = self.clock()
        fetch_error = error if isinstance(error, FetchError) else None
        decision = after_failure(
            now,
            streak=state.failure_streak + 1,
            interval=source.cadence.every,
            cadence=source.cadence,
            status=fetch_error.status if fetch_error else None,
            retry_after=fetch_error.retry_after if fetch_error else None,
            message=message,
            random=self.random,
        )
        if isinstance(error, FetchError):
            kind = str(error.kind)
        else:
            kind = "parse" if isinstance(error, ParseError) else "unexpected"
        self.metrics.count_failed_poll(kind)
        self.store.record_poll_failure(
            source.name,
            source.url,
            message,
            now,
            kind=kind,
            next_poll_at=decision.next_poll_at,
            disabled_reason=decision.disabled_reason,
        )
        if decision.disabled_reason:
            log.error("source %s disabled: %s", source.name, decision.disabled_reason)
        else:
            log.warning("source %s failed: %s", source.name, message)
        return PollReport(source.name, error=message, next_poll_at=decision.next_poll_at)

    async def _poll(
        self, source: SourceJob, state: SourceState, batch: NotModifiedBatch | None
    ) -> PollReport:
        target = state.fetch_url or source.url
        response = await fetch(
            self.client,
            target,
            state.validators,
            limits=self.limits,
            accept=PAGE_ACCEPT if source.listing else FEED_ACCEPT,
            gate=self.gate,
            policy=source.policy,
        )
        fetch_url = response.permanent_url or state.fetch_url
        if response.permanent_url:
            log.warning("source %s moved permanently to %s", source.name, response.permanent_url)
        if not isinstance(response, FetchResult):
            # Nothing changed, so neither did the source's publication gap: the stored one
            # serves, without reading the source's articles (worked out only when unknown).
            gap, found = state.publish_gap_seconds, None
            if gap is None:
                gap = found = self._publication_gap(source)
            next_poll = self._next_poll(source, response.lifetime, FeedHints(), gap)
            if batch is not None:
                batch.add(
                    NotModifiedPoll(
                        source.name,
                        source.url,
                        response.validators,
                        self.clock(),
                        fetch_url,
                        next_poll,
                        found,
                    )
                )
                return PollReport(source.name, not_modified=True, next_poll_at=next_poll)
            self.store.record_poll_success(
                source.name,
                source.url,
                response.validators,
                self.clock(),
                not_modified=True,
                fetch_url=fetch_url,
                next_poll_at=next_poll,
                publish_gap_seconds=found,
            )
            return PollReport(source.name, not_modified=True, next_poll_at=next_poll)
        if source.listing is not None:
            entries = await off_loop(
                parse_listing, response, source.name, source.listing
            )
            hints, salvaged = FeedHints(), None
        else:
            entries, salvaged = await off_loop(
                parse_feed_salvaged, response, source.name
            )
            hints = await off_loop(parse_hints, response)
            if salvaged:
                log.warning("source %s: %s", source.name, salvaged)
        report = await self._ingest_entries(source, entries)
        gap = self._publication_gap(source)
        next_poll = self._next_poll(source, response.lifetime, hints, gap)
        # Validators are stored only once the entries are safely in, so that a crash mid-poll
        # makes the next poll fetch the feed again instead of getting a 304 and missing entries.
        self.store.record_poll_success(
            source.name,
            source.url,
            response.validators,
            self.clock(),
            fetch_url=fetch_url,
            next_poll_at=next_poll,
            publish_gap_seconds=gap,
        )
        return PollReport(
            source.name,
            report.new_articles,
            report.new_matches,
            report.new_alerts,
            warnings=(salvaged, *report.warnings) if salvaged else report.warnings,
            updated_articles=report.updated_articles,
            next_poll_at=next_poll,
        )

    def _publication_gap(self, source: SourceJob) -> float:
        """The median gap between the source's recent items, seconds (0: too few items)."""
        gap = publication_gap(self.store.recent_publication_times(source.name))
        return 0.0 if gap is None else gap.total_seconds()

    def _next_poll(
        self, source: SourceJob, lifetime: timedelta | None, hints: FeedHints, gap: float
    ) -> datetime:
        known = timedelta(seconds=gap) if gap > 0 else None
        interval = interval_for_gap(known, source.cadence)
        return after_success(self.clock(), interval, lifetime=lifetime, hints=hints)

    async def _ingest_entries(self, source: SourceJob, entries: Sequence[Entry]) -> PollReport:
        if self.max_entries is not None and len(entries) > self.max_entries:
            log.info(
                "source %s: %d entries, taking the newest %d",
                source.name,
                len(entries),
                self.max_entries,
            )
            entries = newest_entries(entries, self.max_entries)
        # Articles pruned by retention stay gone while the feed still lists them (bot.retention).
        entries = drop_pruned(self.store.engine, source.name, entries, self.clock())
        keys = {entry.guid: url_key(entry.url) for entry in entries}
        known = self.store.known_articles(source.name, list(keys), list(keys.values()))
        by_guid = {article.guid: article for article in known}
        by_key = {article.url_key: article for article in known if article.url_key}
        articles = updated = matches = alerts = 0
        warnings: list[str] = []
        # Oldest first, so that alerts go out in the order the stories were published.
        for entry in reversed(entries):
            key = keys[entry.guid]
            existing = by_guid.get(entry.guid) or by_key.get(key)
            entry_print = fingerprint(entry)
            if existing is not None and existing.fingerprint in (None, entry_print):
                continue  # listed again, unchanged (or stored before fingerprints existed)
            article, warning, page, canonical = await self._article_for(source, entry, existing)
            if self.max_article_chars is not None:
                article = bounded_article(article, self.max_article_chars)
            if warning:
                warnings.append(warning)
            if canonical and existing is None:
                key = url_key(canonical)
                existing = by_key.get(key) or next(
                    iter(self.store.known_articles(source.name, [], [key])), None
                )
                if existing is not None and existing.fingerprint in (None, entry_print):
                    continue  # the same article reached through another URL
            identity = ArticleIdentity(key or None, entry_print, page)
            found = self.matcher.match(article, source.name)
            if existing is not None:
                ingested = self.store.update_article_with_matches(
                    existing.id, article, identity, found, self.routes, self.clock()
                )
                updated += 1
            else:
                added = self.store.add_article_with_matches(
                    source.name, entry.guid, article, found, self.routes, self.clock(), identity
                )
                if added is None:
                    continue
                ingested = added
                articles += 1
            matches += ingested.new_matches
            alerts += ingested.new_alerts
            remembered = KnownArticle(ingested.article.id, entry.guid, key, entry_print, page)
            by_guid[entry.guid] = remembered
            if key:
                by_key[key] = remembered
        return PollReport(
            source.name,
            articles,
            matches,
            alerts,
            warnings=tuple(warnings),
            updated_articles=updated,
        )

    async def _clean_page(self, content: bytes, url: str, *, learn: bool) -> Article:
        """Clean an article page with its site's learned template, then (for a page seen for the
        first time: a re-fetched edit would count its own text twice) learn from it."""
        site = site_of(url)
        template = self.store.site_template(site)
        cleaned = await off_loop(
            self.metrics.time_extraction, clean_page, content, url, template
        )
        if learn and site and cleaned.fingerprints:
            self.store.learn_site_page(site, cleaned.fingerprints)
        return cleaned.article

    async def _robots_allow(self, url: str, policy: AddressPolicy | None) -> bool:
        """robots.txt's verdict, its request's connection held to the source's policy."""
        assert self.robots is not None
        with guarding(policy):
            return await self.robots.allowed(url)

    async def _article_for(
        self, source: SourceJob, entry: Entry, existing: KnownArticle | None
    ) -> tuple[Article, str | None, ConditionalHeaders, str | None]:
        """The cleaned article of an entry (its page's text when wanted, else the feed's text),
        a warning when the page could not be used, the page's validators and its rel=canonical.

        For an update of a known article the page is asked for conditionally: if it did not
        change, its stored text is kept and only the feed's title and dates are new.
        """
        from_feed = await off_loop(article_from_entry, entry)
        from_feed = _with_url(from_feed, clean_url(entry.url) if entry.url else entry.url)
        none = ConditionalHeaders()
        if not needs_page(entry, from_feed, source.full_text):
            return from_feed, None, none, None
        refused = await _refused(entry.url, source.policy)
        if refused:
            warning = f"article page {entry.url}: {refused}; using the feed's text"
            log.warning("%s: %s", source.name, warning)
            return from_feed, warning, none, None
        if self.robots is not None and not await self._robots_allow(entry.url, source.policy):
            warning = f"article page {entry.url}: disallowed by robots.txt; using the feed's text"
            return from_feed, warning, none, None
        validators = existing.page_validators if existing is not None else None
        try:
            page = await fetch(
                self.client,
                entry.url,
                validators,
                limits=self.limits,
                accept=PAGE_ACCEPT,
                gate=self.gate,
                policy=source.policy,
            )
        except FetchError as error:
            warning = f"article page {entry.url}: {error}; using the feed's text"
            log.info("%s: %s", source.name, warning)
            return from_feed, warning, none, None
        if not isinstance(page, FetchResult):
            assert existing is not None  # validators were sent only for a known article
            stored = self.store.article(existing.id)
            kept = Article(
                url=stored.url,
                title=from_feed.title or stored.title,
                paragraphs=tuple(p for p in stored.text.split("\n\n") if p),
                html=stored.html,
                author=from_feed.author or stored.author,
                published=from_feed.published or stored.published,
            )
            return kept, None, page.validators, None
        from_page = await self._clean_page(page.content, page.url, learn=existing is None)
        canonical = await off_loop(canonical_link, page.content, page.url)
        merged = merge_page_and_feed(from_page, from_feed)
        article = _with_url(merged, clean_url(canonical or merged.url))
        return article, None, page.validators, canonical


async def _refused(url: str, policy: AddressPolicy | None) -> str | None:
    """Why the article page at `url` may not be fetched under the source's policy, checked
    before robots.txt is asked for (that request would reach the host too); a name that does
    not resolve is left to the fetch, which reports it as usual."""
    if policy is None:
        return None
    try:
        await check_url(url, policy)
    except BlockedAddress as error:
        return f"blocked: {error}"
    except OSError:
        return None
    return None


def _with_url(article: Article, url: str) -> Article:
    """The article with its link replaced (trackers stripped, or the page's canonical URL)."""
    return article if article.url == url else dataclasses.replace(article, url=url)
