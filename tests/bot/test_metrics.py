"""/metrics (bot.metrics): scraped over loopback from a real App polling the sample site and
alerting the fake Telegram; each counter must move by what the site, the fake and the database
say happened, not by what the app reports about itself."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import bot.store
from bot.app import App
from bot.metrics import Metrics
from bot.sample_site import Response, SampleSite
from bot.server import FeedServer
from bot.settings import Settings, load_settings
from tests.conftest import free_port
from tests.support.fake_telegram import FakeTelegram

FEEDS = ("/feeds/world.xml", "/feeds/wire.json", "/feeds/europe.atom")
BROKEN = "/feeds/broken.xml"


def write_settings(tmp_path: Path, site: SampleSite, telegram: FakeTelegram) -> Settings:
    port = free_port()
    sources = [f"  - {{name: s{n}, url: '{site.url(path)}'}}" for n, path in enumerate(FEEDS)]
    lines = [
        f"database: sqlite:///{tmp_path / 'wirewatch.sqlite3'}",
        f"server: {{host: 127.0.0.1, port: {port}}}",
        f"output_dir: {tmp_path / 'feeds'}",
        f"telegram: {{token: '{telegram.token}', api_url: '{telegram.base_url}'}}",
        "fetch: {timeout: 10s, host_delay: 0s}",
        "sources:",
        *sources,
        f"  - {{name: broken, url: '{site.url(BROKEN)}'}}",
        "watchlists:",
        # One story per chat, or Telegram's pace (a message a second per chat) slows the test.
        "  - {name: baltic, keywords: [Baltic], chats: [1001]}",
        "  - {name: sullivan, keywords: [Jake Sullivan], chats: [1002]}",
        "  - {name: macron, keywords: [Macron], chats: [1003]}",
        "  - {name: energy, keywords: [Nord Stream], chats: [1004]}",
    ]
    path = tmp_path / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(path)


@dataclass
class Scrape:
    """One scrape of /metrics: sample name + sorted labels → value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def __sub__(self, before: Scrape) -> Scrape:
        return Scrape(
            {key: value - before.samples.get(key, 0.0) for key, value in self.samples.items()}
        )


async def scrape(http: httpx.AsyncClient) -> Scrape:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return Scrape(samples)


