"""`wirewatch demo`: the whole product, offline, in a minute.

Serves the bundled sample site (config/demo-site, beside the demo config) on 127.0.0.1, points the
demo config's sources at it through ${WIREWATCH_DEMO_SITE}, runs one cycle on a fresh temporary
database, prints the alerts it would send and the feed URLs, then keeps serving feeds until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from .app import App, stop_on_signals
from .sample_site import SampleSite
from .settings import Settings, load_settings
from .telegram import SendOptions

DEMO_SITE_VARIABLE = "WIREWATCH_DEMO_SITE"


class PrintingSender:
    """Prints each alert instead of sending it: what the chat would receive."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        print(f"--- alert to chat {chat_id} ---\n{html_text}\n", flush=True)
        return 0


async def run_demo(settings: Settings) -> int:
    site_root = settings.path.parent / "demo-site"
    stop = asyncio.Event()
    with (
        stop_on_signals(stop),
        SampleSite(site_root) as site,
        tempfile.TemporaryDirectory() as state,
    ):
        # The demo config points its sources at ${WIREWATCH_DEMO_SITE}: read it again now that
        # the site has a port, with a fresh database and feed folder so every demo starts clean.
        os.environ[DEMO_SITE_VARIABLE] = site.base_url
        demo = load_settings(settings.path).model_copy(
            update={
                "database": f"sqlite:///{Path(state) / 'demo.sqlite3'}",
                "output_dir": Path(state) / "feeds",
            }
        )
        print(f"Sample news site serving on {site.base_url}/\n", flush=True)
        async with App(demo, sender=PrintingSender()) as app:
            report = await app.run_once()
            print(
                f"Polled {len(report.polls)} sample sources: "
                f"{sum(p.new_articles for p in report.polls)} articles cleaned, "
                f"{sum(p.new_matches for p in report.polls)} watchlist matches, "
                f"{report.delivery.sent} alerts.\n"
            )
            server = await app.serve()
            print("Atom feeds (subscribe in a feed reader):")
            for url in app.feed_urls():
                print(f"  {url}")
            print(f"\nIndex: {demo.server.public_url}/  (Ctrl-C to stop)", flush=True)
            await stop.wait()
            await server.stop()
    return 0
