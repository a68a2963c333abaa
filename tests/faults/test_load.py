"""A day of news in seconds: a loopback farm of feeds with bursts, on a virtual clock.

One in-process App (real store on disk, real HTTP to two SampleSites and to the fake Bot API, the
Telegram rate limits on virtual time) runs 24 simulated hours: every feed publishes all day, some
publish bursts of dozens of stories at once, sources are polled whenever the store says they are
due (the rule bot.scheduler follows). Checked:

- every matching story reaches every chat exactly once, and nothing else is sent;
- the outbox drains: at every simulated hour nothing older than an hour is still pending, and at
  the end nothing is pending at all;
- memory stays flat: the live objects of the app and its libraries (classes from bot, feeds,
  httpx, sqlalchemy, telegram...; tracked by the collector, counted after a collection) are
  sampled at the end of each simulated hour; between the hours around the warm-up (8 h: caches,
  pools and connections filled) and the last four hours they may grow by GROWTH_LIMIT at most.
  After the warm-up about 170 articles are stored and about 130 polls made, so a leak of even
  one app object per article or per poll fails; the measured growth is about zero. Left out:
  the test's own records, and the feeds' archive (ARCHIVE), which the publisher keeps in memory
  on purpose and which grows with the articles stored (bounded by retention, not by time).
  Counting objects is exact and nearly free, where tracemalloc would slow the run fourfold;
  resident memory is shown with a failure but not asserted (allocator arenas and SQLite's page
  caches grow for hours by design).
"""

from __future__ import annotations

import gc
import os
import statistics
from collections import Counter
from datetime import timedelta
from pathlib import Path

from bot.app import App
from bot.ratelimit import Throttle
from bot.sample_site import Response, SampleSite
from bot.settings import load_settings
from tests.support.fake_telegram import FakeTelegram
from tests.support.faults import NewsFeed, VirtualClock, next_due, poll_due, write_config
from tests.test_delivery_crash import outbox_statuses

RSS = {"Content-Type": "application/rss+xml"}
CHATS = (31, -33)
FEEDS = ("wire", "daily", "markets", "world")
HOURS = 24
WARM_UP_HOURS = 8
GROWTH_LIMIT = 100
"""App objects the process may gain over the hours after the warm-up (see the docstring)."""
BURSTS = {3: "wire", 9: "world", 14: "markets", 20: "wire"}
"""Hour → the feed that publishes a burst of BURST_SIZE stories in that hour."""
BURST_SIZE = 20
PER_HOUR = 2
NEWS_PER_DAY = len(FEEDS) * HOURS * PER_HOUR + len(BURSTS) * BURST_SIZE


