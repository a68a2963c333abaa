"""Publishing from a real SQLite store: the three kinds of feed, RFC 5005 paging, stable bytes,
updates in place, and every document clean under the W3C validator's checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from bot.publish import (
    MAX_RELATED_LINKS,
    FeedSpec,
    Publisher,
    highlight_html,
    source_feed_spec,
)
from bot.server import FeedCatalog
from bot.store import ArticleIdentity, FeedItem, Store
from feeds.models import Article, Match, TermHit
from tests.support.atom_checks import validator_problems

ATOM = "{http://www.w3.org/2005/Atom}"
HISTORY = "{http://purl.org/syndication/history/1.0}"
PUBLIC_URL = "http://news.example.org:8080"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ALL = FeedSpec("all", "All matches", "Every article that matched a watchlist", None)
UKRAINE = FeedSpec("ukraine", "Ukraine", "Articles mentioning Ukraine", "ukraine")
WORLD = source_feed_spec("world", "World Desk")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def make_publisher(
    store: Store, tmp_path: Path, max_entries: int = 50, hub_url: str | None = None
) -> Publisher:
    return Publisher(
        store=store,
        catalog=FeedCatalog(),
        output_dir=tmp_path / "feeds",
        public_url=PUBLIC_URL,
        max_entries=max_entries,
        source_titles={"world": "World Desk"},
        hub_url=hub_url,
        source_feed_urls={"world": "https://world.example/rss"},
    )


def article(number: int, text: str = "Kyiv said Ukraine would attend.") -> Article:
    return Article(
        url=f"https://world.example/{number}",
        title=f"Story {number}",
        paragraphs=(text, "Second paragraph."),
        html=f"<p>{text}</p><p>Second paragraph.</p>",
        author=None if number % 2 else "Jane Doe",
        published=START + timedelta(hours=number),
    )


def add(store: Store, number: int, watchlists: tuple[str, ...] = ("ukraine",)) -> int:
    found = [
        Match(w, (TermHit("Ukraine", 1, ("text",)),), "Kyiv said Ukraine would attend.")
        for w in watchlists
    ]
    ingested = store.add_article_with_matches(
        "world", f"guid-{number}", article(number), found, {}, START + timedelta(hours=number)
    )
    assert ingested is not None
    return ingested.article.id


def entry_ids(body: bytes) -> list[str]:
    root = etree.fromstring(body)
    return [entry.findtext(f"{ATOM}id") or "" for entry in root.iterfind(f"{ATOM}entry")]


def link(body: bytes, rel: str) -> str | None:
    for element in etree.fromstring(body).iterfind(f"{ATOM}link"):
        if element.get("rel") == rel:
            return element.get("href")
    return None


def body_of(publisher: Publisher, path: str) -> bytes:
    feed = publisher.catalog.get(path)
    assert feed is not None, path
    return feed.body


def path_of(url: str) -> str:
    return url.removeprefix(f"{PUBLIC_URL}/")


def test_three_kinds_of_feed_with_their_entries(store: Store, tmp_path: Path) -> None:
    add(store, 1)
    add(store, 2, ("ukraine", "nato"))
    add(store, 3, ())  # stored, matched nothing: only in the source's full-text feed
    publisher = make_publisher(store, tmp_path)
    changed = publisher.publish([ALL, UKRAINE, WORLD])
    assert changed == ["feeds/all.atom", "feeds/ukraine.atom", "sources/world.atom"]
    catalog = publisher.catalog
    for path, expected in [
        ("feeds/all.atom", ["Story 2", "Story 1"]),
        ("feeds/ukraine.atom", ["Story 2", "Story 1"]),
        ("sources/world.atom", ["Story 3", "Story 2", "Story 1"]),
    ]:
        feed = catalog.get(path)
        assert feed is not None
        parsed = feedparser.parse(feed.body)
        assert parsed.bozo == 0
        assert [entry.title for entry in parsed.entries] == expected
        assert validator_problems(feed.body, f"{PUBLIC_URL}/{path}") == []
    assert (tmp_path / "feeds" / "all.atom").read_bytes() == body_of(publisher, "feeds/all.atom")
    assert (tmp_path / "feeds" / "sources" / "world.atom").is_file()


def test_entries_carry_why_they_matched_and_who_wrote_them(store: Store, tmp_path: Path) -> None:
    add(store, 1, ("ukraine", "nato"))
    publisher = make_publisher(store, tmp_path, hub_url="https://hub.example.net/")
    publisher.publish([ALL, WORLD])
    feed = publisher.catalog.get("feeds/all.atom")
    assert feed is not None
    parsed = feedparser.parse(feed.body)
    [entry] = parsed.entries
    assert entry.id == "tag:news.example.org,2026-03-01:article/1"
    assert entry.author == "World Desk"  # no byline: the outlet stands in
    assert entry.summary == "Kyiv said <b>Ukraine</b> would attend."
    assert entry.summary_detail.type == "text/html"
    assert [tag.term for tag in entry.tags] == ["nato", "ukraine", "Ukraine"]  # same time: by name
    assert entry.source.title == "World Desk"
    assert (
        entry.content[0].value == "<p>Kyiv said Ukraine would attend.</p><p>Second paragraph.</p>"
    )
    assert parsed.feed.icon == f"{PUBLIC_URL}/icon.svg"
    assert link(feed.body, "hub") == "https://hub.example.net/"
    assert link(feed.body, "self") == f"{PUBLIC_URL}/feeds/all.atom"
    source_feed = publisher.catalog.get("sources/world.atom")
    assert source_feed is not None
    [full_text] = feedparser.parse(source_feed.body).entries
    assert full_text.id == entry.id  # the same story has the same id in every feed
    assert full_text.summary == "Kyiv said Ukraine would attend.\n\nSecond paragraph."
    assert "tags" not in full_text


def test_feed_ids_are_kept_from_before_source_feeds(store: Store, tmp_path: Path) -> None:
    publisher = make_publisher(store, tmp_path)
    publisher.publish([ALL, UKRAINE, WORLD])
    ids = {
        path: feedparser.parse(body_of(publisher, path)).feed.id
        for path in ("feeds/all.atom", "feeds/ukraine.atom", "sources/world.atom")
    }
    assert ids == {
        "feeds/all.atom": "tag:news.example.org,2026:feed/all",
        "feeds/ukraine.atom": "tag:news.example.org,2026:feed/ukraine",
        "sources/world.atom": "tag:news.example.org,2026:source/world",
    }


def test_unchanged_content_gives_the_same_bytes_and_no_change(store: Store, tmp_path: Path) -> None:
    for number in range(1, 6):
        add(store, number)
    first = make_publisher(store, tmp_path, max_entries=2)
    first.publish([ALL, UKRAINE, WORLD])
    assert first.publish([ALL, UKRAINE, WORLD]) == []
    # A fresh publisher (a restart) renders the very same bytes.
    second = make_publisher(store, tmp_path / "again", max_entries=2)
    second.publish([ALL, UKRAINE, WORLD])
    for feed in first.catalog.listed():
        again = second.catalog.get(feed.path)
        assert again is not None and again.body == feed.body and again.etag == feed.etag


def follow_archives(publisher: Publisher, path: str) -> tuple[list[str], list[str]]:
    """Every entry id reachable from a subscription document through prev-archive, and the
    paths visited."""
    seen: list[str] = []
    visited = [path]
    feed = publisher.catalog.get(path)
    assert feed is not None
    seen += entry_ids(feed.body)
    previous = link(feed.body, "prev-archive")
    while previous is not None:
        visited.append(path_of(previous))
        page = publisher.catalog.get(path_of(previous))
        assert page is not None, previous
        root = etree.fromstring(page.body)
        assert root.find(f"{HISTORY}archive") is not None
        assert link(page.body, "current") == f"{PUBLIC_URL}/{path}"
        assert validator_problems(page.body, previous) == []
        seen += entry_ids(page.body)
        previous = link(page.body, "prev-archive")
    return seen, visited


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 6, 7])
def test_archives_reach_every_entry_exactly_once_beyond_the_overlap(
    store: Store, tmp_path: Path, total: int
) -> None:
    ids = [add(store, number) for number in range(1, total + 1)]
    publisher = make_publisher(store, tmp_path, max_entries=2)
    publisher.publish([UKRAINE])
    seen, visited = follow_archives(publisher, "feeds/ukraine.atom")
    expected = {f"tag:news.example.org,2026-03-01:article/{i}" for i in ids}
    assert set(seen) == expected
    assert len(visited) == max(1, -(-total // 2))  # subscription + ceil(total/2) - 1 pages
    subscription = publisher.catalog.get("feeds/ukraine.atom")
    assert subscription is not None
    assert entry_ids(subscription.body) == sorted(expected, reverse=True)[:2]
    for page in visited[1:]:
        assert len(entry_ids(body_of(publisher, page))) == 2
        assert (tmp_path / "feeds" / page.removeprefix("feeds/")).is_file()


def test_archive_pages_do_not_change_as_the_feed_grows(store: Store, tmp_path: Path) -> None:
    for number in range(1, 6):
        add(store, number)
    publisher = make_publisher(store, tmp_path, max_entries=2)
    publisher.publish([UKRAINE])
    page_one = publisher.catalog.get("feeds/ukraine/archive/1.atom")
    page_two = publisher.catalog.get("feeds/ukraine/archive/2.atom")
    assert page_one is not None and page_two is not None
    assert link(page_one.body, "next-archive") == f"{PUBLIC_URL}/feeds/ukraine/archive/2.atom"
    assert link(page_two.body, "next-archive") is None  # the newest archive page
    add(store, 6)
    assert publisher.publish([UKRAINE]) == ["feeds/ukraine.atom"]
    assert publisher.catalog.get("feeds/ukraine/archive/1.atom") == page_one
    assert publisher.catalog.get("feeds/ukraine/archive/2.atom") == page_two
    add(store, 7)
    publisher.publish([UKRAINE])
    assert publisher.catalog.get("feeds/ukraine/archive/1.atom") == page_one
    grown = publisher.catalog.get("feeds/ukraine/archive/2.atom")
    assert grown is not None
    assert entry_ids(grown.body) == entry_ids(page_two.body)  # only its next-archive link is new
    assert link(grown.body, "next-archive") == f"{PUBLIC_URL}/feeds/ukraine/archive/3.atom"
    subscription = publisher.catalog.get("feeds/ukraine.atom")
    assert subscription is not None
    assert link(subscription.body, "prev-archive") == f"{PUBLIC_URL}/feeds/ukraine/archive/3.atom"


def test_a_changed_article_updates_its_entry_in_place(store: Store, tmp_path: Path) -> None:
    first = add(store, 1)
    add(store, 2)
    publisher = make_publisher(store, tmp_path)
    publisher.publish([ALL, UKRAINE, WORLD])
    before = publisher.catalog.get("feeds/ukraine.atom")
    assert before is not None
    edited = dataclasses.replace(article(1), title="Story 1, corrected")
    later = START + timedelta(days=2)
    store.update_article_with_matches(first, edited, ArticleIdentity(), [], {}, later)
    changed = publisher.publish([ALL, UKRAINE, WORLD])
    assert changed == ["feeds/all.atom", "feeds/ukraine.atom", "sources/world.atom"]
    after = publisher.catalog.get("feeds/ukraine.atom")
    assert after is not None
    assert entry_ids(after.body) == entry_ids(before.body)  # same ids, same order, no new entry
    parsed = feedparser.parse(after.body)
    entry = next(e for e in parsed.entries if e.id.endswith("article/1"))
    assert entry.title == "Story 1, corrected"
    assert entry.updated == "2026-03-03T08:00:00+00:00"
    assert parsed.feed.updated == "2026-03-03T08:00:00+00:00"
    assert after.last_modified == later
    assert after.etag != before.etag


def test_related_links_hook_reaches_the_feed(store: Store, tmp_path: Path) -> None:
    add(store, 1)
    publisher = make_publisher(store, tmp_path)
    [item] = store.feed_history("ukraine")
    assert item.related == ()  # nothing fills it yet
    reported = dataclasses.replace(
        item, related=(("world", "https://world.example/b"), ("Other", "https://other.example/a"))
    )
    entry = publisher._entry(reported)
    # A source name becomes the outlet's title; anything else is shown as given.
    assert entry.related == (
        ("World Desk", "https://world.example/b"),
        ("Other", "https://other.example/a"),
    )
    assert publisher._entry(item).related == ()
    many = dataclasses.replace(
        item, related=tuple(("x", f"https://x.example/{n}") for n in range(MAX_RELATED_LINKS + 5))
    )
    assert len(publisher._entry(many).related) == MAX_RELATED_LINKS


def test_feed_history_is_oldest_first_and_merges_watchlists(store: Store) -> None:
    add(store, 1, ("nato",))
    add(store, 2, ("ukraine", "nato"))
    history = store.feed_history(None)
    assert [item.article.title for item in history] == ["Story 1", "Story 2"]
    assert history[1].watchlists == ("nato", "ukraine")
    assert [item.article.title for item in store.feed_history("ukraine")] == ["Story 2"]
    newest = store.feed_items(None, 10)
    assert [item.article.id for item in newest] == [item.article.id for item in reversed(history)]
    assert isinstance(history[0], FeedItem)


@pytest.mark.parametrize(
    ("text", "terms", "expected"),
    [
        ("Nato and Natoli", ["nato"], "<b>Nato</b> and Natoli"),
        ("Orbán met Orban", ["Orban"], "<b>Orbán</b> met <b>Orban</b>"),
        ("Jake Sullivan said", ["Jake", "Jake Sullivan"], "<b>Jake Sullivan</b> said"),
        ("a <b> & c", ["c"], "a &lt;b&gt; &amp; <b>c</b>"),
        ("no terms", [], "no terms"),
        ("(x+y)", ["x+y"], "(<b>x+y</b>)"),
    ],
)
def test_highlight_html(text: str, terms: list[str], expected: str) -> None:
    assert highlight_html(text, terms) == expected
