"""Page sources: CSS selectors turn a listing page into entries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feeds.errors import ParseError
from feeds.listing import ListingSelectors, check_selector, parse_listing
from feeds.models import ConditionalHeaders, FetchResult

PAGE_URL = "https://news.example/world/"
LISTING = b"""<html><body>
<nav><a href="/about">About us</a></nav>
<main>
  <article class="teaser"><h2><a href="/world/a?utm_source=home">Talks in Kyiv</a></h2>
    <time datetime="2026-03-04T09:30:00+01:00">4 March</time></article>
  <article class="teaser"><h2>
    <a href="https://news.example/world/b">  Sanctions\xc2\xa0widen </a></h2>
    <span class="date">Wed, 04 Mar 2026 07:00:00 GMT</span></article>
  <article class="teaser"><h2><a href="/world/a">Talks in Kyiv (again)</a></h2></article>
  <article class="teaser"><h2><a href="javascript:void(0)">Subscribe</a></h2></article>
  <article class="teaser"><h2>No link here</h2></article>
</main></body></html>"""


def page(body: bytes) -> FetchResult:
    return FetchResult(
        PAGE_URL, PAGE_URL, 200, body, "text/html", ConditionalHeaders(),
        datetime(2026, 3, 4, tzinfo=UTC),
    )  # fmt: skip


def test_links_titles_and_dates_are_read_in_page_order_once_each() -> None:
    selectors = ListingSelectors(links="article.teaser", title="h2", date="time, .date")
    entries = parse_listing(page(LISTING), "src", selectors)
    assert [(e.guid, e.url, e.title, e.published) for e in entries] == [
        (
            "https://news.example/world/a",
            "https://news.example/world/a",
            "Talks in Kyiv",
            datetime(2026, 3, 4, 8, 30, tzinfo=UTC),
        ),
        (
            "https://news.example/world/b",
            "https://news.example/world/b",
            "Sanctions widen",
            datetime(2026, 3, 4, 7, 0, tzinfo=UTC),
        ),
    ]
    assert all(e.source == "src" and e.summary == "" and e.content_html is None for e in entries)


def test_a_selector_may_point_at_the_links_themselves() -> None:
    entries = parse_listing(page(LISTING), "src", ListingSelectors(links="main h2 a"))
    assert [e.title for e in entries] == ["Talks in Kyiv", "Sanctions widen"]


def test_a_selector_that_matches_nothing_gives_no_entries() -> None:
    assert parse_listing(page(LISTING), "src", ListingSelectors(links=".missing a")) == []


def test_an_empty_page_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_listing(page(b""), "src", ListingSelectors(links="a"))


def test_bad_selectors_are_refused_with_the_reason() -> None:
    assert check_selector("article h2 > a") == "article h2 > a"
    with pytest.raises(ValueError, match="bad CSS selector"):
        check_selector("article[")
