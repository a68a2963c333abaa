"""The store against a real database file: migrations, duplicates, the outbox lifecycle, feeds.

Every test takes the `store` fixture (and `store_url` when it must look under the hood), which is
parametrised over SQLite and PostgreSQL (`store_url` in tests/conftest.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from bot.schema import metadata, outbox
from bot.store import AlertStateError, Store, StoredArticle
from feeds.models import Article, ConditionalHeaders, Match, TermHit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


def rows_of(url: str, query: Any) -> list[dict[str, Any]]:
    """Read rows behind the store's back, to check what it wrote."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def article(title: str = "Troops cross the border", url: str = "https://news.test/a") -> Article:
    return Article(
        url=url,
        title=title,
        paragraphs=("First paragraph.", "Second paragraph."),
        html="<p>First paragraph.</p><p>Second paragraph.</p>",
        author="A. Reporter",
        published=T0 - timedelta(hours=1),
    )


def match(watchlist: str = "ukraine", *terms: str, snippet: str = "…troops…") -> Match:
    hits = tuple(TermHit(term=term, count=1, fields=("text",)) for term in terms or ("troops",))
    return Match(watchlist=watchlist, hits=hits, snippet=snippet)


def add(store: Store, guid: str, source: str = "wire", at: datetime = T0) -> StoredArticle:
    stored = store.add_article(source, guid, article(title=guid), at)
    assert stored is not None
    return stored


# Opening and migrations


def migrations_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bot.store import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_open_creates_schema_and_reopening_is_idempotent(store: Store, store_url: str) -> None:
    stored = add(store, "g1")
    store.close()
    with Store.open(store_url) as reopened:
        assert reopened.known_guids("wire", ["g1"]) == {"g1"}
        assert reopened.add_article("wire", "g1", article(), T0) is None
    assert rows_of(store_url, text("SELECT version_num FROM alembic_version")) == [
        {"version_num": migrations_head()}
    ]
    engine = create_engine(store_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"sources", "articles", "matches", "outbox", "alembic_version"} <= tables
    assert stored.id == 1