def count_rows(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        [(count,)] = connection.execute(f"SELECT count(*) FROM {table}")
    return int(count)


@dataclass
class Running:
    app: App
    http: httpx.AsyncClient
    site: SampleSite
    telegram: FakeTelegram
    database: Path


@pytest.fixture
async def running(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> AsyncIterator[Running]:
    sample_site.route(BROKEN, lambda request: Response(500, {}, b"oops"))
    settings = write_settings(tmp_path, sample_site, telegram)
    async with App(settings) as app:
        server: FeedServer = await app.serve()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                yield Running(app, http, sample_site, telegram, tmp_path / "wirewatch.sqlite3")
        finally:
            await server.stop()


def page_requests(site: SampleSite) -> int:
    return sum(count for path, count in site.path_counts.items() if path.startswith("/articles/"))


async def test_a_cycle_moves_every_counter_by_what_happened(running: Running) -> None:
    site, telegram = running.site, running.telegram
    before = await scrape(running.http)
    site.clear_requests()
    report = await running.app.run_once()
    first = await scrape(running.http) - before

    fed = sum(site.path_counts.get(path, 0) for path in FEEDS)
    assert fed == len(FEEDS)
    assert first("wirewatch_polls_total", outcome="fetched") == len(FEEDS)
    assert first("wirewatch_polls_total", outcome="failed") == 1
    assert first("wirewatch_poll_errors_total", kind="http_status") == 1
    assert first("wirewatch_polls_total", outcome="not_modified") == 0
    articles = count_rows(running.database, "articles")
    assert articles > 0
    assert first("wirewatch_articles_stored_total", change="new") == articles
    assert first("wirewatch_matches_total") == count_rows(running.database, "matches") > 0
    assert first("wirewatch_alerts_queued_total") == count_rows(running.database, "outbox")
    sent = len(telegram.sent)
    assert sent == report.delivery.sent > 0
    assert first("wirewatch_alerts_total", outcome="sent") == sent
    assert first("wirewatch_delivery_latency_seconds_count") == sent
    assert first("wirewatch_delivery_latency_seconds_sum") >= 0
    pages = page_requests(site)
    assert pages > 0
    assert first("wirewatch_extraction_seconds_count") == pages
    assert first("wirewatch_extraction_seconds_sum") > 0
    assert first("wirewatch_outbox_backlog") == 0
    assert (await scrape(running.http))("process_resident_memory_bytes") > 0

    # The same feeds again: every one answers 304, nothing new is stored or sent.
    site.clear_requests()
    await running.app.run_once()
    second = await scrape(running.http) - before - first
    assert site.status_counts.get(304, 0) == len(FEEDS)
    assert second("wirewatch_polls_total", outcome="not_modified") == len(FEEDS)
    assert second("wirewatch_polls_total", outcome="fetched") == 0
    assert second("wirewatch_polls_total", outcome="failed") == 1
    assert second("wirewatch_articles_stored_total", change="new") == 0
    assert second("wirewatch_alerts_total", outcome="sent") == 0
    assert second("wirewatch_extraction_seconds_count") == 0
    assert len(telegram.sent) == sent


async def test_the_backlog_is_read_from_the_outbox_and_failed_sends_count_as_retries(
    running: Running,
) -> None:
    running.telegram.fail_next("sendMessage", 500, "Internal Server Error", times=1000)
    report = await running.app.run_once()
    metrics = await scrape(running.http)
    pending = running.app.store.alert_counts().get("pending", 0)
    assert pending == count_rows(running.database, "outbox") > 0
    assert metrics("wirewatch_outbox_backlog") == pending
    assert metrics("wirewatch_alerts_total", outcome="retry") == report.delivery.failed > 0
    assert metrics("wirewatch_alerts_total", outcome="sent") == 0
    assert metrics("wirewatch_delivery_latency_seconds_count") == 0


LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
"""


async def test_a_poll_the_database_refused_counts_as_a_database_error(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    await running.app.run_once()
    monkeypatch.setattr(bot.store, "SQLITE_BUSY_TIMEOUT_MS", 200)  # fail fast, same path
    running.app.store.close()  # new connections take the shorter timeout
    before = await scrape(running.http)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(running.database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        app = running.app
        polls = await app.poll_sources([app.job(source) for source in app.settings.sources])
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.communicate("\n", timeout=10)
    refused = [poll for poll in polls if poll.error and "locked" in poll.error]
    assert refused
    after = await scrape(running.http) - before
    assert after("wirewatch_poll_errors_total", kind="database") == len(refused)


async def test_two_apps_in_one_process_keep_their_own_counts() -> None:
    one, two = Metrics(), Metrics()
    one.count_failed_poll("timeout")
    text = one.render().decode()
    assert 'wirewatch_poll_errors_total{kind="timeout"} 1.0' in text
    assert "timeout" not in two.render().decode()
    # Known outcomes are shown at zero before anything happened.
    assert 'wirewatch_polls_total{outcome="not_modified"} 0.0' in two.render().decode()


def test_an_unreadable_backlog_leaves_the_gauge_out_but_the_scrape_works() -> None:
    metrics = Metrics()

    def broken() -> int:
        raise sqlite3.OperationalError("unable to open database file")

    metrics.track_backlog(broken)
    text = metrics.render().decode()
    assert "wirewatch_outbox_backlog " not in text
    assert "wirewatch_polls_total" in text
    metrics.track_backlog(lambda: 7)
    assert "wirewatch_outbox_backlog 7.0" in metrics.render().decode()
