"""kill -9 a real `wirewatch run` while it polls and while it writes a big batch of articles.

After each restart the database must pass SQLite's integrity check, every article that was in the
feed must be stored exactly once, and every alert must reach the fake Bot API exactly once. (A kill
in the middle of delivering is tests/test_delivery_crash.py; its helpers are reused here.)

Landing a kill inside a database write: the feed is large (ingestion commits one article per
transaction, for a few seconds), the test waits until the SQLite write-ahead log is growing and
articles are being stored but not all of them, then kills after a random pause of a few
milliseconds, several times in a row. Each kill lands somewhere in the middle of the batch; a
torn write would show up as a failed integrity check, a lost or doubled article, or a lost or
doubled alert.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from bot.sample_site import Request, Response, SampleSite
from tests.support.fake_telegram import FakeTelegram
from tests.support.faults import T0, Item, NewsFeed, integrity, rss, stored_guids, write_config
from tests.test_delivery_crash import TEXTS, delivered, outbox_statuses, start, wait_for

RSS = {"Content-Type": "application/rss+xml"}
CHATS = (21, 22)


def feed_items(filler: int) -> list[Item]:
    """`filler` unrelated stories and, spread among them, one per text of TEXTS (each mentions
    Ukraine and differs enough from the others to be its own story: one alert each)."""
    weather = NewsFeed("filler", keep=filler + 1)
    items = weather.publish(filler, T0, matching=False)
    step = max(1, filler // len(TEXTS))
    for number, text in enumerate(TEXTS):
        items.insert(number * step, Item(f"story-{number}", f"Story {number} on Ukraine", text, T0))
    return items


def expected_alerts() -> set[tuple[int, str]]:
    return {(chat, f"Story {n} on Ukraine") for chat in CHATS for n in range(len(TEXTS))}


def article_count(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        ) as connection:
            return int(connection.execute("SELECT count(*) FROM articles").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def kill(process: subprocess.Popen[str]) -> None:
    try:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -signal.SIGKILL


def finish(config: Path, database: Path, telegram: FakeTelegram, articles: int) -> tuple[int, str]:
    """Run until every article is stored and every alert settled, then stop with SIGTERM."""
    process = start(config)
    try:
        wait_for(lambda: article_count(database) >= articles, "every article", timeout=90)
        wait_for(lambda: len(telegram.sent) >= len(expected_alerts()), "every alert", 60)
        wait_for(lambda: outbox_statuses(database)["pending"] == 0, "the outbox to settle", 20)
        time.sleep(1.0)  # room for a duplicate to show up, if there were one
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


def check_after_restart(database: Path, telegram: FakeTelegram, items: list[Item]) -> None:
    assert integrity(database) == "ok"
    guids = stored_guids(database)["feed"]
    assert sorted(guids) == sorted(item.guid for item in items)  # none lost, none twice
    pairs = delivered(telegram)
    assert set(pairs) == expected_alerts()  # no alert lost
    assert set(pairs.values()) == {1}  # none sent twice
    # Every alert settled: sent, or "unknown" if a kill landed while it was being sent (by
    # design never sent again, bot.delivery; Telegram got each exactly once, asserted above).
    statuses = outbox_statuses(database)
    assert set(statuses) <= {"sent", "unknown"}, statuses
    assert sum(statuses.values()) == len(expected_alerts())


def test_sigkill_while_a_poll_waits_on_a_slow_source_then_restart_misses_nothing(
    tmp_path: Path,
) -> None:
    items = feed_items(20)
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site, FakeTelegram() as telegram:
        document = rss(site.base_url, items)
        slow = {"on": True}

        def answer(_: Request) -> Response:
            # While slow, the response starts only after the kill: the poll is held in flight.
            return Response(200, RSS, document, delay=30 if slow["on"] else 0)

        site.route("/feed.xml", answer)
        config = write_config(
            tmp_path, [("feed", site.url("/feed.xml"))],
            telegram=(telegram.token, telegram.base_url), chats=CHATS, every="1h",
        )  # fmt: skip
        first = start(config)
        try:
            wait_for(lambda: site.in_flight >= 1, "the poll to reach the source")
            time.sleep(0.2)
        finally:
            kill(first)
        assert article_count(database) == 0 and not telegram.sent
        slow["on"] = False
        code, stderr = finish(config, database, telegram, len(items))
        assert code == 0, stderr
        check_after_restart(database, telegram, items)


def test_sigkill_inside_database_writes_several_times_then_restart_misses_nothing(
    tmp_path: Path,
) -> None:
    items = feed_items(500)
    database = tmp_path / "wirewatch.sqlite3"
    chance = random.Random()
    landed = []
    with SampleSite() as site, FakeTelegram() as telegram:
        site.set_file("/feed.xml", rss(site.base_url, items), "application/rss+xml")
        config = write_config(
            tmp_path, [("feed", site.url("/feed.xml"))],
            telegram=(telegram.token, telegram.base_url), chats=CHATS, every="1h",
            fetch=", max_entries_per_poll: 1000",  # the whole batch in one poll
        )  # fmt: skip
        for _ in range(3):
            before = article_count(database)
            if before >= len(items):
                break
            process = start(config)
            try:
                # The batch's first articles are in: the writes of the rest are under way. (The
                # test used to wait for the WAL to grow too, which it may not: after a
                # checkpoint SQLite rewrites the log from its start.)
                wait_for(lambda b=before: article_count(database) > b, "articles to be stored")
                time.sleep(chance.uniform(0.0, 0.05))
            finally:
                kill(process)
            landed.append(article_count(database))
        # At least one kill landed with the batch half stored: the case this test is about.
        assert any(0 < count < len(items) for count in landed), landed
        assert integrity(database) == "ok"
        code, stderr = finish(config, database, telegram, len(items))
        assert code == 0, stderr
        check_after_restart(database, telegram, items)
