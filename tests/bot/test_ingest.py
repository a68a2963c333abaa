"""One poll, against a loopback site and a real SQLite store: what is stored, what is fetched,
and how a source's failures are contained."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import event, update

from bot import ingest as ingest_module
from bot.ingest import Ingestor, SourceJob
from bot.parse_pool import THREAD_NAME
from bot.sample_site import Response, SampleSite
from bot.schema import sources
from bot.store import Store
from feeds.cadence import Cadence
from feeds.fetch import FetchLimits, make_client
from feeds.listing import ListingSelectors
from feeds.match import Matcher
from feeds.models import Article, Match, Watchlist
from feeds.politeness import HostGate
from feeds.robots import RobotsCache

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
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
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


# -- scheduling, back-off and health -------------------------------------------------------------

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
CADENCE = Cadence(
    every=timedelta(minutes=10),
    min_every=timedelta(minutes=10),
    max_every=timedelta(minutes=40),
    backoff_cap=timedelta(hours=2),
)


def fixed(ingestor: Ingestor) -> Ingestor:
    ingestor.clock = lambda: NOW
    ingestor.random = lambda: 0.5
    return ingestor


async def test_polls_and_304s_are_counted_and_the_next_poll_stored(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    job = SourceJob("s", site.url("/feed.xml"), full_text="never", cadence=CADENCE)
    first = await fixed(ingestor).poll(job)
    second = await ingestor.poll(job)
    assert second.not_modified and first.next_poll_at == second.next_poll_at == NOW + CADENCE.every
    state = store.source_state("s", job.url)
    assert (state.polls, state.not_modified_polls, state.next_poll_at) == (
        2,
        1,
        NOW + CADENCE.every,
    )


async def test_cache_control_and_ttl_push_the_next_poll_later(
    site: SampleSite, ingestor: Ingestor
) -> None:
    body = rss(site.base_url, ("g1", "Kyiv", "/a1")).replace(
        b"<channel><title>T</title>", b"<channel><title>T</title><ttl>30</ttl>"
    )
    site.route(
        "/feed.xml",
        lambda request: Response(
            200, {"Content-Type": "application/rss+xml", "Cache-Control": "max-age=1500"}, body
        ),
    )
    report = await fixed(ingestor).poll(
        SourceJob("s", site.url("/feed.xml"), full_text="never", cadence=CADENCE)
    )
    assert report.next_poll_at == NOW + timedelta(seconds=1800)  # ttl 30 min beats max-age 25


async def test_a_permanent_redirect_moves_the_source(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/new.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    site.route("/old.xml", lambda request: Response(301, {"Location": "/new.xml"}))
    job = SourceJob("s", site.url("/old.xml"), full_text="never")
    await ingestor.poll(job)
    assert store.source_state("s", job.url).fetch_url == site.url("/new.xml")
    site.clear_requests()
    again = await ingestor.poll(job)
    assert again.not_modified  # straight to the new URL, with its validators
    assert [r.path for r in site.requests] == ["/new.xml"]


async def test_a_temporary_redirect_does_not_move_the_source(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/new.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    site.route("/old.xml", lambda request: Response(302, {"Location": "/new.xml"}))
    job = SourceJob("s", site.url("/old.xml"), full_text="never")
    await ingestor.poll(job)
    assert store.source_state("s", job.url).fetch_url is None


async def test_410_disables_the_source_visibly_until_its_url_changes(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.route("/feed.xml", lambda request: Response(410, {}, b"gone"))
    job = SourceJob("s", site.url("/feed.xml"))
    report = await ingestor.poll(job)
    assert report.next_poll_at is None
    state = store.source_state("s", job.url)
    assert state.disabled_reason is not None and "410" in state.disabled_reason
    site.clear_requests()
    again = await ingestor.poll(job)
    assert again.error is not None and again.error.startswith("disabled: gone (HTTP 410)")
    assert site.requests == []  # a disabled source costs the publisher nothing
    site.set_file("/moved.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    moved = SourceJob("s", site.url("/moved.xml"), full_text="never")
    assert (await ingestor.poll(moved)).error is None
    assert store.source_state("s", moved.url).disabled_reason is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_obeyed_exactly(
    site: SampleSite, ingestor: Ingestor, store: Store, status: int
) -> None:
    site.route("/feed.xml", lambda request: Response(status, {"Retry-After": "120"}, b""))
    job = SourceJob("s", site.url("/feed.xml"), cadence=CADENCE)
    report = await fixed(ingestor).poll(job)
    assert report.next_poll_at == NOW + timedelta(seconds=120)
    state = store.source_state("s", job.url)
    assert state.next_poll_at == NOW + timedelta(seconds=120)
    assert state.last_error_kind == "http_status" and str(status) in (state.last_error or "")


async def test_failures_back_off_up_to_the_cap_and_keep_trying(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.route("/feed.xml", lambda request: Response(500, {}, b"oops"))
    job = SourceJob("s", site.url("/feed.xml"), cadence=CADENCE)
    delays = []
    for _ in range(6):
        report = await fixed(ingestor).poll(job)
        assert report.next_poll_at is not None
        delays.append(report.next_poll_at - NOW)
    # random() = 0.5: three quarters of 10, 20, 40, 80 min, then of the 2 h cap, for ever.
    assert delays == [timedelta(minutes=m) * 0.75 for m in (10, 20, 40, 80, 120, 120)]
    assert store.source_state("s", job.url).failure_streak == 6
    site.set_file("/feed.xml", rss(site.base_url, ("g1", "Kyiv", "/a1")), "application/rss+xml")
    site.route("/feed.xml", lambda request: Response(200, {"Content-Type": "text/xml"}, rss(
        site.base_url, ("g1", "Kyiv", "/a1"))))  # fmt: skip
    assert (await ingestor.poll(SourceJob("s", job.url, "never", CADENCE))).error is None
    assert store.source_state("s", job.url).failure_streak == 0


async def test_a_malformed_feed_is_recorded_with_its_kind(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", b"<html><body>Maintenance</body></html>", "text/html")
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.error is not None and "not a feed" in report.error
    assert store.source_state("s", site.url("/feed.xml")).last_error_kind == "parse"


# -- identity: canonical URLs, fingerprints, updates ----------------------------------------------


def feed_item(guid: str, title: str, link: str, description: str = "A teaser about Kyiv.") -> str:
    return (
        f"<item><guid>{guid}</guid><title>{title}</title><link>{link}</link>"
        f"<description>{description}</description></item>"
    )


def feed(*items: str) -> bytes:
    channel = f"<channel><title>T</title>{''.join(items)}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


async def test_tracker_and_amp_variants_are_one_article(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    base = site.base_url
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file(
        "/feed.xml",
        feed(
            feed_item("g2", "Kyiv talks", f"{base}/a1/amp"),  # newer, so handled second
            feed_item("g1", "Kyiv talks", f"{base}/a1?utm_source=rss&amp;fbclid=x"),
        ),
        "application/rss+xml",
    )
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.new_articles == 1
    [item] = store.feed_items("kyiv", 10)
    assert item.article.url == f"{base}/a1"  # trackers gone from the stored link
    # Next poll the feed hands out yet another guid for the same link: still the same article.
    site.set_file(
        "/feed.xml", feed(feed_item("g3", "Kyiv talks", f"{base}/a1?utm_medium=x")), "text/xml"
    )
    assert (await ingestor.poll(SourceJob("s", site.url("/feed.xml")))).new_articles == 0


async def test_rel_canonical_recognises_an_article_under_another_url(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    base = site.base_url
    site.set_file("/a1", ARTICLE, "text/html")
    canonical = ARTICLE.replace(
        b"<head>", f'<head><link rel="canonical" href="{base}/a1">'.encode()
    )
    site.set_file("/share/xyz", canonical, "text/html")
    site.set_file("/feed.xml", feed(feed_item("g1", "Kyiv talks", f"{base}/a1")), "text/xml")
    await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    site.set_file("/feed.xml", feed(feed_item("g2", "Kyiv talks", f"{base}/share/xyz")), "text/xml")
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert (report.new_articles, report.updated_articles) == (0, 0)
    assert len(store.feed_items("kyiv", 10)) == 1


async def test_a_changed_entry_updates_the_same_article(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    base = site.base_url
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file("/feed.xml", feed(feed_item("g1", "Kyiv talks", f"{base}/a1")), "text/xml")
    job = SourceJob("s", site.url("/feed.xml"))
    times = iter([NOW, NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=1)])
    ingestor.clock = lambda: next(times, NOW + timedelta(hours=1))
    await ingestor.poll(job)
    [before] = store.feed_items("kyiv", 10)
    site.set_file("/feed.xml", feed(feed_item("g1", "Kyiv talks resume", f"{base}/a1")), "text/xml")
    site.clear_requests()
    report = await ingestor.poll(job)
    assert (report.new_articles, report.updated_articles, report.new_alerts) == (0, 1, 0)
    [after] = store.feed_items("kyiv", 10)
    assert (after.article.id, after.article.guid) == (before.article.id, before.article.guid)
    assert after.article.updated_at > before.article.updated_at
    assert after.article.fetched_at == before.article.fetched_at
    # The page had not changed: it was asked for conditionally and its stored text kept.
    [page_request] = [r for r in site.requests if r.path == "/a1"]
    assert page_request.headers.get("if-none-match")
    assert after.article.text == before.article.text
    assert len(store.pending_alerts()) == 1  # an update is not a second alert


async def test_an_entry_listed_again_unchanged_costs_nothing(
    site: SampleSite, ingestor: Ingestor
) -> None:
    base = site.base_url
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file("/feed.xml", feed(feed_item("g1", "Kyiv talks", f"{base}/a1")), "text/xml")
    await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    # The feed changes (a new item), the known one is untouched: its page is not fetched again.
    site.set_file(
        "/feed.xml",
        feed(
            feed_item("g2", "Other news", f"{base}/a2"), feed_item("g1", "Kyiv talks", f"{base}/a1")
        ),
        "text/xml",
    )
    site.clear_requests()
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml"), full_text="never"))
    assert (report.new_articles, report.updated_articles) == (1, 0)
    assert "/a1" not in [r.path for r in site.requests]


# -- politeness: robots.txt and the host gate for article pages -----------------------------------


async def test_robots_txt_keeps_article_pages_unfetched(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/robots.txt", b"User-agent: *\nDisallow: /a1\n", "text/plain")
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file("/feed.xml", rss(site.base_url, ("g1", "Kyiv talks", "/a1")), "text/xml")
    ingestor.robots = RobotsCache(ingestor.client, "wirewatch-test", limits=LIMITS)
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.new_articles == 1 and "robots.txt" in report.warnings[0]
    assert "/a1" not in [r.path for r in site.requests]
    [item] = store.feed_items("kyiv", 10)
    assert item.article.text == "A teaser about Kyiv."


async def test_article_pages_wait_for_their_hosts_turn(
    site: SampleSite, ingestor: Ingestor
) -> None:
    items = [(f"g{n}", f"Kyiv {n}", f"/a{n}") for n in range(3)]
    for _, _, path in items:
        site.set_file(path, ARTICLE, "text/html")
    site.set_file("/feed.xml", rss(site.base_url, *items), "text/xml")
    ingestor.gate = HostGate(total=8, per_host=2, min_delay=0.15)
    started = time.monotonic()
    await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    elapsed = time.monotonic() - started
    assert [r.path for r in site.requests] == ["/feed.xml", "/a2", "/a1", "/a0"]  # oldest first
    assert elapsed >= 3 * 0.15 - 0.02  # the feed and three pages, each a delay after the last


# -- page sources --------------------------------------------------------------------------------


async def test_a_listing_page_is_a_source(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    listing = b"""<html><body><main>
      <div class="story"><a href="/a1?utm_source=home">Kyiv talks</a></div>
      <div class="story"><a href="/a2">Weather</a></div>
    </main></body></html>"""
    site.set_file("/world", listing, "text/html")
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file("/a2", b"<html><body><p>Sunny.</p></body></html>", "text/html")
    job = SourceJob("s", site.url("/world"), listing=ListingSelectors(links=".story"))
    report = await ingestor.poll(job)
    assert (report.error, report.new_articles, report.new_matches) == (None, 2, 1)
    [item] = store.feed_items("kyiv", 10)
    assert item.article.url == site.url("/a1")
    assert item.article.text.startswith("Paragraph 0 of the talks in Kyiv")
    assert (await ingestor.poll(job)).not_modified


async def test_a_salvaged_feed_is_read_with_a_warning(site: SampleSite, ingestor: Ingestor) -> None:
    broken = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        b"<item><guid>g1</guid><title>Salt & Kyiv</title><link>http://127.0.0.1:9/a</link>"
        b"<description>About Kyiv & more</description></item></channel></rss>"
    )
    site.set_file("/feed.xml", broken, "application/rss+xml")
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml"), full_text="never"))
    assert report.error is None and report.new_articles == 1
    assert report.warnings and report.warnings[0].startswith("malformed feed salvaged (1 entries")


def dated_rss(*hours_ago: int) -> bytes:
    """An RSS feed of items published `hours_ago` before NOW."""
    items = "".join(
        f"<item><guid>d{n}</guid><title>Item {n}</title><link>http://x.test/{n}</link>"
        f"<description>Short.</description>"
        f"<pubDate>{format_datetime(NOW - timedelta(hours=hours))}</pubDate></item>"
        for n, hours in enumerate(hours_ago)
    )
    channel = f"<channel><title>T</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'.encode()


class ArticleReads:
    """Counts the statements that read the articles table, as the database receives them."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        event.listen(store.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM articles" in statement:
            self.count += 1


