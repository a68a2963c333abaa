"""Real feed readers against the real feed server, over loopback.

- feedparser fetches every document over HTTP: bozo false, and a 304 when it asks again with the
  ETag or Last-Modified it was given;
- every served document passes the W3C validator's checks with its own URL as the location
  (so rel="self" equals where it was fetched from);
- newsboat (Debian package) subscribes over HTTP, reloads, and after the next poll shows only the
  new articles and never a duplicate, even of an article that was edited (asserted on its SQLite
  cache);
- WebSub: the application pings a loopback hub for every feed that changed, and only then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import feedparser
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.app import App
from bot.publish import FeedSpec, Publisher, source_feed_spec
from bot.sample_site import SampleSite
from bot.server import FeedCatalog, FeedServer, make_app
from bot.settings import load_settings
from bot.store import ArticleIdentity, Store
from bot.websub import notify_hub
from feeds.models import Article, Match, TermHit
from tests.conftest import free_port, require_tool
from tests.support.atom_checks import validator_problems

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SPECS = [
    FeedSpec("all", "All matches", "Every article that matched a watchlist", None),
    FeedSpec("ukraine", "Ukraine", "Articles mentioning Ukraine", "ukraine"),
    source_feed_spec("world", "World Desk"),
]


@dataclass
class Site:
    store: Store
    publisher: Publisher
    base_url: str

    def add(self, number: int) -> int:
        article = Article(
            url=f"https://world.example/{number}",
            title=f"Story {number} about Ukraine",
            paragraphs=(f"Body {number} mentions Ukraine.",),
            html=f"<p>Body {number} mentions Ukraine.</p>",
            published=START + timedelta(hours=number),
        )
        match = Match("ukraine", (TermHit("Ukraine", 1, ("text",)),), "mentions Ukraine.")
        at = START + timedelta(hours=number)
        ingested = self.store.add_article_with_matches(
            "world", f"g{number}", article, [match], {}, at
        )
        assert ingested is not None
        return ingested.article.id


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    catalog = FeedCatalog()
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        publisher = Publisher(
            store=store,
            catalog=catalog,
            output_dir=tmp_path / "feeds",
            public_url=base_url,
            max_entries=3,
            source_titles={"world": "World Desk"},
        )
        server = FeedServer(make_app(catalog, public_url=base_url), "127.0.0.1", port)
        await server.start()
        try:
            yield Site(store, publisher, base_url)
        finally:
            await server.stop()


def fetch(url: str, **conditions: Any) -> Any:
    return feedparser.parse(url, **conditions)


async def test_feedparser_reads_every_document_over_http_and_gets_304(site: Site) -> None:
    for number in range(1, 8):
        site.add(number)
    site.publisher.publish(SPECS)
    documents = [
        path
        for path in (
            "feeds/all.atom",
            "feeds/ukraine.atom",
            "sources/world.atom",
            "feeds/ukraine/archive/1.atom",
            "feeds/ukraine/archive/2.atom",
            "sources/world/archive/2.atom",
        )
    ]
    for path in documents:
        url = f"{site.base_url}/{path}"
        first = await asyncio.to_thread(fetch, url)
        assert first.status == 200, path
        assert first.bozo is False or first.bozo == 0, (path, first.get("bozo_exception"))
        assert first.entries, path
        assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
        again = await asyncio.to_thread(fetch, url, etag=first.etag)
        assert again.status == 304, path
        since = await asyncio.to_thread(fetch, url, modified=first.modified)
        assert since.status == 304, path
        body = site.publisher.catalog.get(path)
        assert body is not None
        assert validator_problems(body.body, url) == []


def newsboat(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run newsboat non-interactively with its own urls, config and cache under ``home``."""
    executable = require_tool("newsboat")
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    return subprocess.run(
        [
            executable,
            "--url-file",
            str(home / "urls"),
            "--config-file",
            str(home / "newsboat.conf"),
            "--cache-file",
            str(home / "cache.db"),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def cached_items(home: Path) -> list[tuple[str, str, int]]:
    """(guid, title, unread) of every item newsboat keeps, as its SQLite cache holds them."""
    with sqlite3.connect(home / "cache.db") as cache:
        rows = cache.execute("SELECT guid, title, unread FROM rss_item ORDER BY guid").fetchall()
    return [(str(guid), str(title), int(unread)) for guid, title, unread in rows]


async def test_newsboat_shows_new_articles_once_and_never_a_duplicate(
    site: Site, tmp_path: Path
) -> None:
    require_tool("newsboat")
    home = tmp_path / "reader"
    home.mkdir()
    feed_url = f"{site.base_url}/feeds/ukraine.atom"
    (home / "urls").write_text(f"{feed_url}\n", encoding="utf-8")
    (home / "newsboat.conf").write_text(
        "reload-threads 1\ndownload-timeout 10\nshow-read-feeds yes\n", encoding="utf-8"
    )
    first_ids = [site.add(number) for number in (1, 2)]
    site.publisher.publish(SPECS)

    result = await asyncio.to_thread(newsboat, home, "--execute", "reload")
    assert result.returncode == 0, result.stderr
    items = cached_items(home)
    assert [title for _, title, _ in items] == ["Story 1 about Ukraine", "Story 2 about Ukraine"]
    assert all(unread == 1 for *_, unread in items)
    guids = {guid for guid, _, _ in items}
    assert all(guid.startswith("tag:127.0.0.1,2026-03-01:article/") for guid in guids)

    # The user reads everything; then two new articles arrive and one old one is edited.
    with sqlite3.connect(home / "cache.db") as cache:
        cache.execute("UPDATE rss_item SET unread = 0")
    site.add(3)
    site.add(4)
    edited = Article(
        url="https://world.example/2",
        title="Story 2 about Ukraine (corrected)",
        paragraphs=("Body 2 mentions Ukraine, corrected.",),
        html="<p>Body 2 mentions Ukraine, corrected.</p>",
        published=START + timedelta(hours=2),
    )
    # Story 2 is still in the subscription document (3 entries): newsboat sees the edit.
    site.store.update_article_with_matches(
        first_ids[1], edited, ArticleIdentity(), [], {}, START + timedelta(days=1)
    )
    site.publisher.publish(SPECS)

    result = await asyncio.to_thread(newsboat, home, "--execute", "reload", "print-unread")
    assert result.returncode == 0, result.stderr
    items = cached_items(home)
    all_guids = [guid for guid, _, _ in items]
    assert len(all_guids) == len(set(all_guids)) == 4  # no duplicates, the edit included
    unread = sorted(title for _, title, flag in items if flag)
    assert unread == ["Story 3 about Ukraine", "Story 4 about Ukraine"]  # only the new ones
    assert result.stdout.strip() == "2 unread articles"
    assert "Story 2 about Ukraine (corrected)" in [title for _, title, _ in items]

    # Nothing changed: another poll adds nothing.
    result = await asyncio.to_thread(newsboat, home, "--execute", "reload")
    assert result.returncode == 0, result.stderr
    assert cached_items(home) == items


async def test_newsboat_imports_the_opml_export(site: Site, tmp_path: Path) -> None:
    require_tool("newsboat")
    site.add(1)
    site.publisher.publish(SPECS)
    home = tmp_path / "reader"
    home.mkdir()
    (home / "urls").write_text("", encoding="utf-8")
    (home / "newsboat.conf").write_text("", encoding="utf-8")
    async with httpx.AsyncClient() as http:
        opml = await http.get(f"{site.base_url}/opml")
    assert opml.status_code == 200
    (home / "export.opml").write_bytes(opml.content)
    result = await asyncio.to_thread(
        newsboat, home, "--import-from-opml", str(home / "export.opml")
    )
    assert result.returncode == 0, result.stderr
    imported = (home / "urls").read_text(encoding="utf-8")
    for path in ("feeds/all.atom", "feeds/ukraine.atom", "sources/world.atom"):
        assert f"{site.base_url}/{path}" in imported
    assert "archive" not in imported


@dataclass
class Hub:
    """A loopback WebSub hub that accepts publish pings and records them."""

    pings: list[dict[str, str]] = dataclasses.field(default_factory=list)
    status: int = 204

    def app(self) -> Starlette:
        async def publish(request: Request) -> Response:
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            self.pings.append(dict(parse_qsl((await request.body()).decode())))
            return PlainTextResponse("", status_code=self.status)

        return Starlette(routes=[Route("/", publish, methods=["POST"])])


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Hub, str]]:
    recorder = Hub()
    server = FeedServer(recorder.app(), "127.0.0.1", 0)
    await server.start()
    try:
        yield recorder, f"http://127.0.0.1:{server.port}/"
    finally:
        await server.stop()


