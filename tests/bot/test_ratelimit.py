"""Telegram's flood limits as pure bookkeeping: tables of (sent when) → how long to wait."""

from __future__ import annotations

import pytest

from bot.ratelimit import Limits, RateLimits

LIMITS = Limits()
CHAT = LIMITS.per_chat_window + LIMITS.chat_margin
PACE = (LIMITS.overall_window + LIMITS.overall_margin) / LIMITS.overall
GROUP = LIMITS.per_group_window + LIMITS.group_margin


def booked(sends: list[tuple[int, float]]) -> RateLimits:
    limits = RateLimits(LIMITS)
    for chat, moment in sends:
        limits.record(chat, moment)
    return limits


@pytest.mark.parametrize(
    ("sends", "chat", "now", "expected"),
    [
        ([], 1, 0.0, 0.0),
        ([(1, 0.0)], 1, 0.0, CHAT),  # one a second per chat (plus margin)
        ([(1, 0.0)], 1, 0.5, CHAT - 0.5),
        ([(1, 0.0)], 1, CHAT, 0.0),
        ([(1, 0.0)], 2, 0.0, PACE),  # another chat waits only for the overall pace
        ([(1, 0.0)], 2, PACE, 0.0),
        ([(-5, 2.0 * n) for n in range(20)], -5, 40.0, GROUP - 40.0),  # 20 a minute per group
        ([(-5, 2.0 * n) for n in range(19)], -5, 40.0, 0.0),
        ([(5, 2.0 * n) for n in range(20)], 5, 40.0, 0.0),  # a private chat has no group limit
    ],
)
def test_wait(sends: list[tuple[int, float]], chat: int, now: float, expected: float) -> None:
    assert booked(sends).wait(chat, now) == pytest.approx(expected)


def test_retry_after_holds_that_chat_only() -> None:
    limits = RateLimits(LIMITS)
    limits.hold(1, 30.0)
    assert limits.wait(1, 10.0) == pytest.approx(20.0)
    assert limits.wait(2, 10.0) == 0.0
    limits.hold(1, 20.0)  # an earlier end never shortens a hold
    assert limits.wait(1, 10.0) == pytest.approx(20.0)


def test_a_refused_message_does_not_count() -> None:
    limits = booked([(-5, 2.0 * n) for n in range(20)])
    assert limits.wait(-5, 40.0) > 0
    limits.refund(-5)
    assert limits.wait(-5, 40.0) == 0.0


def test_restamp_moves_the_chat_booking_to_the_real_departure() -> None:
    limits = booked([(1, 0.0)])
    limits.restamp(1, 0.3)  # the database commit before the request took 0.3 s
    assert limits.wait(1, CHAT) == pytest.approx(0.3)
    assert limits.overall_wait(PACE) == 0.0  # the pace keeps its slot


def test_a_late_sender_takes_the_slot_it_was_due() -> None:
    limits = booked([(1, 0.0)])
    limits.record(2, PACE + 0.01)  # woke 10 ms late
    assert limits.overall_wait(2 * PACE) == 0.0  # no drift: the next slot is still 2 * PACE
    idle = booked([(1, 0.0)])
    idle.record(2, 5.0)  # after an idle gap, no catching up: no burst
    assert idle.overall_wait(5.0) == pytest.approx(PACE)


def test_the_pace_never_allows_more_than_the_overall_limit_per_window() -> None:
    limits = RateLimits(LIMITS)
    now, sent = 0.0, []
    while len(sent) < 100:
        chat = len(sent)  # all different chats: only the overall pace applies
        delay = limits.wait(chat, now)
        now += delay
        limits.record(chat, now)
        sent.append(now)
    for index in range(len(sent) - LIMITS.overall):
        assert sent[index + LIMITS.overall] - sent[index] > LIMITS.overall_window
