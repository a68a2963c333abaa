"""Twenty simulated days of `run --once` through the whole app: the database stays bounded by the
retention age, every feed's archive chain stays whole, pruned entries the source still lists do
not come back, and a nearly full disk reaches the admin chat once a day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.sample_site import SampleSite
from bot.schema import articles
from bot.settings import Settings
from tests.support.fake_telegram import FakeTelegram

START = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
PER_DAY = 3
LISTED = 8 * PER_DAY
"""The source lists its last 8 days of entries: some stay listed after they are pruned."""
ADMIN = -42


def feed(day: int) -> bytes:
    newest = (day + 1) * PER_DAY
    items = "".join(
        f'<item><guid isPermaLink="false">n{number}</guid><title>Kyiv report {number}</title>'
        f"<link>https://news.example/{number}</link>"
        f"<pubDate>{format_datetime(START + timedelta(hours=8 * number))}</pubDate>"
        f"<description>Kyiv said something, number {number}.</description></item>"
        for number in reversed(range(max(0, newest - LISTED), newest))
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>{items}</channel></rss>'
    ).encode()


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        yield running


def settings_for(tmp_path: Path, site: SampleSite, telegram: FakeTelegram) -> Settings:
    return Settings.model_validate(
        {
            "database": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "output_dir": str(tmp_path / "feeds"),
            "telegram": {
                "token": telegram.token,
                "api_url": telegram.base_url,
                "admin_chat": ADMIN,
            },
            "feeds": {"max_entries": 2},
            "fetch": {"host_delay": "0s", "allow_private_addresses": True},
            "retention": {"articles": "5d"},
            "admin_alerts": {"min_free_disk_mb": 100},
            "sources": [{"name": "news", "url": site.url("/feed.xml"), "full_text": "never"}],
            "watchlists": [{"name": "kyiv", "keywords": ["Kyiv"]}],
        }
    )


def walk(app: App, path: str) -> list[str]:
    """Entry ids of every archive page reachable from the subscription document; each link
    must resolve."""
    seen: list[str] = []
    url = f"{app.settings.server.public_url}/{path}"
    first = True
    while url:
        document = app.catalog.get(url.removeprefix(f"{app.settings.server.public_url}/"))
        assert document is not None, f"dangling link {url}"
        parsed = feedparser.parse(document.body)
        if not first:
            seen += [entry.id for entry in parsed.entries]
        first = False
        url = {link.rel: link.href for link in parsed.feed.links}.get("prev-archive", "")
    return seen


async def test_twenty_days_stay_bounded_and_consistent(
    tmp_path: Path, site: SampleSite, telegram: FakeTelegram
) -> None:
    now = START
    free = {"bytes": 10 * 1024**3}
    settings = settings_for(tmp_path, site, telegram)
    counts = []
    async with App(settings, clock=lambda: now, disk_probe=lambda _: free["bytes"]) as app:
        for day in range(20):
            now = START + timedelta(days=day, hours=12)
            site.set_file("/feed.xml", feed(day), "application/rss+xml")
            if day == 10:
                free["bytes"] = 50 * 1024**2  # the disk fills up on day 10 ...
            if day == 15:
                free["bytes"] = 10 * 1024**3  # ... and is cleaned on day 15
            report = await app.run_once()
            assert report.failed_sources == ()
            with app.store.engine.connect() as connection:
                counts.append(connection.scalar(select(func.count()).select_from(articles)))
            for path in ("feeds/all.atom", "feeds/kyiv.atom", "sources/news.atom"):
                entries = walk(app, path)
                assert len(entries) == len(set(entries)), f"day {day}: {path} repeats an entry"
        # Bounded: the last 5 days' worth plus the day just added, never the whole 60 articles.
        assert counts[:6] == [PER_DAY * (day + 1) for day in range(6)]
        assert counts[6:] == [6 * PER_DAY] * 14
        with app.store.engine.connect() as connection:
            guids = set(connection.scalars(select(articles.c.guid)))
    # Nothing pruned came back although the source kept listing it.
    assert sorted(int(guid[1:]) for guid in guids) == list(range(14 * PER_DAY, 20 * PER_DAY))
    admin = [m.text for m in telegram.sent if m.chat_id == ADMIN]
    # Days 10-14: reported on day 10 and again each following day (a day apart), then resolved.
    assert sum("MiB free" in text and "Resolved" not in text for text in admin) == 5
    assert sum(text.startswith("⚠️ wirewatch: Resolved") for text in admin) == 1