def websub_config(tmp_path: Path, site: SampleSite, hub_url: str) -> Path:
    port = free_port()
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        "\n".join(
            [
                f"database: sqlite:///{tmp_path / 'db.sqlite3'}",
                f"server: {{host: 127.0.0.1, port: {port}}}",
                f"output_dir: {tmp_path / 'feeds'}",
                f"feeds: {{websub_hub: '{hub_url}'}}",
                "sources:",
                f"  - {{name: europe, title: Europe Desk, url: '{site.url('/feeds/news.atom')}',"
                " full_text: never}",
                "watchlists:",
                "  - {name: energy, keywords: [Nord Stream]}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


ATOM_FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Europe</title><id>tag:x.invalid,2022:e</id>
<updated>2022-02-07T12:00:00Z</updated>{entries}</feed>"""
ATOM_ENTRY = """<entry><title>{title}</title><id>tag:x.invalid,2022:{slug}</id>
<link rel="alternate" href="https://x.invalid/{slug}"/><updated>2022-02-07T12:00:00Z</updated>
<content type="html">&lt;p&gt;{title}. Talks went on all day.&lt;/p&gt;</content></entry>"""


def serve_entries(site: SampleSite, *titles: str) -> None:
    entries = "".join(
        ATOM_ENTRY.format(title=title, slug=title.lower().replace(" ", "-")) for title in titles
    )
    body = ATOM_FEED.format(entries=entries).encode()
    site.set_file("/feeds/news.atom", body, "application/atom+xml")


async def test_websub_hub_is_advertised_and_pinged_on_every_change_only(
    tmp_path: Path, sample_site: SampleSite, hub: tuple[Hub, str]
) -> None:
    recorder, hub_url = hub
    serve_entries(sample_site, "Nord Stream halted")
    settings = load_settings(websub_config(tmp_path, sample_site, hub_url), {})
    base = settings.server.public_url
    async with App(settings) as app:
        start_pings = [ping["hub.url"] for ping in recorder.pings]  # first publish: every feed
        assert sorted(start_pings) == sorted(app.feed_urls())
        recorder.pings.clear()
        await app.run_once()
        assert sorted(ping["hub.url"] for ping in recorder.pings) == [
            f"{base}/feeds/all.atom",
            f"{base}/feeds/energy.atom",
            f"{base}/sources/europe.atom",
        ]
        assert all(ping["hub.mode"] == "publish" for ping in recorder.pings)
        recorder.pings.clear()
        await app.run_once()  # nothing new
        assert recorder.pings == []
        serve_entries(sample_site, "Nord Stream halted", "Weather is mild")
        await app.run_once()  # a new article that matches no watchlist
        assert [ping["hub.url"] for ping in recorder.pings] == [f"{base}/sources/europe.atom"]
        feed = app.catalog.get("feeds/energy.atom")
        assert feed is not None
        assert settings.feeds.websub_hub == hub_url.rstrip("/")
        assert f'<link rel="hub" href="{settings.feeds.websub_hub}"/>'.encode() in feed.body


async def test_a_failing_hub_does_not_stop_publishing(
    tmp_path: Path, sample_site: SampleSite, hub: tuple[Hub, str], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, hub_url = hub
    recorder.status = 500
    serve_entries(sample_site, "Nord Stream halted")
    settings = load_settings(websub_config(tmp_path, sample_site, hub_url), {})
    async with App(settings) as app:
        report = await app.run_once()
        assert "feeds/energy.atom" in report.changed_feeds
        assert app.catalog.get("feeds/energy.atom") is not None
    assert "hub answered 500" in caplog.text


async def test_an_unreachable_hub_is_reported_not_raised() -> None:
    port = free_port()  # nothing listens there
    failures = await notify_hub(
        f"http://127.0.0.1:{port}/", ["http://a.example/1", "http://a.example/2"], "test"
    )
    assert len(failures) == 2
    assert all("ConnectError" in failure for failure in failures)
