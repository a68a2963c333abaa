"""Source health as a pure function of stored state: statuses, shares, rates, silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.health import render_table, rhythm_of, source_health
from bot.store import SourceActivity, SourceState, Store
from feeds.models import Article, ConditionalHeaders

NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)
H = timedelta(hours=1)


def state(**changes: object) -> SourceState:
    values: dict[str, object] = {
        "name": "s",
        "url": "https://n.example/feed",
        "validators": ConditionalHeaders(),
        "last_polled_at": NOW - H,
        "last_success_at": NOW - H,
        "last_error": None,
        "failure_streak": 0,
        "polls": 10,
        "not_modified_polls": 7,
        "next_poll_at": NOW + H / 4,
    }
    values.update(changes)
    return SourceState(**values)  # type: ignore[arg-type]


HOURLY = [NOW - n * H for n in range(1, 6)]


@pytest.mark.parametrize(
    ("stored", "last_article", "published", "expected"),
    [
        (None, None, [], "new"),
        (state(), NOW - 2 * H, HOURLY, "ok"),
        (
            state(failure_streak=3, last_error="HTTP 503", last_error_kind="http_status"),
            None,
            [],
            "failing",
        ),
        (state(failure_streak=1, disabled_reason="gone (HTTP 410)"), None, [], "disabled"),
        # usually every hour, nothing for two days: silent, though every poll "works"
        (state(), NOW - 48 * H, [NOW - 48 * H - n * H for n in range(5)], "silent"),
        # a weekly source quiet for three days is just being itself
        (state(), NOW - 72 * H, [NOW - 72 * H - n * 168 * H for n in range(4)], "ok"),
        # too little history to know a rhythm: never called silent
        (state(), NOW - 500 * H, [NOW - 500 * H], "ok"),
    ],
)
def test_status(
    stored: SourceState | None,
    last_article: datetime | None,
    published: list[datetime],
    expected: str,
) -> None:
    [row] = source_health(
        [("s", "https://n.example/feed")],
        {"s": stored} if stored else {},
        {"s": SourceActivity(14, last_article)},
        {"s": published},
        NOW,
    )
    assert row.status == expected


def test_figures_and_the_moved_url() -> None:
    [row] = source_health(
        [("s", "https://n.example/feed")],
        {"s": state(fetch_url="https://n.example/new-feed")},
        {"s": SourceActivity(14, NOW - H)},
        {"s": HOURLY},
        NOW,
    )
    assert row.not_modified_share == 0.7
    assert row.articles_per_day == 2.0
    assert row.url == "https://n.example/new-feed"
    assert row.rhythm == H


def test_rhythm_needs_three_items() -> None:
    assert rhythm_of([NOW, NOW - H]) is None
    assert rhythm_of([NOW, NOW - H, NOW - 3 * H]) == 1.5 * H


def test_table_shows_every_source_and_why() -> None:
    rows = source_health(
        [("ok-one", "u1"), ("broken", "u2"), ("fresh", "u3")],
        {
            "ok-one": state(name="ok-one"),
            "broken": state(
                name="broken",
                failure_streak=2,
                last_error="HTTP 503 (u2)",
                last_error_kind="http_status",
            ),
        },
        {},
        {},
        NOW,
    )
    table = render_table(rows, NOW).splitlines()
    assert table[0].split() == [
        "SOURCE",
        "STATUS",
        "LAST",
        "OK",
        "NEXT",
        "POLL",
        "FAILS",
        "304s",
        "ART/DAY",
        "DETAIL",
    ]
    assert table[1].split()[:7] == ["ok-one", "ok", "1h", "ago", "in", "15m", "0"]
    assert "70%" in table[1]
    assert table[2].startswith("broken") and table[2].endswith("[http_status] HTTP 503 (u2)")
    assert table[3].split()[:4] == ["fresh", "new", "never", "-"]


def test_health_from_what_the_store_remembers(store_url: str) -> None:
    """The figures health reads (states, activity since a moment, publication times through
    aggregates, which each database returns in its own types) are the same on every backend."""
    with Store.open(store_url) as store:
        store.record_poll_success("ok-one", "u1", ConditionalHeaders('"e"'), NOW - H)
        store.record_poll_success("ok-one", "u1", ConditionalHeaders('"e"'), NOW, not_modified=True)
        store.record_poll_failure("broken", "u2", "HTTP 503", NOW, kind="http_status")
        for hours in (30, 20, 10):
            page = Article(
                f"https://n.example/{hours}", "t", ("x",), "", published=NOW - hours * H
            )
            store.add_article("ok-one", f"g{hours}", page, NOW - hours * H + H / 2)
        states = {state.name: state for state in store.source_states()}
        activity = store.source_activity(NOW - 24 * H)
        published = {name: store.recent_publication_times(name) for name in ("ok-one", "broken")}
    assert list(states) == ["broken", "ok-one"]
    assert activity == {"ok-one": SourceActivity(2, NOW - 10 * H + H / 2)}
    assert published["ok-one"] == [NOW - 10 * H, NOW - 20 * H, NOW - 30 * H]
    rows = source_health([("ok-one", "u1"), ("broken", "u2")], states, activity, published, NOW)
    assert [(row.name, row.status) for row in rows] == [("ok-one", "ok"), ("broken", "failing")]
    assert rows[0].not_modified_share == 0.5
    assert rows[0].rhythm == 10 * H
    assert rows[1].failure_streak == 1
