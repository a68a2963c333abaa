"""Digest schedules and quiet hours: the phrases a route may use, the times they give in the
route's time zone (daylight-saving changes included), and mistakes located in the config."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from bot.rhythm import (
    INSTANT,
    QuietHours,
    Release,
    Rhythm,
    RhythmError,
    Schedule,
    parse_quiet_hours,
    parse_schedule,
    release,
)
from bot.settings import ChatRoute, SettingsError, load_settings


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "schedule"),
    [
        ("as it happens", INSTANT),
        ("  As It  Happens ", INSTANT),
        ("instant", INSTANT),
        ("hourly", Schedule(hourly_minute=0)),
        ("hourly at :30", Schedule(hourly_minute=30)),
        ("daily at 08:00", Schedule(times=(time(8),))),
        ("daily at 18:30, 8:00 and 13:00", Schedule(times=(time(8), time(13), time(18, 30)))),
        ("weekly on monday at 08:00", Schedule(times=(time(8),), weekdays=frozenset({0}))),
        (
            "weekly on mon, thu and Sun at 08:00, 17:00",
            Schedule(times=(time(8), time(17)), weekdays=frozenset({0, 3, 6})),
        ),
    ],
)
def test_schedule_phrases(text: str, schedule: Schedule) -> None:
    assert parse_schedule(text) == schedule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fortnightly", 'cannot read schedule "fortnightly"'),
        ("daily at 25:00", '"25:00" is not a time of day'),
        ("daily at noon", '"noon" is not a time of day'),
        ("daily at ", "cannot read schedule"),
        ("weekly on funday at 08:00", '"funday" is not a day of the week'),
        ("hourly at 7pm", 'cannot read "hourly at 7pm"'),
    ],
)
def test_schedule_mistakes_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(RhythmError, match=message):
        parse_schedule(text)


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        # Daily across the spring change in Berlin: 08:00 is 07:00 UTC in winter, 06:00 in summer.
        ("daily at 08:00", "Europe/Berlin", utc(2026, 3, 28, 7, 0), utc(2026, 3, 29, 6, 0)),
        ("daily at 08:00", "Europe/Berlin", utc(2026, 3, 28, 6, 59), utc(2026, 3, 28, 7, 0)),
        # 02:30 does not exist on 29 March in Berlin: it fires at 03:30 summer time.
        ("daily at 02:30", "Europe/Berlin", utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 30)),
        # 02:30 happens twice on 25 October: once, at its first occurrence (summer time).
        ("daily at 02:30", "Europe/Berlin", utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30)),
        ("daily at 02:30", "Europe/Berlin", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # Several times a day, in order.
        ("daily at 08:00, 18:00", "UTC", utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 18, 0)),
        ("daily at 08:00, 18:00", "UTC", utc(2026, 1, 1, 18, 0), utc(2026, 1, 2, 8, 0)),
        # Hourly at local :00 in a zone half an hour off UTC.
        ("hourly", "Asia/Kolkata", utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 30)),
        ("hourly at :15", "UTC", utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 11, 15)),
        # Hourly through the spring change: 02:00 local never happens, 03:00 CEST does.
        ("hourly", "Europe/Berlin", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0)),
        # Weekly in New York: Monday 08:00 was 13:00 UTC before 8 March, 12:00 UTC after.
        ("weekly on monday at 08:00", "America/New_York", utc(2026, 3, 1), utc(2026, 3, 2, 13)),
        ("weekly on monday at 08:00", "America/New_York", utc(2026, 3, 6), utc(2026, 3, 9, 12)),
        ("weekly on mon, thu at 08:00", "UTC", utc(2026, 1, 5, 8, 0), utc(2026, 1, 8, 8, 0)),
        # The local date, not the UTC date, decides the day: Monday 08:00 in Tokyo is Sunday UTC.
        ("weekly on monday at 08:00", "Asia/Tokyo", utc(2026, 1, 4, 0), utc(2026, 1, 4, 23)),
    ],
)
def test_next_digest_time(schedule: str, zone: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(schedule).next_after(after, zone) == expected


@pytest.mark.parametrize(
    ("hours", "local", "inside"),
    [
        ("22:00-07:00", time(23, 0), True),
        ("22:00-07:00", time(3, 0), True),
        ("22:00-07:00", time(22, 0), True),
        ("22:00-07:00", time(7, 0), False),
        ("22:00-07:00", time(21, 59), False),
        ("12:00 - 14:00", time(13, 0), True),
        ("12:00 - 14:00", time(23, 0), False),
    ],
)
def test_quiet_hours_may_span_midnight(hours: str, local: time, inside: bool) -> None:
    moment = datetime(2026, 1, 10, local.hour, local.minute, tzinfo=UTC)
    assert parse_quiet_hours(hours).contains(moment, "UTC") is inside


@pytest.mark.parametrize("text", ["22:00", "22:00-22:00", "late-early", "22-07"])
def test_quiet_hours_mistakes(text: str) -> None:
    with pytest.raises(RhythmError):
        parse_quiet_hours(text)


KYIV = "Europe/Kyiv"  # UTC+2 in January
QUIET = QuietHours(time(22), time(7))
AT_SIX = Schedule(times=(time(6),))
AT_EIGHT = Schedule(times=(time(8),))


@pytest.mark.parametrize(
    ("rhythm", "queued", "expected"),
    [
        # Instant, outside quiet hours: on its own, now.
        (Rhythm(INSTANT, QUIET, KYIV), utc(2026, 1, 10, 18, 59), "single"),
        # Queued at 23:30 and 03:00 Kyiv time: held for the digest at 07:00 Kyiv (05:00 UTC).
        (Rhythm(INSTANT, QUIET, KYIV), utc(2026, 1, 10, 21, 30), utc(2026, 1, 11, 5, 0)),
        (Rhythm(INSTANT, QUIET, KYIV), utc(2026, 1, 11, 1, 0), utc(2026, 1, 11, 5, 0)),
        # A digest due inside quiet hours goes when they end.
        (Rhythm(AT_SIX, QUIET, KYIV), utc(2026, 1, 10, 12), utc(2026, 1, 11, 5)),
        (Rhythm(AT_EIGHT, None, KYIV), utc(2026, 1, 10, 12), utc(2026, 1, 11, 6)),
    ],
)
def test_release(rhythm: Rhythm, queued: datetime, expected: str | datetime) -> None:
    now = utc(2026, 1, 10, 19, 0)
    decision = release(rhythm, queued, now)
    if expected == "single":
        assert decision == Release("single", now)
    else:
        assert decision == Release("digest", expected)  # type: ignore[arg-type]


HEAD = """\
sources:
  - {name: s, url: "https://example.org/feed.xml"}