async def test_a_304_takes_the_publication_gap_the_last_fetch_stored(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", dated_rss(2, 4, 6, 8), "application/rss+xml")
    cadence = Cadence(every=timedelta(hours=3), min_every=timedelta(minutes=5),
                      max_every=timedelta(hours=6))  # fmt: skip
    job = SourceJob("s", site.url("/feed.xml"), full_text="never", cadence=cadence)
    first = await fixed(ingestor).poll(job)
    assert store.source_state("s", job.url).publish_gap_seconds == 7200  # 2 h between items
    assert first.next_poll_at == NOW + timedelta(hours=1)  # half the gap
    reads = ArticleReads(store)
    second = await ingestor.poll(job)
    assert second.not_modified and second.next_poll_at == NOW + timedelta(hours=1)
    assert reads.count == 0


async def test_an_unknown_publication_gap_is_worked_out_at_the_next_304_and_kept(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    site.set_file("/feed.xml", dated_rss(1, 2, 3), "application/rss+xml")
    job = SourceJob("s", site.url("/feed.xml"), full_text="never", cadence=CADENCE)
    await fixed(ingestor).poll(job)
    with store.engine.begin() as connection:  # a row stored before the gap was kept
        connection.execute(update(sources).values(publish_gap_seconds=None))
    reads = ArticleReads(store)
    assert (await ingestor.poll(job)).not_modified
    assert reads.count == 1
    assert store.source_state("s", job.url).publish_gap_seconds == 3600
    assert (await ingestor.poll(job)).not_modified
    assert reads.count == 1


async def test_a_poll_parses_and_cleans_in_the_parsing_pool(
    site: SampleSite, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, set[str]] = {}

    def watched(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            threads.setdefault(name, set()).add(threading.current_thread().name)
            return real(*args, **kwargs)

        return call

    steps = {"parse_feed_salvaged", "parse_hints", "clean_page", "article_from_entry"}
    for name in steps:
        monkeypatch.setattr(ingest_module, name, watched(name, getattr(ingest_module, name)))
    site.set_file(
        "/feed.xml", rss(site.base_url, ("g1", "Kyiv talks", "/a1")), "application/rss+xml"
    )
    site.set_file("/a1", ARTICLE, "text/html")
    report = await ingestor.poll(SourceJob("s", site.url("/feed.xml")))
    assert report.new_articles == 1
    assert set(threads) == steps
    assert all(name.startswith(THREAD_NAME) for names in threads.values() for name in names)
