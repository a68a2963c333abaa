"""A site's home page → the feeds it offers: `<link rel="alternate">` first, then common paths.

Used by `wirewatch add URL`. Discovery reads what the page declares (RSS, Atom and JSON Feed
alternates, as browsers and feed readers do); only when a page declares nothing are a few paths
that publishing systems use by default tried, each one request through the same polite fetcher,
and kept only if it parses as a feed. A URL that is itself a feed is returned as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from lxml import etree, html

from feeds.errors import FetchError, ParseError
from feeds.extract import decode_html
from feeds.fetch import PAGE_ACCEPT, FetchLimits, fetch
from feeds.models import FetchResult
from feeds.netguard import AddressPolicy
from feeds.parse import parse_feed
from feeds.politeness import RequestGate

__all__ = ["COMMON_PATHS", "FeedLink", "discover_feeds", "feed_links"]

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",
    "application/rdf+xml": "rdf",
}
COMMON_PATHS = (
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feed.json",
    "/feeds/all.atom.xml",
    "/?feed=rss2",
)
"""WordPress, Ghost, Hugo, Jekyll, Pelican and friends' defaults, most common first."""

_DEFAULT_LIMITS = FetchLimits()


@dataclass(frozen=True, slots=True)
class FeedLink:
    url: str
    title: str
    kind: str
    """rss, atom, rdf or json."""


def feed_links(page: FetchResult) -> list[FeedLink]:
    """The feeds a page declares with `<link rel="alternate" type=...>`, in page order, once each.

    Relative hrefs resolve against `<base href>` when the page has one, else the page's URL.
    """
    try:
        document = html.document_fromstring(decode_html(page.content))
    except (etree.ParserError, ValueError):
        return []
    base = page.url
    for element in document.iter("base"):
        if element.get("href"):
            base = urljoin(page.url, element.get("href", ""))
            break
    links: dict[str, FeedLink] = {}
    for element in document.iter("link"):
        rels = (element.get("rel") or "").lower().split()
        kind = FEED_TYPES.get((element.get("type") or "").split(";")[0].strip().lower())
        href = (element.get("href") or "").strip()
        if "alternate" not in rels or kind is None or not href:
            continue
        url = urljoin(base, href)
        if urlsplit(url).scheme in ("http", "https") and url not in links:
            links[url] = FeedLink(url, (element.get("title") or "").strip(), kind)
    return list(links.values())


async def discover_feeds(
    client: httpx.AsyncClient,
    url: str,
    *,
    limits: FetchLimits = _DEFAULT_LIMITS,
    gate: RequestGate | None = None,
    policy: AddressPolicy | None = None,
) -> list[FeedLink]:
    """The feeds offered at `url`. Raises FetchError when `url` itself cannot be fetched.

    Every request obeys `policy` (feeds.netguard); the declared feed links are not fetched, so
    a caller that will poll one must check it against the policy itself."""
    page = await fetch(client, url, limits=limits, accept=PAGE_ACCEPT, gate=gate, policy=policy)
    assert isinstance(page, FetchResult)  # no validators were sent, so no 304
    if _is_feed(page):
        return [FeedLink(page.url, "", _kind_of(page))]
    declared = feed_links(page)
    if declared:
        return declared
    found: list[FeedLink] = []
    for path in COMMON_PATHS:
        candidate = urljoin(page.url, path)
        try:
            result = await fetch(client, candidate, limits=limits, gate=gate, policy=policy)
        except FetchError:
            continue
        if isinstance(result, FetchResult) and _is_feed(result):
            found.append(FeedLink(result.url, "", _kind_of(result)))
            break
    return found


def _is_feed(result: FetchResult) -> bool:
    try:
        parse_feed(result, "discovery")
    except ParseError:
        return False
    return True


def _kind_of(result: FetchResult) -> str:
    if result.content.lstrip()[:1] == b"{":
        return "json"
    head = result.content[:2048].lower()
    if b"<feed" in head:
        return "atom"
    return "rdf" if b"<rdf:rdf" in head else "rss"