def test_migrated_schema_equals_schema_module(store: Store, store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_sqlite_file_is_wal_and_sound(tmp_path: Path) -> None:
    path = tmp_path / "wirewatch.sqlite"  # SQLite's own pragmas: nothing to ask of PostgreSQL
    with Store.open(f"sqlite:///{path}") as store:
        add(store, "g1")
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        store.add_match(404, match(), T0)
    with pytest.raises(IntegrityError):
        store.enqueue_alert(1, 404, match(), T0)


def test_two_stores_on_one_database_see_each_other(store: Store, store_url: str) -> None:
    with Store.open(store_url) as other:
        add(other, "from-other")
        assert store.known_guids("wire", ["from-other"]) == {"from-other"}


# Sources


def test_unknown_source_has_fresh_state(store: Store) -> None:
    state = store.source_state("wire", "https://wire.test/rss")
    assert state.validators == ConditionalHeaders()
    assert (state.failure_streak, state.last_error, state.last_polled_at) == (0, None, None)
    assert state.url == "https://wire.test/rss"


def test_failure_streak_counts_and_success_resets_it(store: Store) -> None:
    url = "https://wire.test/rss"
    validators = ConditionalHeaders(etag='"v1"', last_modified="Sat, 01 Mar 2025 11:00:00 GMT")
    store.record_poll_success("wire", url, validators, T0)
    for n in (1, 2, 3):
        store.record_poll_failure("wire", url, f"timeout {n}", T0 + timedelta(minutes=n))
        state = store.source_state("wire", url)
        assert state.failure_streak == n
        assert state.last_error == f"timeout {n}"
        assert state.last_polled_at == T0 + timedelta(minutes=n)
        assert state.last_success_at == T0
        assert state.validators == validators

    later = T0 + timedelta(hours=1)
    store.record_poll_success("wire", url, ConditionalHeaders(etag='"v2"'), later)
    state = store.source_state("wire", url)
    assert (state.failure_streak, state.last_error) == (0, None)
    assert state.last_polled_at == state.last_success_at == later
    assert state.validators == ConditionalHeaders(etag='"v2"')


def test_first_poll_failing_starts_a_streak(store: Store) -> None:
    store.record_poll_failure("wire", "https://wire.test/rss", "dns", T0)
    state = store.source_state("wire", "https://wire.test/rss")
    assert (state.failure_streak, state.last_error, state.last_success_at) == (1, "dns", None)


def test_validators_of_an_old_url_are_not_replayed(store: Store) -> None:
    store.record_poll_success("wire", "https://old.test/rss", ConditionalHeaders(etag='"x"'), T0)
    assert store.source_state("wire", "https://new.test/rss").validators == ConditionalHeaders()
    old = store.source_state("wire", "https://old.test/rss")
    assert old.validators == ConditionalHeaders(etag='"x"')


# Articles and matches


def test_known_guids_is_the_stored_subset_for_that_source(store: Store) -> None:
    add(store, "g1")
    add(store, "g2")
    add(store, "g3", source="other")
    assert store.known_guids("wire", ["g1", "g3", "g9", "g1"]) == {"g1"}
    assert store.known_guids("wire", []) == set()


def test_known_guids_handles_more_guids_than_one_query_takes(store: Store) -> None:
    add(store, "g1")
    add(store, "g1200")
    asked = [f"g{n}" for n in range(1500)]
    assert store.known_guids("wire", asked) == {"g1", "g1200"}


def test_add_article_stores_once_per_source_and_guid(store: Store) -> None:
    stored = store.add_article("wire", "g1", article(), T0)
    assert stored == StoredArticle(
        id=stored.id if stored else 0,
        source="wire",
        guid="g1",
        url="https://news.test/a",
        title="Troops cross the border",
        text="First paragraph.\n\nSecond paragraph.",
        html="<p>First paragraph.</p><p>Second paragraph.</p>",
        author="A. Reporter",
        published=T0 - timedelta(hours=1),
        fetched_at=T0,
        updated_at=T0,
    )
    assert store.add_article("wire", "g1", article(title="changed"), T0) is None
    again = store.add_article("other", "g1", article(), T0)
    assert again is not None and stored is not None and again.id != stored.id


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    kyiv = timezone(timedelta(hours=2))
    fetched = datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=kyiv)
    stored = store.add_article("wire", "g1", article(), fetched)
    assert stored is not None
    assert stored.fetched_at == fetched
    assert stored.fetched_at.tzinfo == UTC and stored.fetched_at.hour == 12
    store.add_match(stored.id, match(), fetched)
    [item] = store.feed_items("ukraine", 10)
    assert item.matched_at == fetched and item.matched_at.tzinfo == UTC
    assert item.article.published is not None and item.article.published.tzinfo == UTC


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StatementError) as raised:
        store.add_article("wire", "g1", article(), datetime(2025, 3, 1, 12, 0))
    assert isinstance(raised.value.orig, ValueError)
    assert store.known_guids("wire", ["g1"]) == set()


def test_add_match_once_per_article_and_watchlist(store: Store) -> None:
    stored = add(store, "g1")
    assert store.add_match(stored.id, match("ukraine"), T0) is True
    assert store.add_match(stored.id, match("ukraine", "invasion"), T0) is False
    assert store.add_match(stored.id, match("nato"), T0) is True


# Alert outbox


def test_enqueue_alert_once_per_chat_and_article(store: Store) -> None:
    stored = add(store, "g1")
    assert store.enqueue_alert(7, stored.id, match("ukraine"), T0) is True
    assert store.enqueue_alert(7, stored.id, match("nato"), T0) is False
    assert store.enqueue_alert(8, stored.id, match("nato"), T0) is True
    [first, second] = store.pending_alerts()
    assert (first.chat_id, first.watchlist) == (7, "ukraine")
    assert (second.chat_id, second.watchlist) == (8, "nato")


def test_chat_ids_beyond_32_bits_round_trip(store: Store) -> None:
    stored = add(store, "g1")
    channel = -1001234567890
    store.enqueue_alert(channel, stored.id, match(), T0)
    assert [alert.chat_id for alert in store.pending_alerts()] == [channel]


