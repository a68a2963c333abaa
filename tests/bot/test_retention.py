"""Retention: what goes, what stays, and feeds whose archive chains stay whole after a prune
(read with feedparser: no dangling link, no entry twice, no page whose entries move)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import func, select

from bot.publish import FeedSpec, Publisher, source_feed_spec
from bot.retention import drop_pruned, prunable, prune, pruned_prefix
from bot.schema import articles, matches, outbox, pruned_articles
from bot.server import FeedCatalog
from bot.store import ArticleIdentity, Store
from feeds.canonical import url_key
from feeds.models import Article, Entry, Match, TermHit

PUBLIC_URL = "http://news.example.org:8080"
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
AGE = timedelta(days=30)
ALL = FeedSpec("all", "All matches", "Every article that matched a watchlist", None)
UKRAINE = FeedSpec("ukraine", "Ukraine", "Articles mentioning Ukraine", "ukraine")
POLAND = FeedSpec("poland", "Poland", "Articles mentioning Poland", "poland")
WORLD = source_feed_spec("world", "World Desk")
SPECS = [ALL, UKRAINE, POLAND, WORLD]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """On SQLite and on PostgreSQL (tests/conftest.py)."""
    with Store.open(store_url) as opened:
        yield opened


def make_publisher(store: Store, output: Path, max_entries: int = 3) -> Publisher:
    return Publisher(
        store=store,
        catalog=FeedCatalog(),
        output_dir=output,
        public_url=PUBLIC_URL,
        max_entries=max_entries,
        source_titles={"world": "World Desk"},
    )


def add(
    store: Store,
    day: int,
    watchlists: tuple[str, ...] = ("ukraine",),
    routes: dict[str, list[int]] | None = None,
    body: str = "Kyiv said Ukraine would attend.",
) -> int:
    """An article stored (and matched) on day `day` after START."""
    found = [
        Match(w, (TermHit("Ukraine", 1, ("text",)),), "Ukraine would attend") for w in watchlists
    ]
    article = Article(
        url=f"https://world.example/{day}",
        title=f"Story {day}",
        paragraphs=(body,),
        html=f"<p>{body}</p>",
        published=START + timedelta(days=day),
    )
    ingested = store.add_article_with_matches(
        "world",
        f"guid-{day}",
        article,
        found,
        routes or {},
        START + timedelta(days=day),
        ArticleIdentity(url_key=url_key(article.url)),
    )
    assert ingested is not None
    return ingested.article.id


def chain(publisher: Publisher, path: str) -> list[tuple[str, list[str]]]:
    """Walk a feed's archive chain like a reader: (path, entry ids) of the subscription document
    and each archive page, newest first. Every link must resolve, in the catalog and on disk."""
    documents: list[tuple[str, list[str]]] = []
    url: str | None = f"{PUBLIC_URL}/{path}"
    while url is not None:
        here = url.removeprefix(f"{PUBLIC_URL}/")
        feed = publisher.catalog.get(here)
        assert feed is not None, f"dangling link to {url}"
        assert (publisher.output_dir / here.removeprefix("feeds/")).is_file(), here
        parsed = feedparser.parse(feed.body)
        assert not parsed.bozo, parsed.bozo_exception
        documents.append((here, [entry.id for entry in parsed.entries]))
        links = {link.rel: link.href for link in parsed.feed.links}
        url = links.get("prev-archive")
    return documents


def archive_pages(publisher: Publisher, path: str) -> dict[str, list[str]]:
    return dict(chain(publisher, path)[1:])


def entry_id(article_id: int, day: int) -> str:
    date = (START + timedelta(days=day)).date().isoformat()
    return f"tag:news.example.org,{date}:article/{article_id}"


@pytest.mark.parametrize(
    ("candidates", "histories", "expected"),
    [
        ({1, 2, 3}, [[1, 2, 3, 4]], {1, 2, 3}),
        ({1, 3}, [[1, 2, 3]], {1}),  # 3 waits behind the newer 2
        ({1, 2}, [[1, 2], [2, 1]], {1, 2}),
        ({1, 2}, [[1, 3, 2], [2, 1]], set()),  # 2 waits behind 3; then 1 behind 2 in the other
        ({1, 2, 4}, [[1, 2, 3], [4, 5], [2, 4]], {1, 2, 4}),
        (set(), [[1, 2]], set()),
        ({7}, [], {7}),  # in no feed: nothing holds it
    ],
)
def test_prunable_keeps_every_feed_pruned_from_its_oldest_end(
    candidates: set[int], histories: list[list[int]], expected: set[int]
) -> None:
    chosen = prunable(candidates, histories)
    assert chosen == expected
    for history in histories:
        assert set(history[: pruned_prefix(history, chosen)]) == chosen & set(history)


def test_prune_then_republish_keeps_every_archive_chain_whole(store: Store, tmp_path: Path) -> None:
    ids = {
        day: add(store, day, ("ukraine", "poland") if day % 3 == 0 else ("ukraine",))
        for day in range(1, 21)
    }
    publisher = make_publisher(store, tmp_path / "feeds")
    publisher.publish(SPECS)
    before = {spec.path: archive_pages(publisher, spec.path) for spec in SPECS}
    assert "feeds/ukraine/archive/1.atom" in before["feeds/ukraine.atom"]

    now = START + timedelta(days=8) + AGE  # days 1..7 are older than the cutoff
    report = prune(store.engine, now, AGE)
    assert report.articles == 7
    publisher.publish(SPECS)

    pruned = {entry_id(ids[day], day) for day in range(1, 8)}
    for spec in SPECS:
        documents = chain(publisher, spec.path)
        seen = [entry for _, entries in documents[1:] for entry in entries]
        assert len(seen) == len(set(seen)), f"{spec.path}: an entry on two archive pages"
        assert not pruned & set(seen), f"{spec.path}: a pruned entry is still listed"
        for page, entries in documents[1:]:
            # A page that is still there holds what it held, minus pruned entries: nothing moved.
            assert entries == [e for e in before[spec.path][page] if e not in pruned], page
        remaining = {e for entries in before[spec.path].values() for e in entries} - pruned
        assert set(seen) | set(documents[0][1]) >= remaining
        gone = set(before[spec.path]) - {page for page, _ in documents[1:]}
        for page in gone:  # pages that held only pruned entries: not served, not on disk
            assert publisher.catalog.get(page) is None
            assert not (publisher.output_dir / page.removeprefix("feeds/")).exists()
    # ukraine had 20 entries, 3 a page: pages 1 and 2 (days 1-6) are gone, 3 lost day 7.
    assert set(archive_pages(publisher, "feeds/ukraine.atom")) == {
        f"feeds/ukraine/archive/{page}.atom" for page in range(3, 7)
    }
    # A restarted app (a new publisher) renders the same documents and removes nothing more.
    again = make_publisher(store, tmp_path / "feeds")
    again.publish(SPECS)
    for spec in SPECS:
        assert chain(again, spec.path) == chain(publisher, spec.path)


def test_an_old_article_behind_a_newer_entry_waits(store: Store) -> None:
    first = add(store, 1, ("poland",))
    second = add(store, 2, ("ukraine",))
    # The first article is edited on day 3: young again, and still first in `all` and in the
    # source's feed, so the second, older by then, must wait behind it.
    store.update_article_with_matches(
        first,
        Article(url="https://world.example/1", title="Story 1", paragraphs=("x",), html="<p>x</p>"),
        ArticleIdentity(),
        [Match("ukraine", (TermHit("Ukraine", 1, ("text",)),), "x")],
        {},
        START + timedelta(days=3),
    )
    assert prune(store.engine, START + timedelta(days=2, hours=12) + AGE, AGE).articles == 0
    assert store.articles_by_id([first, second]).keys() == {first, second}
    assert prune(store.engine, START + timedelta(days=3, hours=12) + AGE, AGE).articles == 2


def test_waiting_alerts_keep_their_article_and_settled_ones_go(store: Store) -> None:
    waiting = add(store, 1, routes={"ukraine": [42]})
    settled = add(store, 2, routes={"ukraine": [42]})
    [alert] = [a for a in store.pending_alerts(limit=10) if a.article.id == settled]
    store.mark_alert_sending(alert.id, START + timedelta(days=2))
    store.mark_alert_sent(alert.id, START + timedelta(days=2), "sent", 7)
    report = prune(store.engine, START + timedelta(days=5) + AGE, AGE)
    # `waiting` blocks everything behind it in its feeds: no article is pruned, nothing lost;
    # the settled alert, older than the cutoff, goes on its own.
    assert (report.articles, report.alerts) == (0, 1)
    [pending] = store.pending_alerts(limit=10)
    assert pending.article.id == waiting
    store.mark_alert_sending(pending.id, START + timedelta(days=6))
    store.mark_alert_sent(pending.id, START + timedelta(days=6), "sent", 8)
    report = prune(store.engine, START + timedelta(days=5) + AGE, AGE)
    assert (report.articles, report.matches, report.alerts) == (2, 2, 1)
    with store.engine.connect() as connection:
        for table in (articles, matches, outbox):
            assert connection.scalar(select(func.count()).select_from(table)) == 0


def test_pruned_entries_are_not_taken_again_while_listed(store: Store) -> None:
    add(store, 1)
    prune(store.engine, START + timedelta(days=2) + AGE, AGE)
    listed = [
        Entry("world", "guid-1", "https://world.example/1", "Story 1", "again"),
        # Another guid, but the same article page (with a tracker): the same URL key.
        Entry("world", "other", "https://world.example/1?utm_source=x", "Story 1", "again"),
        Entry("world", "guid-2", "https://world.example/2", "Story 2", "new"),
        Entry("elsewhere", "guid-1", "https://else.example/1", "Story 1", "other source"),
    ]
    later = START + timedelta(days=60) + AGE
    assert [e.guid for e in drop_pruned(store.engine, "world", listed[:3], later)] == ["guid-2"]
    assert drop_pruned(store.engine, "elsewhere", listed[3:], later) == listed[3:]
    # Seen listed on that day: it is remembered a retention period from then, then forgotten.
    assert prune(store.engine, later + AGE - timedelta(hours=1), AGE).forgotten == 0
    assert prune(store.engine, later + AGE + timedelta(hours=1), AGE).forgotten == 1
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(pruned_articles)) == 0


def test_a_large_prune_gives_sqlite_space_back(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    with Store.open(f"sqlite:///{database}") as store:
        shrink(store, database)


def shrink(store: Store, database: Path) -> None:
    body = "Ukraine " + "filler words " * 4000  # about 50 KB of text per article
    for day in range(1, 401):
        add(store, day, body=body)
    grown = os.path.getsize(database)
    assert grown > 20 * 1024 * 1024
    report = prune(store.engine, START + timedelta(days=301) + AGE, AGE)
    assert report.articles == 300
    assert report.vacuumed
    assert os.path.getsize(database) < grown * 0.4
    # A small prune keeps its free pages for reuse rather than rewriting the file.
    assert not prune(store.engine, START + timedelta(days=311) + AGE, AGE).vacuumed
