"""Feed discovery over loopback: declared alternates first, common paths as a fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.sample_site import SampleSite
from feeds.discover import FeedLink, discover_feeds
from feeds.errors import FetchError
from feeds.fetch import FetchLimits, make_client

FAST = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=3)
RSS = b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title></channel></rss>"
ATOM = b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>T</title></feed>"


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client("wirewatch-test", FAST) as http:
        yield http


async def test_declared_feeds_in_page_order(site: SampleSite, client: httpx.AsyncClient) -> None:
    home = b"""<html><head>
      <link rel="alternate" type="application/rss+xml" title="World" href="/world/rss">
      <link rel="alternate" type="application/atom+xml" title="All" href="https://n.example/all.atom">
      <link rel="alternate" type="application/feed+json" href="feed.json">
      <link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
      <link rel="stylesheet" type="application/rss+xml" href="/not-alternate">
      <link rel="alternate" type="application/rss+xml" title="Again" href="/world/rss">
    </head><body></body></html>"""
    site.set_file("/news/", home, "text/html")
    found = await discover_feeds(client, site.url("/news/"), limits=FAST)
    assert found == [
        FeedLink(site.url("/world/rss"), "World", "rss"),
        FeedLink("https://n.example/all.atom", "All", "atom"),
        FeedLink(site.url("/news/feed.json"), "", "json"),
    ]
    assert [r.path for r in site.requests] == ["/news/"]  # declared feeds are not probed


async def test_common_paths_when_nothing_is_declared(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.set_file("/", b"<html><head><title>Home</title></head><body></body></html>", "text/html")
    site.set_file("/rss.xml", RSS, "application/rss+xml")
    found = await discover_feeds(client, site.url("/"), limits=FAST)
    assert found == [FeedLink(site.url("/rss.xml"), "", "rss")]
    # /feed and /rss were tried first, then the hit stopped the search.
    assert [r.path for r in site.requests] == ["/", "/feed", "/rss", "/feed.xml", "/rss.xml"]


async def test_a_feed_url_is_its_own_answer(site: SampleSite, client: httpx.AsyncClient) -> None:
    site.set_file("/atom", ATOM, "application/atom+xml")
    assert await discover_feeds(client, site.url("/atom"), limits=FAST) == [
        FeedLink(site.url("/atom"), "", "atom")
    ]


async def test_nothing_found_and_unreachable(site: SampleSite, client: httpx.AsyncClient) -> None:
    site.set_file("/", b"<html><body>No feeds here</body></html>", "text/html")
    assert await discover_feeds(client, site.url("/"), limits=FAST) == []
    with pytest.raises(FetchError):
        await discover_feeds(client, site.url("/missing"), limits=FAST)
