"""Delivery rules on a real SQLite outbox with a scripted sender: order per chat, temporary vs
permanent failures, one stuck chat never blocking the others, and never sending twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.delivery import deliver_pending
from bot.store import Store
from bot.telegram import DeliveryError
from feeds.models import Article, Match, TermHit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class ScriptedSender:
    """Records sends; fails for chats as told (a real Telegram is tested elsewhere)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.failures: dict[int, DeliveryError] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, chat_id: int, html_text: str) -> int:
        if chat_id in self.failures:
            raise self.failures[chat_id]
        self.sent.append((chat_id, html_text))
        return len(self.sent)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as opened:
        yield opened


def queue(store: Store, title: str, chats: list[int]) -> None:
    article = Article(url=f"https://news.test/{title}", title=title, paragraphs=("x",), html="")
    match = Match("w", (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches("src", title, article, [match], {"w": chats}, T0)


async def deliver(store: Store, sender: ScriptedSender) -> tuple[int, int]:
    report = await deliver_pending(store, sender, "sent", {}, {}, lambda: T0)
    return report.sent, report.failed


def titles(sender: ScriptedSender, chat: int) -> list[str]:
    return [text.split(">", 2)[2].split("<", 1)[0] for c, text in sender.sent if c == chat]


async def test_alerts_go_out_in_order_and_never_twice(store: Store) -> None:
    for title in ("first", "second", "third"):
        queue(store, title, [1, 2])
    sender = ScriptedSender()
    assert await deliver(store, sender) == (6, 0)
    assert titles(sender, 1) == ["first", "second", "third"]
    assert await deliver(store, sender) == (0, 0)  # nothing is sent twice


async def test_a_temporary_failure_holds_the_chat_and_retries_next_round(store: Store) -> None:
    for title in ("first", "second"):
        queue(store, title, [1, 2])
    sender = ScriptedSender()
    sender.failures[1] = DeliveryError("flood control", permanent=False, retry_after=3)
    assert await deliver(store, sender) == (2, 1)  # chat 2 got both; chat 1 waits, in order
    assert titles(sender, 1) == []
    del sender.failures[1]
    assert await deliver(store, sender) == (2, 0)
    assert titles(sender, 1) == ["first", "second"]


async def test_a_permanent_failure_ends_that_alert_only(store: Store) -> None:
    for title in ("first", "second"):
        queue(store, title, [1])
    sender = ScriptedSender()
    sender.failures[1] = DeliveryError("Forbidden: bot was blocked", permanent=True)
    assert await deliver(store, sender) == (0, 2)
    del sender.failures[1]
    assert await deliver(store, sender) == (0, 0)  # failed for good: not retried forever


async def test_a_stuck_chat_never_hides_the_other_chats(store: Store) -> None:
    for number in range(150):  # more than one page of pending alerts, all for the stuck chat
        queue(store, f"stuck{number}", [1])
    queue(store, "other", [2])
    sender = ScriptedSender()
    sender.failures[1] = DeliveryError("network down", permanent=False)
    assert await deliver(store, sender) == (1, 1)
    assert titles(sender, 2) == ["other"]


async def test_stopping_leaves_the_rest_pending(store: Store) -> None:
    for title in ("first", "second", "third"):
        queue(store, title, [1])
    sender = ScriptedSender()
    report = await deliver_pending(
        store, sender, "sent", {}, {}, lambda: T0, should_stop=lambda: len(sender.sent) >= 1
    )
    assert report.sent == 1
    assert [a.article.title for a in store.pending_alerts()] == ["second", "third"]
