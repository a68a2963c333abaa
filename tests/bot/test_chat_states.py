"""The store's memory of chats (supergroup moves, refusals) and the outbox's delivery columns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.store import AlertStateError, ChatState, Store
from feeds.models import Article, Match, TermHit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def queue(store: Store, title: str, chats: list[int]) -> None:
    article = Article(url=f"https://news.test/{title}", title=title, paragraphs=("x",), html="")
    match = Match("w", (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches("src", title, article, [match], {"w": chats}, T0)


def test_a_migration_chain_is_followed_by_every_old_id(store: Store) -> None:
    store.record_chat_migration(-5, -1005, T0)
    store.record_chat_migration(-1005, -2005, T0)
    states = store.chat_states()
    assert states[-5] == ChatState(-5, -2005, None)
    assert states[-1005] == ChatState(-1005, -2005, None)


def test_disabling_and_enabling_a_chat(store: Store) -> None:
    store.set_chat_disabled(7, "Forbidden: bot was kicked", T0)
    assert store.chat_states()[7].disabled_reason == "Forbidden: bot was kicked"
    store.set_chat_disabled(7, None, T0)
    assert store.chat_states()[7].disabled_reason is None


def test_retry_time_message_id_and_unknown_outcome(store: Store) -> None:
    queue(store, "a", [1, 2, 3])
    first, second, third = store.pending_alerts()
    store.mark_alert_sending(first.id, T0)
    store.mark_alert_failed(first.id, "flood", T0, retry_at=T0 + timedelta(seconds=9))
    assert store.pending_chats()[0] == (1, T0 + timedelta(seconds=9))
    [retry] = store.pending_alerts(chat_id=1)
    assert retry.next_attempt_at == T0 + timedelta(seconds=9)
    store.mark_alert_sending(second.id, T0)
    store.mark_alert_sent(second.id, T0, "sent", message_id=77)
    store.mark_alert_sending(third.id, T0)
    store.mark_alert_unknown(third.id, "ReadTimeout", T0)
    with pytest.raises(AlertStateError):
        store.mark_alert_unknown(third.id, "again", T0)  # only from sending
    assert store.alert_counts() == {"pending": 1, "sent": 1, "unknown": 1}
    assert store.pending_chats() == [(1, T0 + timedelta(seconds=9))]


def test_mutes_expire_and_can_be_ended(store: Store) -> None:
    store.mute(5, "ukraine", T0 + timedelta(hours=2))
    store.mute(5, "energy", T0 + timedelta(hours=1))
    store.mute(6, "ukraine", T0 + timedelta(hours=1))
    assert store.muted(T0) == {(5, "ukraine"), (5, "energy"), (6, "ukraine")}
    assert store.muted(T0 + timedelta(hours=1)) == {(5, "ukraine")}  # the others expired
    store.mute(5, "ukraine", T0 + timedelta(minutes=30))  # a new mute replaces the old one
    assert store.muted(T0 + timedelta(hours=1)) == set()
    assert store.unmute(5, "energy") == 1
    assert store.unmute(6) == 1
    assert store.unmute(6) == 0
