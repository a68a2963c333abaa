"""The database file locked by another process, the disk full, a corrupt row.

Each fault must give one clear error per failed step (no traceback storm), must not stop the
process, and work must resume by itself once the cause is gone, with nothing committed lost.
"""

from __future__ import annotations

import logging
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

import bot.store
from bot.app import App
from bot.ratelimit import Throttle
from bot.sample_site import Response, SampleSite
from bot.settings import load_settings
from tests.conftest import REPO, run_cli
from tests.support.faults import (
    T0,
    NewsFeed,
    VirtualClock,
    integrity,
    stored_guids,
    write_config,
)
from tests.test_delivery_crash import wait_for

RSS = {"Content-Type": "application/rss+xml"}

LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


@contextmanager
def locked(database: Path) -> Iterator[None]:
    """Another process holds an exclusive lock on `database` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_a_database_locked_by_another_process_fails_polls_clearly_and_work_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bot.store, "SQLITE_BUSY_TIMEOUT_MS", 200)  # fail fast, same path
    clock = VirtualClock()
    feed = NewsFeed("wire")
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site:
        site.route("/wire.xml", lambda _: Response(200, RSS, feed.document(site.base_url)))
        config = write_config(tmp_path, [("wire", site.url("/wire.xml"))])
        throttle = Throttle(clock=clock.monotonic, sleep=clock.sleep)
        async with App(load_settings(config, {}), clock=clock, throttle=throttle) as app:
            feed.publish(3, clock())
            first = await app.run_once()
            assert not first.failed_sources
            feed.publish(2, clock())
            caplog.clear()
            with caplog.at_level(logging.INFO), locked(database):
                for _ in range(3):  # the schedule keeps calling; each call fails cleanly
                    report = await app.run_once()
                    [poll] = report.polls
                    assert poll.error is not None and "database is locked" in poll.error
            tracebacks = [r for r in caplog.records if r.exc_info]
            assert tracebacks == []
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            # One line per failed step (poll, 304 batch, delivery round), not a storm.
            assert 3 <= len(errors) <= 3 * 3
            assert all("database" in r.getMessage() for r in errors)
            recovered = await app.run_once()
            assert not recovered.failed_sources
    assert sorted(stored_guids(database)["wire"]) == sorted(i.guid for i in feed.items)
    assert integrity(database) == "ok"


CORRUPTIONS = {
    # what is written straight into the file → (table, column, value)
    "unparsable datetime": ("articles", "published", "yesterday at noon"),
    "wrong type": ("articles", "published", 20260302),
    "required datetime": ("articles", "fetched_at", "not a time"),
    "invalid JSON in an alert": ("outbox", "terms", "{not json"),
    "invalid JSON in a match": ("matches", "terms", "[unclosed"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
async def test_a_row_corrupt_at_start_up_is_reported_and_repaired_and_the_bot_goes_on(
    tmp_path: Path, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    table, column, value = CORRUPTIONS[corruption]
    clock = VirtualClock()
    feed = NewsFeed("wire")
    database = tmp_path / "wirewatch.sqlite3"
    sent: list[tuple[int, str]] = []
    with SampleSite() as site:
        site.route("/wire.xml", lambda _: Response(200, RSS, feed.document(site.base_url)))
        config = write_config(tmp_path, [("wire", site.url("/wire.xml"))], chats=(7, 8))
        settings = load_settings(config, {})
        throttle = Throttle(clock=clock.monotonic, sleep=clock.sleep)
        feed.publish(1, clock())
        async with App(settings, clock=clock, throttle=throttle) as app:
            await app.poll_sources([app.job(s) for s in settings.sources])  # queued, not sent
        corrupt(database, table, column, value)
        feed.publish(2, clock())
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            async with App(settings, clock=clock, throttle=throttle, sender=Recorder(sent)) as app:
                report = await app.run_once()
        assert not report.failed_sources and not report.delivery.errors
        assert [r for r in caplog.records if r.exc_info] == []
        check_repaired(caplog, table, column, value)
    check_nothing_lost(tmp_path, feed, sent)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
async def test_a_row_corrupted_while_running_is_repaired_on_the_first_step_that_meets_it(
    tmp_path: Path, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Publishing and delivery repair and retry at once; a poll that met the row fails once
    (reported like any surprise in one source) and the next one goes through."""
    table, column, value = CORRUPTIONS[corruption]
    clock = VirtualClock()
    feed = NewsFeed("wire")
    database = tmp_path / "wirewatch.sqlite3"
    sent: list[tuple[int, str]] = []
    with SampleSite() as site:
        site.route("/wire.xml", lambda _: Response(200, RSS, feed.document(site.base_url)))
        config = write_config(tmp_path, [("wire", site.url("/wire.xml"))], chats=(7, 8))
        settings = load_settings(config, {})
        throttle = Throttle(clock=clock.monotonic, sleep=clock.sleep)
        feed.publish(1, clock())
        async with App(settings, clock=clock, throttle=throttle, sender=Recorder(sent)) as app:
            await app.poll_sources([app.job(s) for s in settings.sources])  # queued, not sent
            corrupt(database, table, column, value)
            feed.publish(2, clock())
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                first = await app.run_once()
                assert not first.delivery.errors
                check_repaired(caplog, table, column, value)
                second = await app.run_once()
            assert not second.failed_sources and not second.delivery.errors
    check_nothing_lost(tmp_path, feed, sent)


