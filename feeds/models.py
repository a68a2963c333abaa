"""The values that flow through the pipeline, one way:

    SourceRef ──fetch──▶ FetchResult | NotModified ──parse──▶ [Entry]
    Entry + page html ──extract──▶ Article ──match──▶ [Match]

Every value is a frozen dataclass so that a stage can never change what an earlier stage
produced, and so that values can be compared in tests. Nothing here knows about YAML, the
database or Telegram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ConditionalHeaders:
    """What the previous successful fetch of a URL told us, replayed to get a 304."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful (2xx) response, fully read and within the size cap."""

    requested_url: str
    url: str
    """The URL after redirects: relative links in the body resolve against it."""
    status: int
    content: bytes
    content_type: str | None
    """The Content-Type header as sent, parameters included (charset is read from it)."""
    validators: ConditionalHeaders
    """ETag and Last-Modified of this response, to send on the next poll."""
    fetched_at: datetime
    permanent_url: str | None = None
    """Where permanent redirects (301/308, and only those) from the requested URL led: the URL to
    ask for from now on. None when there was no redirect or one of them was temporary."""
    lifetime: timedelta | None = None
    """How long the server says the response stays fresh (Cache-Control max-age or Expires)."""


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304 answer to a conditional GET: the resource has not changed since the last poll."""

    url: str
    validators: ConditionalHeaders
    fetched_at: datetime
    permanent_url: str | None = None
    """As for FetchResult: where permanent redirects led, else None."""
    lifetime: timedelta | None = None
    """As for FetchResult: how long the server says the resource stays fresh."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of a feed, whatever its format (RSS, Atom, RDF, JSON Feed)."""

    source: str
    """The name of the source it came from."""
    guid: str
    """The feed's own identifier for the item, else its link: stable across polls."""
    url: str
    """Absolute link to the article page (may be empty when a feed gives none)."""
    title: str
    summary: str
    """Plain text of the feed's summary/description."""
    content_html: str | None = None
    """Full HTML content when the feed carries it (content:encoded, atom:content, content_html)."""
    author: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    """Timezone-aware (UTC when the feed gives no zone)."""


@dataclass(frozen=True, slots=True)
class Article:
    """A cleaned article: only what a reader of the story should see."""

    url: str
    title: str
    paragraphs: tuple[str, ...]
    """The body as clean paragraphs of display text (typographic quotes kept)."""
    html: str
    """The body as sanitised HTML (allowlisted tags only, absolute URLs)."""
    author: str | None = None
    published: datetime | None = None
    standfirst: str | None = None
    language: str | None = None
    empty_reason: str | None = None
    """Why the body is empty (not HTML, nothing article-like found...), else None."""
    updated: datetime | None = None
    """When the page says the article was last modified (timezone-aware), if it says so."""
    image: str | None = None
    """The lead image's absolute URL (og:image, twitter:image or the JSON-LD image), if any."""

    @property
    def text(self) -> str:
        """The body as one string, paragraphs separated by blank lines."""
        return "\n\n".join(self.paragraphs)


@dataclass(frozen=True, slots=True)
class Watchlist:
    """What a user follows, as the matcher needs it (the YAML form lives in bot.settings)."""

    name: str
    keywords: tuple[str, ...]
    """Any one of these must occur (whole words or phrases, case/accent-insensitive)."""
    all_of: tuple[str, ...] = ()
    """Each of these must occur too."""
    exclude: tuple[str, ...] = ()
    """None of these may occur."""
    sources: tuple[str, ...] = ()
    """Only articles from these sources (by name) are considered; empty means every source."""
    query: str = ""
    """A rule in the watch language (see feeds.query), ANDed with the term lists."""
    languages: tuple[str, ...] = ()
    """Only articles in these languages (primary subtags: "en", "uk"); unknown language passes."""
    min_mentions: int = 0
    """Mentions of its terms the standfirst and body must hold, unless the title has one."""
    allow_regex: bool = False
    """Whether the query may use /regex/ terms (RE2, bounded cost)."""


@dataclass(frozen=True, slots=True)
class TermHit:
    """Evidence for one term: how often it occurred, and in which fields."""

    term: str
    count: int
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    """An article matched a watchlist, with the evidence that decided it."""

    watchlist: str
    hits: tuple[TermHit, ...] = field(default=())
    snippet: str = ""
    """A short stretch of the text around the first hit, display form."""

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(hit.term for hit in self.hits)
