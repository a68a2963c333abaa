"""Resource bounds under a flood of news: entries per poll, article length, each chat's queue,
and pruned articles that a feed keeps listing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.bounds import bounded_article, newest_entries, truncation_marker
from bot.delivery import Deliverer
from bot.ingest import Ingestor, PollReport, SourceJob
from bot.outbox_bound import fold_overflow, folded_alerts
from bot.ratelimit import Limits, Throttle
from bot.retention import prune
from bot.sample_site import SampleSite
from bot.scheduler import Schedule
from bot.schema import articles, outbox
from bot.store import Store
from bot.telegram import TelegramSender
from feeds.fetch import FetchLimits, make_client
from feeds.match import Matcher
from feeds.models import Article, Entry, Watchlist
from tests.support.fake_telegram import FakeTelegram

LIMITS = FetchLimits(connect_timeout=2, read_timeout=5, total_timeout=20)
START = datetime(2026, 4, 1, tzinfo=UTC)
FAST = Limits(per_chat_window=0.01, chat_margin=0.0, per_group_window=0.01, group_margin=0.0)


def flood_feed(count: int, paragraphs: int = 1, paragraph: str = "News from Kyiv today.") -> bytes:
    """An RSS feed of `count` items, newest first (item `count - 1` is the newest), each with its
    full text in content:encoded, so a poll fetches no article page."""
    items = []
    for number in reversed(range(count)):
        body = "".join(f"<p>{paragraph} ({number}/{n})</p>" for n in range(paragraphs))
        items.append(
            f'<item><guid isPermaLink="false">g{number}</guid>'
            f"<title>Story {number}</title>"
            f"<link>https://flood.example/{number}</link>"
            f"<pubDate>{format_datetime(START + timedelta(minutes=number))}</pubDate>"
            f"<content:encoded>{escape(body)}</content:encoded></item>"
        )
    return (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Flood</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        yield running


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
async def ingestor(store: Store) -> AsyncIterator[Ingestor]:
    async with make_ingestor(store) as made:
        yield made


@asynccontextmanager
async def make_ingestor(store: Store) -> AsyncIterator[Ingestor]:
    async with make_client("wirewatch-test", LIMITS) as client:
        yield Ingestor(
            store=store,
            client=client,
            matcher=Matcher([Watchlist("kyiv", keywords=("Kyiv",))]),
            routes={"kyiv": (5,)},
            limits=LIMITS,
            clock=lambda: START + timedelta(days=10),
            max_entries=200,
            max_article_chars=2000,
        )


def queue_alerts(store: Store, count: int, chat_id: int) -> None:
    """`count` articles, each with a pending alert for the chat, queued a second apart; written
    in one transaction (ingesting them one by one would take most of a minute)."""
    times = [START + timedelta(seconds=number) for number in range(count)]
    with store.engine.begin() as connection:
        connection.execute(
            articles.insert(),
            [
                {
                    "id": number + 1,
                    "source": "src",
                    "guid": f"g{number}",
                    "url": f"https://s.example/{number}",
                    "title": f"Story {number}",
                    "text": "x",
                    "html": "",
                    "fetched_at": at,
                    "updated_at": at,
                }
                for number, at in enumerate(times)
            ],
        )
        connection.execute(
            outbox.insert(),
            [
                {
                    "chat_id": chat_id,
                    "article_id": number + 1,
                    "watchlist": "w",
                    "terms": ("x",),
                    "snippet": "x",
                    "status": "pending",
                    "attempts": 0,
                    "created_at": at,
                    "updated_at": at,
                }
                for number, at in enumerate(times)
            ],
        )


def stored_guids(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        return set(connection.scalars(select(articles.c.guid)))


async def test_a_feed_of_5000_entries_brings_only_the_newest_200(
    site: SampleSite, tmp_path: Path
) -> None:
    """On SQLite only: parsing 5,000 entries takes seconds (feedparser), the same on any store."""
    site.set_file("/flood.xml", flood_feed(5000), "application/rss+xml")
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        async with make_ingestor(store) as ingestor:
            job = SourceJob("flood", site.url("/flood.xml"), full_text="never")
            report = await ingestor.poll(job)
        check_flood(report, store)


def check_flood(report: PollReport, store: Store) -> None:
    assert report.error is None
    assert (report.new_articles, report.new_alerts) == (200, 200)
    assert stored_guids(store) == {f"g{n}" for n in range(4800, 5000)}
    # Alerts still go oldest first within what was taken.
    pending = store.pending_alerts(limit=1000)
    assert [a.article.guid for a in pending[:2]] == ["g4800", "g4801"]


async def test_a_huge_article_is_stored_cut_at_a_paragraph(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file(
        "/long.xml",
        flood_feed(1, paragraphs=2000, paragraph="Kyiv " + "word " * 100),
        "application/rss+xml",
    )
    report = await ingestor.poll(SourceJob("long", site.url("/long.xml"), full_text="never"))
    assert report.new_articles == 1
    [alert] = store.pending_alerts()
    text = alert.article.text
    *kept, marker = text.split("\n\n")
    assert len("\n\n".join(kept)) <= 2000
    assert all(p.startswith("Kyiv word") and p.endswith(")") for p in kept)  # whole paragraphs
    assert marker.startswith("[…] (shortened by wirewatch: the article had ")
    assert alert.article.html.count("<p>") == len(kept) + 1


async def test_pruned_articles_a_feed_still_lists_are_not_taken_again(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", flood_feed(5), "application/rss+xml")
    job = SourceJob("s", site.url("/feed.xml"), full_text="never")
    assert (await ingestor.poll(job)).new_articles == 5
    for alert in store.pending_alerts():  # a waiting alert would keep its article
        store.mark_alert_sending(alert.id, START)
        store.mark_alert_sent(alert.id, START, "sent", 1)
    pruned = prune(store.engine, START + timedelta(days=100), timedelta(days=30))
    assert pruned.articles == 5
    site.set_file("/feed.xml", flood_feed(6), "application/rss+xml")  # one new entry, same five
    report = await ingestor.poll(job)
    assert (report.new_articles, report.new_alerts) == (1, 1)
    assert stored_guids(store) == {"g5"}


@pytest.mark.parametrize(
    ("dates", "limit", "kept"),
    [
        ([3, 1, 2], 2, [0, 2]),  # newest by date, in feed order
        ([1, 2, 3], 2, [1, 2]),  # a feed listed oldest first
        ([None, 5, None, 4], 2, [1, 3]),  # undated entries count as older
        ([None, None, None], 2, [0, 1]),  # none dated: the feed's first entries
        ([1, 2], 5, [0, 1]),
    ],
)
def test_newest_entries(dates: list[int | None], limit: int, kept: list[int]) -> None:
    entries = [
        Entry(
            "s",
            f"g{index}",
            f"https://s.example/{index}",
            "t",
            "",
            published=START + timedelta(hours=day) if day is not None else None,
        )
        for index, day in enumerate(dates)
    ]
    assert newest_entries(entries, limit) == [entries[index] for index in kept]


def article(*paragraphs: str, html: str | None = None) -> Article:
    body = html if html is not None else "".join(f"<p>{p}</p>" for p in paragraphs)
    return Article(url="https://s.example/a", title="t", paragraphs=paragraphs, html=body)


def test_bounded_article() -> None:
    short = article("one", "two")
    assert bounded_article(short, 1000) is short
    cut = bounded_article(article("a" * 600, "b" * 600, "c" * 10), 1000)
    assert cut.paragraphs == ("a" * 600, truncation_marker(1214))
    assert cut.html == f"<p>{'a' * 600}</p><p>{truncation_marker(1214)}</p>"
    # One paragraph longer than the bound: cut at a word.
    [words, marker] = bounded_article(article("word " * 500), 1000).paragraphs
    assert len(words) <= 1000 and words.endswith("word") and marker == truncation_marker(2500)
    # Short text in huge markup: the markup is rebuilt from the text.
    bloated = bounded_article(article("x <y>", html="<div>" * 5000 + "x"), 1000)
    assert bloated.html == f"<p>x &lt;y&gt;</p><p>{truncation_marker(5)}</p>"


async def test_an_overflowing_chat_queue_folds_into_one_digest(
    store: Store, tmp_path: Path
) -> None:
    queue_alerts(store, 5000, chat_id=-100)
    assert fold_overflow(store.engine, 100, START + timedelta(hours=2)) == {-100: 4900}
    assert fold_overflow(store.engine, 100, START + timedelta(hours=2)) == {}
    pending = store.pending_alerts(limit=10_000)
    assert [a.article.guid for a in pending] == [f"g{n}" for n in range(4900, 5000)]
    assert store.chat_states()[-100].burst_since == START + timedelta(hours=2)
    assert folded_alerts(store.engine, -100) == 4900
    with FakeTelegram() as telegram:
        sender = TelegramSender(telegram.token, telegram.base_url)
        await sender.start()
        try:
            deliverer = Deliverer(
                store,
                sender,
                "sent",
                watchlist_titles={"w": "W"},
                source_titles={"src": "Source"},
                clock=lambda: START + timedelta(hours=2, minutes=1),
                throttle=Throttle(FAST),
            )
            report = await deliverer.deliver()
        finally:
            await sender.stop()
        texts = [m.text for m in telegram.sent]
    assert report.sent == 100 and store.pending_alerts() == []
    assert "4,900 older alerts folded out" in texts[0]
    assert sum("folded out" in text for text in texts) == 1
    assert folded_alerts(store.engine, -100) == 0


async def test_periodic_work_never_runs_twice_at_once_nor_piles_up() -> None:
    """Queued work is bounded: a slow turn makes later turns coalesce and skip, never queue."""
    running = calls = overlaps = 0

    async def slow() -> None:
        nonlocal running, calls, overlaps
        calls += 1
        running += 1
        overlaps += running > 1
        await asyncio.sleep(0.6)
        running -= 1

    async def nothing(*_: object) -> None:
        return None

    schedule = Schedule(nothing, nothing)
    schedule.add_periodic("retention", timedelta(seconds=0.1), slow, datetime.now(UTC))
    schedule.start()
    await asyncio.sleep(1.0)
    await schedule.stop(grace_seconds=2)
    assert overlaps == 0
    assert 1 <= calls <= 2  # every 0.1 s would be 10 turns; one lasts 0.6 s
