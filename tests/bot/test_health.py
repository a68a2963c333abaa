"""Source health as a pure function of stored state: statuses, shares, rates, silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.health import render_table, rhythm_of, source_health
from bot.store import SourceActivity, SourceState
from feeds.models import ConditionalHeaders

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
