"""Next-poll decisions, as tables of cases: no server, no clock, no chance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feeds.cadence import (
    MAX_HINT,
    Cadence,
    FeedHints,
    adaptive_interval,
    after_failure,
    after_success,
    freshness_lifetime,
    interval_for_gap,
    publication_gap,
)

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday
CADENCE = Cadence(
    every=timedelta(minutes=15),
    min_every=timedelta(minutes=5),
    max_every=timedelta(hours=1),
    backoff_cap=timedelta(hours=6),
)
M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("cache_control", "expires", "expected"),
    [
        ("max-age=600", None, timedelta(seconds=600)),
        ("public, max-age=600", "Wed, 04 Mar 2026 12:00:00 GMT", timedelta(seconds=600)),
        ('s-maxage="120", max-age=600', None, timedelta(seconds=120)),
        (None, "Wed, 04 Mar 2026 11:00:00 GMT", timedelta(hours=1)),
        (None, "Wed, 04 Mar 2026 09:00:00 GMT", None),  # already expired
        ("no-cache, max-age=600", None, None),
        ("no-store", "Wed, 04 Mar 2026 11:00:00 GMT", None),
        ("max-age=0", None, None),
        ("max-age=soon", "not a date", None),
        (None, None, None),
    ],
)
def test_freshness_lifetime(
    cache_control: str | None, expires: str | None, expected: timedelta | None
) -> None:
    assert freshness_lifetime(cache_control, expires, NOW) == expected


@pytest.mark.parametrize(
    ("gaps_minutes", "expected"),
    [
        ([], CADENCE.every),  # no history: the configured interval
        ([30], CADENCE.every),  # two items are no rhythm yet
        ([40, 40, 40], 20 * M),  # half the typical gap
        ([40, 40, 600, 40], 20 * M),  # one quiet stretch does not swing it (median)
        ([2, 2, 2, 2], CADENCE.min_every),  # a burst never polls faster than min_every
        ([600, 600, 600], CADENCE.max_every),  # a quiet source never waits past max_every
    ],
)
def test_adaptive_interval(gaps_minutes: list[int], expected: timedelta) -> None:
    times = [NOW]
    for gap in gaps_minutes:
        times.append(times[-1] - gap * M)
    assert adaptive_interval(times if gaps_minutes else [], CADENCE) == expected


@pytest.mark.parametrize(
    ("lifetime", "hints", "expected"),
    [
        (None, FeedHints(), NOW + 15 * M),
        (5 * M, FeedHints(), NOW + 15 * M),  # a shorter hint never makes us poll sooner
        (40 * M, FeedHints(), NOW + 40 * M),  # Cache-Control / Expires as a lower bound
        (None, FeedHints(ttl=90 * M), NOW + 90 * M),  # RSS ttl as a lower bound
        (timedelta(days=365), FeedHints(), NOW + MAX_HINT),  # capped: never parked for a year
        # skipHours 10 and 11 (UTC): the poll due at 10:15 moves to 12:00
        (None, FeedHints(skip_hours=frozenset({10, 11})), datetime(2026, 3, 4, 12, tzinfo=UTC)),
        # skipDays Wednesday: the next allowed hour is Thursday 00:00
        (None, FeedHints(skip_days=frozenset({2})), datetime(2026, 3, 5, tzinfo=UTC)),
        # a feed that skips every hour is ignored rather than obeyed into silence
        (None, FeedHints(skip_hours=frozenset(range(24))), NOW + 15 * M),
    ],
)
def test_after_success(lifetime: timedelta | None, hints: FeedHints, expected: datetime) -> None:
    assert after_success(NOW, 15 * M, lifetime=lifetime, hints=hints) == expected


def test_retry_after_is_obeyed_exactly() -> None:
    decision = after_failure(
        NOW,
        streak=5,
        interval=15 * M,
        cadence=CADENCE,
        status=429,
        retry_after=120,
        random=lambda: 0.9,
    )
    assert decision == type(decision)(NOW + timedelta(seconds=120))


def test_410_disables_with_a_reason() -> None:
    decision = after_failure(
        NOW, streak=1, interval=15 * M, cadence=CADENCE, status=410, message="HTTP 410 Gone",
        random=lambda: 0.5,
    )  # fmt: skip
    assert decision.next_poll_at is None
    assert decision.disabled_reason is not None and "410" in decision.disabled_reason


@pytest.mark.parametrize(
    ("streak", "low", "high"),
    [
        (1, 7.5 * M, 15 * M),  # equal jitter: between half and all of the interval
        (2, 15 * M, 30 * M),
        (3, 30 * M, 60 * M),
        (6, 3 * 60 * M, 6 * 60 * M),  # 8 h would pass the 6 h cap
        (40, 3 * 60 * M, 6 * 60 * M),  # still retrying at the cap, never parked
        (10_000, 3 * 60 * M, 6 * 60 * M),  # no overflow however long it has been failing
    ],
)
@pytest.mark.parametrize("chance", [0.0, 0.5, 0.999])
def test_backoff_doubles_with_jitter_up_to_the_cap(
    streak: int, low: timedelta, high: timedelta, chance: float
) -> None:
    decision = after_failure(
        NOW, streak=streak, interval=15 * M, cadence=CADENCE, status=503, random=lambda: chance
    )
    assert decision.disabled_reason is None and decision.next_poll_at is not None
    assert NOW + low <= decision.next_poll_at <= NOW + high


def test_jitter_spreads_sources_that_failed_together() -> None:
    times = {
        after_failure(
            NOW, streak=3, interval=15 * M, cadence=CADENCE, random=lambda c=c: c / 10
        ).next_poll_at
        for c in range(10)
    }
    assert len(times) == 10


def test_the_publication_gap_is_the_median_and_needs_three_items() -> None:
    start = datetime(2026, 3, 4, tzinfo=UTC)
    times = [start + timedelta(hours=hours) for hours in (0, 1, 3, 4, 10)]  # gaps 1, 2, 1, 6
    assert publication_gap(times) == timedelta(hours=1.5)
    assert publication_gap(times[:2]) is None
    assert publication_gap([start, start, start]) is None  # one instant, three times
    assert interval_for_gap(timedelta(hours=1.5), CADENCE) == timedelta(minutes=45)
    assert interval_for_gap(None, CADENCE) == CADENCE.every
    for gap in (timedelta(seconds=1), timedelta(days=30)):  # clamped either way
        assert CADENCE.min_every <= interval_for_gap(gap, CADENCE) <= CADENCE.max_every
