"""Every worker serves fresh feeds: two Apps on one PostgreSQL database, one polls, the other's
feed server has the new entry within its refresh period (bot.fleet.FeedRefresher)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import feedparser
import httpx

from bot.app import App
from bot.sample_site import SampleSite
from bot.settings import Settings, load_settings
from tests.conftest import free_port

REFRESH_SECONDS = 1


def rss(*titles: str) -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>http://127.0.0.1/{index}</link>"
        f"<guid>item-{index}</guid><description>{title}: news from Kyiv today.</description>"
        "</item>"
        for index, title in enumerate(titles)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
        f"<link>http://127.0.0.1/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def settings_for(tmp_path: Path, name: str, database: str, feed_url: str) -> Settings:
    port = free_port()
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "\n".join(
            [
                f"database: {database}",
                f"server: {{host: 127.0.0.1, port: {port}}}",
                f"output_dir: {tmp_path / name}",
                "fetch: {timeout: 5s, host_delay: 0s, robots: false}",
                f"fleet: {{refresh_every: {REFRESH_SECONDS}s}}",
                "sources:",
                f"  - {{name: wire, url: '{feed_url}', every: 1h, full_text: never}}",
                "watchlists:",
                "  - {name: ukraine, title: Ukraine, keywords: [Kyiv]}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return load_settings(path)


async def titles_served(client: httpx.AsyncClient, url: str) -> set[str]:
    response = await client.get(url)
    response.raise_for_status()
    return {entry.title for entry in feedparser.parse(response.content).entries}


async def test_a_worker_serves_what_another_worker_polled(
    tmp_path: Path, postgres_url: str
) -> None:
    with SampleSite() as site:
        site.set_file("/feed.xml", rss("First report"), "application/rss+xml")
        feed_url = site.url("/feed.xml")
        poller = App(settings_for(tmp_path, "poller", postgres_url, feed_url))
        server = App(settings_for(tmp_path, "server", postgres_url, feed_url))
        async with poller, server:
            await poller.run_once()  # the source is now due in an hour: the server won't poll it
            stop = asyncio.Event()
            serving = asyncio.create_task(server.run_forever(stop))
            url = f"{server.settings.server.public_url}/feeds/ukraine.atom"
            async with httpx.AsyncClient() as client:
                await asyncio.sleep(0.5)
                assert await titles_served(client, url) == {"First report"}
                site.set_file("/feed.xml", rss("First report", "Second report"), "text/xml")
                await poller.poll_one(poller.job(poller.settings.sources[0]))
                stored = time.monotonic()
                while "Second report" not in await titles_served(client, url):
                    assert time.monotonic() - stored < REFRESH_SECONDS + 3
                    await asyncio.sleep(0.1)
            stop.set()
            await serving
        assert site.path_counts["/feed.xml"] == 2  # both polls were the poller's
