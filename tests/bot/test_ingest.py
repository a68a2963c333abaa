"""One poll, against a loopback site and a real SQLite store: what is stored, what is fetched,
and how a source's failures are contained."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.ingest import Ingestor, SourceJob
from bot.sample_site import Response, SampleSite
from bot.store import Store
from feeds.fetch import FetchLimits, make_client
from feeds.match import Matcher
from feeds.models import Article, Match, Watchlist

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5)
ARTICLE = (
    "<html><head><title>Kyiv talks</title></head><body><article><h1>Kyiv talks</h1>"
    + "".join(
        f"<p>Paragraph {n} of the talks in Kyiv, with enough words to count.</p>" for n in range(8)
    )
    + "</article></body></html>"
).encode()


def rss(base_url: str, *items: tuple[str, str, str]) -> bytes:
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>{base_url}{path}</link>"
        f"<description>A teaser about Kyiv.</description></item>"
        for guid, title, path in items
    )
    channel = f"<channel><title>T</title>{body}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


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
            routes={"kyiv": (5,)},
            limits=LIMITS,
        )


async def test_new_entries_are_cleaned_matched_and_queued_once(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file(
        "/feed.xml", rss(site.base_url, ("g1", "Kyiv talks", "/a1")), "application/rss+xml"
    )
    site.set_file("/a1", ARTICLE, "text/html")
    job = SourceJob("s", site.url("/feed.xml"))
    report = await ingestor.poll(job)
    assert (report.new_articles, report.new_matches, report.new_alerts) == (1, 1, 1)
    [alert] = store.pending_alerts()
    assert alert.article.text.startswith("Paragraph 0 of the talks in Kyiv")
    again = await ingestor.poll(job)
    assert again.not_modified and again.new_articles == 0


async def test_an_unreachable_page_falls_back_to_the_feeds_text(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file(
        "/feed.xml", rss(site.base_url, ("g1", "Kyiv talks", "/gone")), "application/rss+xml"
    )
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.new_articles == 1 and report.error is None
    assert "404" in report.warnings[0]
    [item] = store.feed_items("kyiv", 10)
    assert item.article.text == "A teaser about Kyiv."


async def test_full_text_never_fetches_no_page(site: SampleSite, ingestor: Ingestor) -> None:
    site.set_file("/feed.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    site.set_file("/a1", ARTICLE, "text/html")
    await ingestor.poll(SourceJob("s", site.url("/feed.xml"), full_text="never"))
    assert [r.path for r in site.requests] == ["/feed.xml"]


async def test_a_failing_source_is_recorded_and_reported(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.route("/feed.xml", lambda request: Response(503, {}, b"down"))
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.error is not None and "503" in report.error
    state = store.source_state("s", site.url("/feed.xml"))
    assert state.failure_streak == 1 and state.last_error == report.error


class ExplodingMatcher(Matcher):
    def match(self, article: Article, source: str | None = None) -> list[Match]:
        raise RuntimeError("a bug somewhere downstream")


async def test_an_unexpected_error_in_one_source_is_contained(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    ingestor.matcher = ExplodingMatcher([Watchlist("kyiv", keywords=("Kyiv",))])
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml"), full_text="never"))
    assert report.error == "unexpected RuntimeError: a bug somewhere downstream"
    # Nothing half-stored: the entry is still new for the next poll, which retries it.
    assert store.known_guids("s", ["g1"]) == set()
    assert store.source_state("s", site.url("/feed.xml")).failure_streak == 1