watchlists:
  - name: w
    keywords: [x]
    chats:
"""


def test_routes_accept_modes_schedules_and_quiet_hours(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        HEAD
        + '      - {chat: 1, mode: digest, schedule: "daily at 08:00", timezone: Europe/Kyiv}\n'
        + '      - {chat: 2, schedule: "weekly on monday at 08:00"}\n'
        + '      - {chat: 3, quiet_hours: "22:00-07:00"}\n'
        + '      - {chat: 4, mode: instant, schedule: "as it happens"}\n',
        encoding="utf-8",
    )
    chats = load_settings(path, {}).watchlists[0].chats
    assert chats[0] == ChatRoute(
        chat=1, mode="digest", schedule="daily at 08:00", timezone="Europe/Kyiv"
    )
    assert chats[1].schedule == "weekly on monday at 08:00"
    assert chats[2].quiet_hours == "22:00-07:00"
    assert chats[3].mode == "instant"


@pytest.mark.parametrize(
    ("route", "column", "message"),
    [
        ('{chat: 1, schedule: "daily at 25:00"}', 29, '"25:00" is not a time of day'),
        ('{chat: 1, schedule: "fortnightly"}', 29, 'cannot read schedule "fortnightly"'),
        ('{chat: 1, quiet_hours: "22:00"}', 32, 'cannot read quiet hours "22:00"'),
        ("{chat: 1, mode: digest}", 9, "mode: digest needs a schedule"),
        ("{chat: 1, mode: instant, schedule: hourly}", 9, 'schedule "hourly" only applies'),
        ("{chat: 1, mode: weekly}", 25, "expected one of instant, digest"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, route: str, column: int, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"      - {route}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    found = [str(problem) for problem in caught.value.problems]
    assert len(found) == 1
    assert found[0].startswith(f"{path}:7:{column}: ")
    assert message in found[0]
