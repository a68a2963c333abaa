"""Digests against the fake Bot API, through python-telegram-bot's real HTTP stack: strict HTML
and length checks on long split digests in a forum topic, and a burst digest whose delivery is
killed with SIGKILL and restarted, after which every alert arrived exactly once."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.delivery import Deliverer, route_table
from bot.ratelimit import Limits, Throttle
from bot.sample_site import Response, SampleSite
from bot.settings import WatchlistSettings
from bot.store import Store
from bot.telegram import TelegramSender
from feeds.models import Article, Match, TermHit
from tests.support.fake_telegram import FakeTelegram, parse_telegram_html, utf16_length
from tests.test_delivery_crash import (
    CHATS,
    STORIES,
    backlog_feed,
    outbox_statuses,
    start,
    wait_for,
    write_config,
)

LINK = re.compile(r'<a href="([^"]+)">')
TITLE = re.compile(r'<a href="[^"]+">([^<]+)</a>')
FAST = Limits(per_chat_window=0.01, chat_margin=0.0, per_group_window=0.01, group_margin=0.0)


async def test_long_digests_pass_telegrams_checks_in_a_forum_topic(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    watchlist = WatchlistSettings.model_validate(
        {
            "name": "w",
            "keywords": ["x"],
            "chats": [{"chat": -100, "thread": 4, "schedule": "hourly"}],
        }
    )
    with FakeTelegram() as telegram, Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        telegram.forums[-100] = {4}
        for number in range(80):
            title = f"Kyiv <b>says</b> & “quotes” 🇺🇦 {number} " + "word " * 40
            article = Article(
                url=f"https://news.test/a?id={number}&x=1", title=title, paragraphs=("x",), html=""
            )
            match = Match("w", (TermHit("x", 1, ("body",)),), "x")
            store.add_article_with_matches(
                "src", f"g{number}", article, [match], {"w": [-100]}, now
            )
        sender = TelegramSender(telegram.token, telegram.base_url)
        await sender.start()
        try:
            deliverer = Deliverer(
                store,
                sender,
                "sent",
                watchlist_titles={"w": "Ukraine & war"},
                source_titles={"src": "Wire <Co>"},
                routes=route_table([watchlist]),
                clock=lambda: now + timedelta(hours=1),
                throttle=Throttle(FAST),
            )
            report = await deliverer.deliver()
        finally:
            await sender.stop()
        assert store.alert_counts() == {"sent": 80}
        sent = telegram.sent
    assert report.sent == 80 and len(sent) >= 3
    links = Counter(link for message in sent for link in LINK.findall(message.text))
    expected = {f"https://news.test/a?id={n}&amp;x=1" for n in range(80)}
    assert set(links) == expected and set(links.values()) == {1}
    for message in sent:
        assert message.parse_mode == "HTML"  # no plain-text fallback was needed
        assert utf16_length(parse_telegram_html(message.text)) <= 4096
        assert message.params["message_thread_id"] == 4
        assert "reply_markup" not in message.params


def test_sigkill_while_sending_burst_digests_then_restart_delivers_each_alert_once(
    tmp_path: Path,
) -> None:
    """Every chat's backlog (five alerts) is over the burst threshold (three), so each chat gets
    one digest. The fake answers two, holds the rest unanswered, and the process is killed."""
    expected = {(chat, f"Story {n} on Ukraine") for chat in CHATS for n in range(STORIES)}
    database = tmp_path / "wirewatch.sqlite3"
    with SampleSite() as site, FakeTelegram() as telegram:
        feed = backlog_feed(site.base_url)
        site.route(
            "/backlog.xml",
            lambda _: Response(200, headers={"Content-Type": "application/rss+xml"}, body=feed),
        )
        config = write_config(tmp_path, site, telegram)
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("telegram: {", "telegram: {burst_threshold: 3, "), encoding="utf-8"
        )
        telegram.hang_after(3)

        first = start(config)
        try:
            wait_for(telegram.hanging.is_set, "the fake to hold a digest")

            def settled() -> bool:
                return outbox_statuses(database)["sending"] == STORIES * telegram.held

            wait_for(settled, "the digests in flight to reach the fake", timeout=20)
            time.sleep(0.3)
            wait_for(settled, "the digests in flight to reach the fake", timeout=20)
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
            wait_for(
                lambda: (
                    outbox_statuses(database)["pending"] == 0
                    and outbox_statuses(database)["sending"] == 0
                ),
                "the outbox to settle",
            )
            time.sleep(1.5)  # room for a duplicate to show up, if there were one
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=15)
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate()
        assert second.returncode == 0, stderr
        sent = telegram.sent

    pairs: Counter[tuple[int, str]] = Counter()
    for message in sent:
        assert parse_telegram_html(message.text).startswith("Digest · 5 alerts\nBurst of news")
        for title in TITLE.findall(message.text):
            pairs[(int(message.chat_id), title)] += 1
    assert set(pairs) == expected  # nothing lost
    assert set(pairs.values()) == {1}  # nothing twice
    assert len(sent) == len(CHATS)  # one digest per chat
    assert outbox_statuses(database) == Counter(
        {"sent": STORIES * (len(CHATS) - held), "unknown": STORIES * held}
    )
    with sqlite3.connect(database) as connection:
        bursts = connection.execute(
            "SELECT count(*) FROM chat_states WHERE burst_since IS NOT NULL"
        )
        assert bursts.fetchone() == (len(CHATS),)
