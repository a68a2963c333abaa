"""kill -9 in the middle of delivering a backlog, restart: every alert arrives exactly once.

A real `wirewatch run` process polls a loopback feed that brings a backlog of alerts for several
chats and delivers them to the fake Bot API. The fake is told to take (record) messages from some
point on and then never answer them, the exact window in which Telegram has a message and the bot
does not know it. The test waits until every message the bot has marked `sending` is one the fake
holds, kills the process with SIGKILL, and starts it again.

The documented rule for that window (bot/delivery.py): an alert whose outcome is unknown is never
sent again. So after the restart the held alerts must be `unknown` in the outbox and present once
at the fake, and every other alert must be `sent` and present once: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bot.sample_site import Response, SampleSite
from tests.conftest import REPO, free_port
from tests.support.fake_telegram import FakeTelegram

CHATS = (11, 12, -13, 14)


TEXTS = (
    "Grain exports from Ukraine resumed through the Black Sea corridor after a pause.",
    "Parliament in Kyiv passed a budget that puts defence first, Ukraine's finance minister said.",
    "Engineers restored electricity to eastern Ukraine after overnight strikes on substations.",
    "A donor conference pledged money to rebuild schools and hospitals across Ukraine this winter.",
    "Farmers near the Polish border protested about imports of cheap Ukraine wheat on Monday.",
)
"""Unrelated stories: near-identical texts would be grouped as one story and alerted once."""
STORIES = len(TEXTS)


def backlog_feed(base_url: str) -> bytes:
    """An RSS feed whose every item carries its whole text and mentions Ukraine."""
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    items = "".join(
        f"<item><title>Story {n} on Ukraine</title><link>{base_url}/story/{n}</link>"
        f"<guid>story-{n}</guid>"
        f"<pubDate>{format_datetime(start + timedelta(minutes=n))}</pubDate>"
        f"<description>{text}</description></item>"
        for n, text in enumerate(TEXTS)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Backlog</title>'
        f"<link>{base_url}/</link><description>x</description>{items}</channel></rss>"
    ).encode()


def write_config(tmp_path: Path, site: SampleSite, telegram: FakeTelegram) -> Path:
    port = free_port()
    chats = ", ".join(str(chat) for chat in CHATS)
    lines = [
        f"database: sqlite:///{tmp_path / 'wirewatch.sqlite3'}",
        f"server: {{host: 127.0.0.1, port: {port}}}",
        f"output_dir: {tmp_path / 'feeds'}",
        f"telegram: {{token: '{telegram.token}', api_url: '{telegram.base_url}'}}",
        "sources:",
        f"  - {{name: backlog, url: '{site.base_url}/backlog.xml', every: 1h, full_text: never}}",
        "watchlists:",
        f"  - {{name: ukraine, keywords: [Ukraine], chats: [{chats}]}}",
    ]
    path = tmp_path / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PTB_TIMEDELTA": "1"},
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def outbox_statuses(database: Path) -> Counter[str]:
    """Read the outbox of the running process (WAL lets a reader in beside the writer)."""
    if not database.exists():
        return Counter()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        try:
            rows = connection.execute("SELECT status FROM outbox").fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return Counter()
    return Counter(status for (status,) in rows)


def delivered(telegram: FakeTelegram) -> Counter[tuple[int, str]]:
    """(chat, story title) for every message the fake accepted."""
    pairs: Counter[tuple[int, str]] = Counter()
    for message in telegram.sent:
        title = message.text.split('">', 1)[1].split("</a>", 1)[0]
        pairs[(int(message.chat_id), title)] += 1
    return pairs


def test_sigkill_mid_delivery_then_restart_delivers_every_alert_exactly_once(
    tmp_path: Path,
) -> None:
    expected = {(chat, f"Story {n} on Ukraine") for chat in CHATS for n in range(STORIES)}
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site, FakeTelegram() as telegram:
        feed = backlog_feed(site.base_url)
        site.route(
            "/backlog.xml",
            lambda _: Response(200, headers={"Content-Type": "application/rss+xml"}, body=feed),
        )
        config = write_config(tmp_path, site, telegram)
        telegram.hang_after(7)  # answer six messages, then take every later one and hang

        first = start(config)
        try:
            wait_for(telegram.hanging.is_set, "the fake to hold a message")

            def settled() -> bool:
                # Every alert the bot is sending is one the fake holds: kill inside that window.
                return outbox_statuses(database)["sending"] == telegram.held

            wait_for(settled, "the in-flight sends to reach the fake", timeout=20)
            time.sleep(0.3)
            wait_for(settled, "the in-flight sends to reach the fake", timeout=20)
            held = telegram.held
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        assert first.returncode == -signal.SIGKILL
        assert held >= 1
        telegram.release()

        second = start(config)
        try:
            wait_for(lambda: len(telegram.sent) >= len(expected), "the backlog to be delivered")
            wait_for(
                lambda: outbox_statuses(database)["pending"] == 0, "the outbox to settle", 10
            )
            time.sleep(1.5)  # room for a duplicate to show up, if there were one
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=15)
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate()
        assert second.returncode == 0, stderr

    pairs = delivered(telegram)
    assert set(pairs) == expected  # nothing lost
    assert set(pairs.values()) == {1}  # nothing twice
    statuses = outbox_statuses(database)
    assert statuses == Counter({"sent": len(expected) - held, "unknown": held})
    assert "their delivery is unknown and they are not sent again" in stderr


def test_sigterm_mid_delivery_stops_cleanly_and_a_restart_finishes_the_backlog(
    tmp_path: Path,
) -> None:
    """A clean stop lets the send in flight finish: nothing is left `sending`, so nothing becomes
    `unknown`, and the next run delivers the rest, each alert once."""
    expected = {(chat, f"Story {n} on Ukraine") for chat in CHATS for n in range(STORIES)}
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site, FakeTelegram() as telegram:
        feed = backlog_feed(site.base_url)
        site.route(
            "/backlog.xml",
            lambda _: Response(200, headers={"Content-Type": "application/rss+xml"}, body=feed),
        )
        config = write_config(tmp_path, site, telegram)
        first = start(config)
        try:
            wait_for(lambda: len(telegram.sent) >= 6, "the first alerts")
            stopping = time.monotonic()
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=15)
            stopped_in = time.monotonic() - stopping
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        assert first.returncode == 0
        assert stopped_in < 10
        statuses = outbox_statuses(database)
        assert statuses["sending"] == 0 and statuses["unknown"] == 0
        assert 0 < statuses["sent"] < len(expected)

        second = start(config)
        try:
            wait_for(lambda: outbox_statuses(database)["sent"] == len(expected), "the rest")
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=15)
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate()

    pairs = delivered(telegram)
    assert set(pairs) == expected
    assert set(pairs.values()) == {1}
