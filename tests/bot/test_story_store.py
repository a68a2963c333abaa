"""Stories in the store: copies of one story share a story, alert each chat once, and list the
other outlets ("also reported by"). Real SQLite files, the committed story examples as articles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.schema import article_stories, outbox
from bot.store import Store
from bot.story_store import MAX_RELATED, related_reports
from feeds.models import Article, Match, TermHit

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "stories"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROUTES = {"ports": [111, 222]}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


def example(name: str) -> Article:
    title, _, body = (EXAMPLES / f"{name}.txt").read_text(encoding="utf-8").partition("\n\n")
    return Article(f"https://{name}.test/a", title, tuple(body.split("\n\n")), "")


def ingest(store: Store, source: str, name: str, at: datetime = T0) -> int:
    found = [Match("ports", (TermHit("Harwick", 1, ("body",)),), "…Harwick…")]
    added = store.add_article_with_matches(source, name, example(name), found, ROUTES, at)
    assert added is not None
    return added.article.id


def stories(store: Store) -> dict[int, int]:
    with store._engine.begin() as connection:  # reading behind the store's back
        rows = connection.execute(select(article_stories.c.article_id, article_stories.c.story_id))
        return {row.article_id: row.story_id for row in rows}


def alerts(store: Store) -> list[tuple[int, int]]:
    with store._engine.begin() as connection:
        rows = connection.execute(select(outbox.c.chat_id, outbox.c.article_id))
        return sorted((row.chat_id, row.article_id) for row in rows)


def test_copies_share_a_story_and_alert_each_chat_once(store: Store) -> None:
    wire = ingest(store, "wire", "port-strike--wire")
    copy = ingest(store, "herald", "port-strike--copy-a", T0 + timedelta(minutes=30))
    rewrite = ingest(store, "wire", "port-strike--rewrite", T0 + timedelta(hours=2))
    other = ingest(store, "herald", "port-vote--wire", T0 + timedelta(hours=3))
    assert stories(store) == {wire: wire, copy: wire, rewrite: wire, other: other}
    assert alerts(store) == [(111, wire), (111, other), (222, wire), (222, other)]
    mates = store.also_reported_by(wire)
    assert [(mate.source, mate.article_id) for mate in mates] == [
        ("herald", copy),
        ("wire", rewrite),
    ]
    assert [mate.source for mate in store.also_reported_by(copy)] == ["wire", "wire"]
    assert store.also_reported_by(other) == []


def test_a_story_older_than_the_window_starts_anew(store: Store) -> None:
    first = ingest(store, "wire", "flood-warning--wire")
    later = ingest(store, "herald", "flood-warning--copy-a", T0 + timedelta(days=4))
    assert stories(store) == {first: first, later: later}
    assert len(alerts(store)) == 4


def test_backtest_queries(store: Store) -> None:
    first = ingest(store, "wire", "transfer--wire")
    second = ingest(store, "wire", "rates-decision--wire", T0 + timedelta(days=2))
    assert [a.id for a in store.articles_since(T0 + timedelta(days=1))] == [second]
    assert store.matched_article_ids("ports", T0) == {first, second}
    assert store.matched_article_ids("ports", T0 + timedelta(days=1)) == {second}


def test_feed_items_carry_the_other_reports_of_their_story(store: Store) -> None:
    wire = ingest(store, "wire", "port-strike--wire")
    ingest(store, "herald", "port-strike--copy-a", T0 + timedelta(minutes=30))
    other = ingest(store, "herald", "port-vote--wire", T0 + timedelta(hours=3))
    related = {item.article.id: item.related for item in store.feed_items("ports", 10)}
    assert related[wire] == (("herald", "https://port-strike--copy-a.test/a"),)
    assert related[other] == ()
    history = {item.article.id: item.related for item in store.feed_history(None)}
    assert history[wire] == related[wire]


def test_a_giant_story_lists_only_the_earliest_reports_for_each_article(store: Store) -> None:
    # Identical copies all join one story; without the cap every article would list all others.
    size = MAX_RELATED * 2 + 5
    body = example("port-strike--wire")
    ids = []
    for number in range(size):
        copy = Article(f"https://outlet{number}.test/a", body.title, body.paragraphs, "")
        found = [Match("ports", (TermHit("Harwick", 1, ("body",)),), "…Harwick…")]
        added = store.add_article_with_matches(
            f"outlet{number}", "g", copy, found, ROUTES, T0 + timedelta(minutes=number)
        )
        assert added is not None
        ids.append(added.article.id)
    assert set(stories(store).values()) == {ids[0]}
    sources = [f"outlet{number}" for number in range(size)]
    related = store.other_reports(ids)
    assert related[ids[0]] == tuple(sources[1 : MAX_RELATED + 1])
    assert related[ids[5]] == tuple(sources[:5] + sources[6 : MAX_RELATED + 1])
    assert related[ids[-1]] == tuple(sources[:MAX_RELATED])
    assert all(len(others) == MAX_RELATED for others in related.values())
    assert store.other_reports(ids) == related  # deterministic
    mates = store.also_reported_by(ids[-1])
    assert [mate.article_id for mate in mates] == ids[:MAX_RELATED]
    # What the feeds and alerts read: capped there too, and one alert per chat for the story.
    history = store.feed_history("ports", content=False)
    assert len(history) == size
    assert all(len(item.related) == MAX_RELATED for item in history)
    assert alerts(store) == [(111, ids[0]), (222, ids[0])]


def test_related_reports_of_more_articles_than_one_query_takes(store: Store) -> None:
    first = ingest(store, "wire", "port-strike--wire")
    copy = ingest(store, "herald", "port-strike--copy-a", T0 + timedelta(minutes=30))
    with store._engine.begin() as connection:
        related = related_reports(connection, [*range(10_000, 11_000), copy, first])
    assert related == {first: (("herald", "https://port-strike--copy-a.test/a"),),
                       copy: (("wire", "https://port-strike--wire.test/a"),)}  # fmt: skip


def test_an_edited_copy_that_now_matches_does_not_alert_the_story_again(store: Store) -> None:
    from bot.store import ArticleIdentity

    wire = ingest(store, "wire", "port-strike--wire")
    # A copy of the same story arrives from another outlet without matching anything...
    copy = store.add_article_with_matches(
        "herald", "copy", example("port-strike--copy-a"), [], ROUTES, T0 + timedelta(minutes=30)
    )
    assert copy is not None and stories(store)[copy.article.id] == wire
    # ...and is then edited so that it matches: its chats already had the story.
    found = [Match("ports", (TermHit("Harwick", 1, ("body",)),), "…Harwick…")]
    edited = store.update_article_with_matches(
        copy.article.id,
        example("port-strike--copy-a"),
        ArticleIdentity(),
        found,
        ROUTES,
        T0 + timedelta(hours=1),
    )
    assert (edited.new_matches, edited.new_alerts) == (1, 0)
    assert alerts(store) == [(111, wire), (222, wire)]