def test_pending_alerts_oldest_first_with_article_and_limit(store: Store) -> None:
    articles = [add(store, f"g{n}") for n in range(3)]
    for n, stored in enumerate(reversed(articles)):
        store.enqueue_alert(1, stored.id, match("ukraine", "troops", "border"), T0 + timedelta(n))
    pending = store.pending_alerts()
    assert [alert.article.guid for alert in pending] == ["g2", "g1", "g0"]
    assert pending[0].terms == ("troops", "border")
    assert pending[0].snippet == "…troops…"
    assert pending[0].attempts == 0
    assert pending[0].article == articles[2]
    assert [alert.article.guid for alert in store.pending_alerts(limit=2)] == ["g2", "g1"]


def outbox_row(url: str, alert_id: int) -> dict[str, Any]:
    [row] = rows_of(url, select(outbox).where(outbox.c.id == alert_id))
    return row


def test_outbox_send_lifecycle(store: Store, store_url: str) -> None:
    stored = add(store, "g1")
    store.enqueue_alert(1, stored.id, match(), T0)
    [alert] = store.pending_alerts()

    store.mark_alert_sending(alert.id, T0 + timedelta(seconds=1))
    assert store.pending_alerts() == []
    assert outbox_row(store_url, alert.id)["status"] == "sending"

    sent_at = T0 + timedelta(seconds=2)
    store.mark_alert_sent(alert.id, sent_at, "sent")
    row = outbox_row(store_url, alert.id)
    assert row["status"] == "sent"
    assert row["sent_at"] == sent_at
    assert store.pending_alerts() == []


def test_logged_is_a_final_outcome_too(store: Store, store_url: str) -> None:
    stored = add(store, "g1")
    store.enqueue_alert(1, stored.id, match(), T0)
    [alert] = store.pending_alerts()
    store.mark_alert_sending(alert.id, T0)
    store.mark_alert_sent(alert.id, T0, "logged")
    assert outbox_row(store_url, alert.id)["status"] == "logged"


def test_failed_send_goes_back_to_pending_with_attempts(store: Store, store_url: str) -> None:
    stored = add(store, "g1")
    store.enqueue_alert(1, stored.id, match(), T0)
    for attempt in (1, 2):
        [alert] = store.pending_alerts()
        store.mark_alert_sending(alert.id, T0)
        store.mark_alert_failed(alert.id, f"429 try {attempt}", T0)
        [retry] = store.pending_alerts()
        assert retry.attempts == attempt
        assert outbox_row(store_url, alert.id)["last_error"] == f"429 try {attempt}"


def test_crash_while_sending_is_recovered_as_unknown_never_resent(
    store: Store, store_url: str
) -> None:
    first, second = add(store, "g1"), add(store, "g2")
    store.enqueue_alert(1, first.id, match(), T0)
    store.enqueue_alert(1, second.id, match(), T0 + timedelta(seconds=1))
    interrupted = store.pending_alerts()[0]
    store.mark_alert_sending(interrupted.id, T0)
    store.close()

    with Store.open(store_url) as restarted:
        assert restarted.recover_interrupted_alerts(T0 + timedelta(minutes=1)) == 1
        assert [alert.id for alert in restarted.pending_alerts()] == [second.id]
        assert outbox_row(store_url, interrupted.id)["status"] == "unknown"
        assert restarted.recover_interrupted_alerts(T0 + timedelta(minutes=2)) == 0


@pytest.mark.parametrize(
    ("prepare", "transition"),
    [
        pytest.param([], "sent", id="sent-before-sending"),
        pytest.param(["sending", "sent"], "sending", id="claim-a-sent-alert"),
        pytest.param(["sending"], "sending", id="claim-twice"),
        pytest.param([], "failed", id="fail-before-sending"),
    ],
)
def test_outbox_refuses_transitions_that_could_send_twice(
    store: Store, prepare: list[str], transition: str
) -> None:
    stored = add(store, "g1")
    store.enqueue_alert(1, stored.id, match(), T0)
    [alert] = store.pending_alerts()
    steps = {
        "sending": lambda: store.mark_alert_sending(alert.id, T0),
        "sent": lambda: store.mark_alert_sent(alert.id, T0, "sent"),
        "failed": lambda: store.mark_alert_failed(alert.id, "boom", T0),
    }
    for step in prepare:
        steps[step]()
    with pytest.raises(AlertStateError):
        steps[transition]()


