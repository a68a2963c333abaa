"""Ingest learns each site's template as it cleans pages, and cleans later pages with it
(a loopback site, a real SQLite store)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.ingest import Ingestor, SourceJob
from bot.sample_site import SampleSite
from bot.store import Store
from feeds.fetch import FetchLimits, make_client
from feeds.match import Matcher
from feeds.models import Watchlist
from feeds.templates import MIN_PAGES, site_of

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5)
APPEAL = "Every story here is paid for by readers in the valley. Could you chip in a little today?"


def article(index: int) -> bytes:
    paragraphs = "".join(
        f"<p>Kyiv report {index}, part {n}: negotiators met again this week and agreed to keep "
        "talking, though neither side gave ground on the main questions.</p>"
        for n in range(4)
    )
    return (
        f"<html><head><title>Kyiv {index}</title></head><body><article><h1>Kyiv {index}</h1>"
        f"{paragraphs}<p>{APPEAL}</p></article></body></html>"
    ).encode()


def rss(base_url: str, count: int) -> bytes:
    items = "".join(
        f"<item><guid>g{n}</guid><title>Kyiv {n}</title><link>{base_url}/a{n}</link>"
        "<description>A teaser.</description></item>"
        for n in range(count)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    ).encode()


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as opened:
        yield opened


@pytest.fixture
async def ingestor(store: Store) -> AsyncIterator[Ingestor]:
    async with make_client("wirewatch-test", LIMITS) as client:
        yield Ingestor(
            store=store,
            client=client,
            matcher=Matcher([Watchlist("kyiv", keywords=("Kyiv",))]),
            routes={},
            limits=LIMITS,
        )


async def test_ingest_learns_the_sites_furniture_and_drops_it_later(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    first_batch = MIN_PAGES + 2
    for n in range(first_batch + 1):
        site.set_file(f"/a{n}", article(n), "text/html")
    site.set_file("/feed.xml", rss(site.base_url, first_batch), "application/rss+xml")
    job = SourceJob("s", site.url("/feed.xml"))
    report = await ingestor.poll(job)
    assert report.new_articles == first_batch
    learned = store.site_template(site_of(site.base_url))
    assert learned.pages == first_batch  # one page learned per new article

    site.set_file("/feed.xml", rss(site.base_url, first_batch + 1), "application/rss+xml")
    assert (await ingestor.poll(job)).new_articles == 1
    texts = {item.article.title: item.article.text for item in store.feed_items(None, 100)}
    assert APPEAL not in texts[f"Kyiv {first_batch}"]
    assert f"Kyiv report {first_batch}, part 3" in texts[f"Kyiv {first_batch}"]
    # The feed lists newest first and ingest goes oldest first: the last item of the first batch
    # was cleaned before anything was learned, so it keeps the appeal (articles are not re-cleaned).
    assert APPEAL in texts[f"Kyiv {first_batch - 1}"]