async def test_a_simulated_day_with_bursts_keeps_memory_flat_and_delivers_each_alert_once(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    feeds = {name: NewsFeed(name, keep=60) for name in FEEDS}
    matching: list[str] = []
    database = tmp_path / "wirewatch.sqlite3"
    samples: list[int] = []
    rss: list[int] = []
    with SampleSite() as east, SampleSite() as west, FakeTelegram() as telegram:
        sources = []
        for number, name in enumerate(FEEDS):
            site = east if number % 2 else west
            site.keep_request_log(False)
            site.route(f"/{name}.xml", _server(feeds[name], site))
            sources.append((name, site.url(f"/{name}.xml")))
        config = write_config(
            tmp_path, sources, telegram=(telegram.token, telegram.base_url), chats=CHATS,
            every="30m",
        )  # fmt: skip
        throttle = Throttle(clock=clock.monotonic, sleep=clock.sleep)
        async with App(load_settings(config, {}), clock=clock, throttle=throttle) as app:
            app.ingestor.random = lambda: 0.5
            start = clock()
            for hour in range(HOURS):
                hour_end = start + timedelta(hours=hour + 1)
                news = [
                    start + timedelta(hours=hour, minutes=minute)
                    for minute in range(0, 60, 60 // PER_HOUR)
                ]
                while clock() < hour_end:
                    while news and news[0] <= clock():
                        news.pop(0)
                        for number, feed in enumerate(feeds.values()):
                            matching += _publish(feed, 1, clock, number % 3 == 0)
                    if hour in BURSTS and clock() >= start + timedelta(hours=hour, minutes=20):
                        feed = feeds[BURSTS.pop(hour)]
                        matching += _publish(feed, BURST_SIZE, clock, True)
                    await poll_due(app, clock)
                    due = next_due(app)
                    edges = [hour_end, *news[:1], *([due] if due else [])]
                    clock.now = max(
                        clock() + timedelta(seconds=1), min(e for e in edges if e > clock())
                    )
                gc.collect()
                samples.append(_app_objects())
                rss.append(_rss())
                pending = _oldest_pending_age(database, clock)
                assert pending is None or pending <= timedelta(hours=1), (hour, pending)
            await app.run_once()  # the last news of the day, polled and delivered

    statuses = outbox_statuses(database)
    assert set(statuses) == {"sent"}, statuses  # drained, nothing failed or unknown
    received = Counter((int(m.chat_id), _title(m.text)) for m in telegram.sent)
    assert set(received.values()) == {1}  # nothing twice
    assert set(received) == {(chat, title) for chat in CHATS for title in matching}
    # Medians of four hours on each side: one sample can catch a request in flight.
    warm = statistics.median(samples[WARM_UP_HOURS - 2 : WARM_UP_HOURS + 2])
    late = statistics.median(samples[-4:])
    assert late - warm < GROWTH_LIMIT, (samples, [size // 2**20 for size in rss])


def _publish(feed: NewsFeed, count: int, clock: VirtualClock, matching: bool) -> list[str]:
    items = feed.publish(count, clock(), matching=matching)
    return [item.title for item in items] if matching else []


def _server(feed: NewsFeed, site: SampleSite):  # type: ignore[no-untyped-def]
    return lambda _: Response(200, RSS, feed.document(site.base_url))


def _title(text: str) -> str:
    return text.split('">', 1)[1].split("</a>", 1)[0]


def _oldest_pending_age(database: Path, clock: VirtualClock) -> timedelta | None:
    import contextlib
    import sqlite3
    from datetime import UTC, datetime

    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        (oldest,) = connection.execute(
            "SELECT min(created_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
    if oldest is None:
        return None
    return clock() - datetime.fromisoformat(oldest).replace(tzinfo=UTC)


def _rss() -> int:
    """Resident memory of this process now, in bytes (Linux); shown with a failure, not
    asserted: allocator arenas and SQLite's page caches fill up over hours by design."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


APP_PACKAGES = frozenset(
    {"bot", "feeds", "httpx", "httpcore", "sqlalchemy", "telegram", "apscheduler", "lxml"}
)
"""Packages whose objects are the app's: the test's own records (tests.*) and plain builtins
are left out, so that what the test keeps by design cannot hide or fake a leak."""
ARCHIVE = frozenset(
    {
        "bot.store.FeedItem",
        "bot.store.StoredArticle",
        "bot.publish._Document",
        "bot.server.RenderedFeed",
        "feeds.atom.FeedMeta",
        "feeds.atom.Paging",
    }
)
"""What the publisher keeps on purpose: every stored entry of every feed (without its text) and
its archive pages, so that archives are served from memory. It grows with the articles stored
and is bounded by retention, not by time; it is counted apart (see the module docstring)."""


def _app_objects() -> int:
    """Live objects (tracked by the collector) whose class comes from the app or a library it
    runs on, apart from the feeds' archive."""
    count = 0
    for thing in gc.get_objects():
        kind = type(thing)
        module = str(getattr(kind, "__module__", ""))
        if module.partition(".")[0] in APP_PACKAGES:
            count += f"{module}.{kind.__qualname__}" not in ARCHIVE
    return count