def corrupt(database: Path, table: str, column: str, value: object) -> None:
    """Write `value` straight into the file, past every check of the app."""
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = 1', (value,))


def check_repaired(
    caplog: pytest.LogCaptureFixture, table: str, column: str, value: object
) -> None:
    [repaired] = [r.getMessage() for r in caplog.records if "corrupt row" in r.getMessage()]
    assert f"{table} row 1, column {column}" in repaired and repr(value) in repaired


def check_nothing_lost(tmp_path: Path, feed: NewsFeed, sent: list[tuple[int, str]]) -> None:
    database = tmp_path / "wirewatch.sqlite3"
    assert sorted(stored_guids(database)["wire"]) == sorted(i.guid for i in feed.items)
    # Every article's alert reached both chats once, the one with the repaired row included.
    assert sorted(sent) == sorted((chat, i.title) for chat in (7, 8) for i in feed.items)
    all_feed = (tmp_path / "feeds" / "all.atom").read_text(encoding="utf-8")
    assert all_feed.count("<entry>") == len(feed.items)
    assert integrity(database) == "ok"


class Recorder:
    """A sender that records (chat, title) for each alert: this test is about the store."""

    def __init__(self, sent: list[tuple[int, str]]) -> None:
        self.sent = sent

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, chat_id: int, html_text: str, options: object = None) -> int:
        self.sent.append((chat_id, html_text.split('">', 1)[1].split("</a>", 1)[0]))
        return len(self.sent)


def limited_file_size(limit: int) -> Callable[[], None]:
    """For the child: files may grow to `limit` bytes (the soft limit; the hard one stays, so
    the test can give the space back with prlimit), and writing past it fails with EFBIG
    instead of killing the process (SIGXFSZ ignored): a full disk, without privileges."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    return apply


def test_a_full_disk_fails_clearly_keeps_running_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    feed = NewsFeed("wire", keep=1000)
    database = tmp_path / "wirewatch.sqlite3"
    log_path = tmp_path / "run.log"
    with SampleSite() as site:
        site.route("/wire.xml", lambda _: Response(200, RSS, feed.document(site.base_url)))
        config = write_config(
            tmp_path, [("wire", site.url("/wire.xml"))], every="2s",
            extra=["feeds: {max_entries: 5}"], fetch=", backoff_cap: 2s",
        )  # fmt: skip
        feed.publish(5, T0)
        first = run_cli("--config", str(config), "run", "--once")
        assert first.returncode == 0, first.stderr
        committed = stored_guids(database)["wire"]
        assert len(committed) == 5
        feed.publish(120, T0, matching=False)  # far more than the room left
        limit = database.stat().st_size + 16 * 1024
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "--config", str(config), "run"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                preexec_fn=limited_file_size(limit),
            )  # fmt: skip
        try:
            wait_for(lambda: "disk is full" in log_path.read_text(), "the disk full error", 30)
            time.sleep(3)  # a few more failed polls: the process must stay up, quietly
            assert process.poll() is None
            assert stored_guids(database)["wire"][:5] == committed  # nothing committed lost
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            wait_for(
                lambda: len(stored_guids(database)["wire"]) == len(feed.items),
                "the rest of the feed once space returned",
                60,
            )
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = log_path.read_text()
        assert process.returncode == 0, output
    assert "Traceback" not in output, output
    guids = stored_guids(database)["wire"]
    assert sorted(guids) == sorted(item.guid for item in feed.items)
    assert integrity(database) == "ok"


def test_a_start_while_the_database_is_locked_fails_with_one_clear_line(tmp_path: Path) -> None:
    feed = NewsFeed("wire")
    feed.publish(2, T0)
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site:
        site.route("/wire.xml", lambda _: Response(200, RSS, feed.document(site.base_url)))
        config = write_config(tmp_path, [("wire", site.url("/wire.xml"))])
        assert run_cli("--config", str(config), "run", "--once").returncode == 0
        feed.publish(2, T0)
        with locked(database):  # start-up must write (settling interrupted alerts)
            blocked = run_cli("--config", str(config), "run", "--once")
        assert blocked.returncode == 1
        assert "Traceback" not in blocked.stderr, blocked.stderr
        assert "wirewatch: cannot start: database unavailable: the database is locked" in (
            blocked.stderr
        )
        resumed = run_cli("--config", str(config), "run", "--once")
        assert resumed.returncode == 0, resumed.stderr
    assert sorted(stored_guids(database)["wire"]) == sorted(i.guid for i in feed.items)
