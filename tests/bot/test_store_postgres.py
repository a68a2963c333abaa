"""What a PostgreSQL server could make differ from SQLite: text order under the database's
collation, the session's time zone, and Telegram's 64-bit chat and message ids.

The collation and time-zone case runs one scenario on a SQLite file and on a PostgreSQL database
created the way production servers usually are (ICU en-US collation, a session time zone far from
UTC) and asks for the same answers from both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.store import Store
from feeds.models import Article, ConditionalHeaders, Match, TermHit
from tests.support.postgres import PostgresServer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
# Sorted by code point: "_" (0x5f) after the digits, "-" before them; ICU en-US sorts "_" and
# "-" before digits and letters, and upper case after lower case.
NAMES = ["B", "a-c", "a1", "a_b", "ab"]
TELEGRAM_IDS = (-1001234567890123, 2**53 - 1)
"""A supergroup's id and the largest message id Telegram promises (52 bits plus sign)."""


def scenario(url: str) -> dict[str, Any]:
    with Store.open(url) as store:
        for name in reversed(NAMES):
            store.record_poll_success(name, f"https://{name}.example/f", ConditionalHeaders(), T0)
        article = Article(
            "https://wire.example/1", "Port strike", ("Dockers strike.",), "", published=T0 - H
        )
        found = [Match(name, (TermHit("strike", 1, ("title",)),), "…strike…") for name in NAMES]
        stored = store.add_article_with_matches("wire", "g1", article, found, {}, T0)
        assert stored is not None
        [item] = store.feed_items(None, 10)
        [archived] = store.feed_history(None)
        return {
            "states": [state.name for state in store.source_states()],
            "polled": {state.last_polled_at for state in store.source_states()},
            "feed": item.watchlists,
            "history": archived.watchlists,
            "matched_at": (item.matched_at, archived.matched_at),
            "article": (
                stored.article.published,
                stored.article.fetched_at,
                store.article(stored.article.id).fetched_at,
            ),
            "activity": store.source_activity(T0 - H),
            "published": store.recent_publication_times("wire"),
        }


def test_text_order_and_instants_do_not_depend_on_collation_or_time_zone(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    postgres = postgres_server.create_database(icu_locale="en-US", timezone="Pacific/Chatham")
    try:
        on_postgres = scenario(postgres)
    finally:
        postgres_server.drop_database(postgres)
    on_sqlite = scenario(f"sqlite:///{tmp_path / 'w.sqlite'}")
    assert on_postgres == on_sqlite
    assert on_postgres["states"] == sorted(NAMES)
    assert on_postgres["feed"] == on_postgres["history"] == tuple(sorted(NAMES))
    assert on_postgres["polled"] == {T0}
    moments = [*on_postgres["matched_at"], *on_postgres["article"], *on_postgres["published"]]
    assert all(moment.tzinfo is UTC for moment in moments)
    assert on_postgres["activity"]["wire"].last_article_at == T0
    assert on_postgres["activity"]["wire"].last_article_at.tzinfo is UTC


def test_telegram_ids_beyond_32_bits_round_trip(store_url: str) -> None:
    chat, message = TELEGRAM_IDS
    with Store.open(store_url) as store:
        article = Article("https://wire.example/1", "Port strike", ("Dockers strike.",), "")
        stored = store.add_article("wire", "g1", article, T0)
        assert stored is not None
        match = Match("ports", (TermHit("strike", 1, ("title",)),), "…strike…")
        assert store.enqueue_alert(chat, stored.id, match, T0)
        [alert] = store.pending_alerts()
        assert alert.chat_id == chat
        store.mark_alert_sending(alert.id, T0)
        store.mark_alert_sent(alert.id, T0, "sent", message_id=message)
        store.record_chat_migration(-4_000_000_001, chat, T0)
        store.mute(chat, "ports", T0 + H)
        assert store.chat_states()[-4_000_000_001].migrated_to == chat
        assert store.muted(T0) == {(chat, "ports")}
        assert store.pending_chats() == []
        assert store.alert_counts() == {"sent": 1}