def test_outbox_rejects_unknown_alerts_and_outcomes(store: Store) -> None:
    with pytest.raises(AlertStateError, match="does not exist"):
        store.mark_alert_sending(404, T0)
    with pytest.raises(ValueError, match="outcome"):
        store.mark_alert_sent(404, T0, "delivered")


# Feeds


def test_watchlist_feed_newest_match_first_ties_by_article_id(store: Store) -> None:
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    store.add_match(a.id, match("ukraine"), T0)
    store.add_match(b.id, match("ukraine"), T0 + timedelta(minutes=5))
    store.add_match(c.id, match("ukraine"), T0)
    store.add_match(c.id, match("nato"), T0 + timedelta(hours=1))

    items = store.feed_items("ukraine", 10)
    assert [item.article.guid for item in items] == ["b", "c", "a"]
    assert all(item.watchlists == ("ukraine",) for item in items)
    assert [item.article.guid for item in store.feed_items("ukraine", 2)] == ["b", "c"]
    assert store.feed_items("unknown", 10) == []


def test_all_feed_lists_each_article_once_with_every_watchlist(store: Store) -> None:
    a, b, c = add(store, "a"), add(store, "b"), add(store, "c")
    store.add_match(a.id, match("ukraine", "troops", "border", snippet="a-u"), T0)
    store.add_match(a.id, match("nato", "border", "nato", snippet="a-n"), T0 + timedelta(hours=2))
    store.add_match(b.id, match("nato", "nato", snippet="b-n"), T0 + timedelta(hours=1))
    add(store, "unmatched")

    items = store.feed_items(None, 10)
    assert [item.article.id for item in items] == [b.id, a.id]
    merged = items[1]
    assert merged.watchlists == ("ukraine", "nato")
    assert merged.terms == ("troops", "border", "nato")
    assert (merged.snippet, merged.matched_at) == ("a-u", T0)
    assert [item.article.id for item in store.feed_items(None, 1)] == [b.id]
    assert c.id not in {item.article.id for item in items}


def test_empty_feeds(store: Store) -> None:
    assert store.feed_items(None, 10) == []
    assert store.feed_items("ukraine", 10) == []


# One poll's writes, all or nothing


def test_article_matches_and_alerts_are_stored_together(store: Store) -> None:
    found = [match("ukraine", "Kyiv"), match("nato", "Nato")]
    routes = {"ukraine": [1, 2], "nato": [2, 3]}
    ingested = store.add_article_with_matches("wire", "g1", article(), found, routes, T0)
    assert ingested is not None
    # chat 2 is routed both watchlists but gets one alert for the article
    assert (ingested.new_matches, ingested.new_alerts) == (2, 3)
    assert sorted(a.chat_id for a in store.pending_alerts()) == [1, 2, 3]
    assert store.add_article_with_matches("wire", "g1", article(), found, routes, T0) is None


def test_a_failure_midway_stores_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.store

    def broken_alert(*args: object) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(bot.store, "_insert_alert", broken_alert)
    with pytest.raises(RuntimeError):
        store.add_article_with_matches("wire", "g1", article(), [match()], {"ukraine": [1]}, T0)
    # nothing was kept, so the next poll sees the entry as new and tries again
    assert store.known_guids("wire", ["g1"]) == set()
    assert store.feed_items("ukraine", 10) == []


def test_pending_alerts_can_leave_out_held_chats(store: Store) -> None:
    for number in range(5):
        stored = add(store, f"g{number}")
        store.enqueue_alert(1 if number < 4 else 2, stored.id, match(), T0)
    assert {a.chat_id for a in store.pending_alerts(limit=2)} == {1}
    assert [a.chat_id for a in store.pending_alerts(limit=2, exclude_chats={1})] == [2]


def test_a_permanent_failure_ends_the_alert(store: Store) -> None:
    stored = add(store, "g1")
    store.enqueue_alert(7, stored.id, match(), T0)
    [alert] = store.pending_alerts()
    store.mark_alert_sending(alert.id, T0)
    store.mark_alert_failed(alert.id, "Forbidden: bot was blocked by the user", T0, permanent=True)
    assert store.pending_alerts() == []
