"""A watchlist changed from chat takes effect in the running app, without a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bot.app import App
from bot.config_edit import add_term, subscribe
from bot.sample_site import Response, SampleSite
from bot.settings import load_settings

STORIES = {
    "kyiv": "Ukraine and its allies met in Kyiv to agree on air defence for the winter.",
    "chisinau": "Moldova held talks in Chisinau on gas supplies for the coming winter months.",
    "tiraspol": "Moldova and the breakaway region of Transnistria met to discuss border posts.",
}


def feed(base_url: str, slugs: list[str]) -> bytes:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    items = "".join(
        f"<item><title>{slug.title()} talks</title><link>{base_url}/{slug}</link>"
        f"<guid>{slug}</guid><pubDate>{format_datetime(start + timedelta(hours=n))}</pubDate>"
        f"<description>{STORIES[slug]}</description></item>"
        for n, slug in enumerate(slugs)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
        f"<link>{base_url}/</link><description>x</description>{items}</channel></rss>"
    ).encode()


async def test_a_term_and_a_chat_added_from_chat_apply_to_the_next_poll(tmp_path: Path) -> None:
    with SampleSite() as site:
        listed = ["kyiv", "chisinau"]
        site.route(
            "/wire.xml",
            lambda _: Response(200, headers={"Content-Type": "application/rss+xml"},
                               body=feed(site.base_url, listed)),
        )  # fmt: skip
        path = tmp_path / "wirewatch.yaml"
        path.write_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite3'}\n"
            f"output_dir: {tmp_path / 'feeds'}\n"
            "sources:\n"
            f"  - {{name: wire, url: '{site.base_url}/wire.xml', full_text: never}}\n"
            "watchlists:\n"
            "  - {name: east, keywords: [Ukraine], chats: [5]}\n",
            encoding="utf-8",
        )
        async with App(load_settings(path, {})) as app:
            first = await app.run_once()
            assert first.delivery.sent == 1  # Kyiv only

            await app.apply_watchlists(add_term(path, "east", "Moldova", {}))
            await app.apply_watchlists(subscribe(path, "east", 6, None, {}))
            listed.append("tiraspol")
            second = await app.run_once()

            assert second.delivery.sent == 2  # Tiraspol, to both chats
            assert app.store.alert_counts() == {"logged": 3}
            assert "Moldova" in app.feed_specs()[1].subtitle
