"""When a chat hears about an alert: at once, on a digest schedule, or after its quiet hours.

Pure decisions on plain values (no store, no Telegram): ``parse_schedule`` and
``parse_quiet_hours`` read what a journalist writes in a route, and ``release`` says, for one
alert and one route, whether it goes at once on its own or waits for a digest and until when.

The schedule language is a few English phrases rather than cron, because the people who write
routes are editors, not operators (cron's "0 8 * * 1" is a well-known source of mistakes):

- ``as it happens`` (or ``instant``): every alert on its own, at once;
- ``hourly`` or ``hourly at :30``: one digest an hour, at that minute (default :00);
- ``daily at 08:00`` or ``daily at 08:00, 13:00 and 18:30``: one digest at each time;
- ``weekly on monday at 08:00`` or ``weekly on mon, thu at 08:00, 17:00``.

Times are wall-clock times in the route's time zone. Across a daylight-saving change a time that
does not exist that day (02:30 when clocks jump from 02:00 to 03:00) fires when the clocks have
moved past it (03:30 summer time); a time that happens twice (the autumn hour) fires once, at its
first occurrence. Python's zoneinfo with ``fold=0`` gives exactly this, so no arithmetic here
adds hours by hand: every candidate is built as a wall time and converted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_HINT = (
    'write "as it happens", "hourly", "hourly at :30", "daily at 08:00", '
    '"daily at 08:00 and 18:00" or "weekly on monday at 08:00"'
)


class RhythmError(ValueError):
    """A schedule or quiet-hours text that cannot be read; the message says what to write."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """When digests go out. ``instant`` means no digest at all ("as it happens")."""

    instant: bool = False
    hourly_minute: int | None = None
    """Set for hourly digests: the minute past each hour."""
    times: tuple[time, ...] = ()
    """Daily or weekly digests: the wall-clock times, sorted."""
    weekdays: frozenset[int] | None = None
    """Weekly digests: Monday is 0. None: every day."""

    def next_after(self, moment: datetime, zone: str) -> datetime:
        """The first digest time strictly after ``moment`` (aware), in UTC."""
        if self.instant:
            return moment
        tz = _zone(zone)
        if self.hourly_minute is not None:
            # Minute by minute over at most two hours: correct for zones a half or quarter hour
            # off UTC and across DST changes, with no offset arithmetic.
            start = moment.astimezone(UTC).replace(second=0, microsecond=0)
            for step in range(1, 122):
                candidate = start + timedelta(minutes=step)
                if candidate.astimezone(tz).minute == self.hourly_minute:
                    return candidate
            raise AssertionError("an hour always has that minute")  # pragma: no cover
        local_day = moment.astimezone(tz).date()
        for offset in range(-1, 9):
            day = local_day + timedelta(days=offset)
            if self.weekdays is not None and day.weekday() not in self.weekdays:
                continue
            for clock in self.times:
                candidate = _wall(day, clock, tz)
                if candidate > moment:
                    return candidate
        raise AssertionError("a week always has a digest time")  # pragma: no cover


INSTANT = Schedule(instant=True)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _wall(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time (fold=0: see the module docstring for DST)."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def _clock(text: str) -> time:
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise RhythmError(f'"{text.strip()}" is not a time of day (use 24-hour HH:MM, e.g. 08:00)')
    return time(int(match.group(1)), int(match.group(2)))


def _clocks(text: str) -> tuple[time, ...]:
    parts = [part for part in re.split(r",|\band\b", text) if part.strip()]
    if not parts:
        raise RhythmError(f"no time given ({_HINT})")
    return tuple(sorted({_clock(part) for part in parts}))


def _day(text: str) -> int:
    word = text.strip().lower()
    for index, name in enumerate(_DAYS):
        if len(word) >= 3 and name.startswith(word):
            return index
    raise RhythmError(f'"{text.strip()}" is not a day of the week (use e.g. monday or mon)')


def parse_schedule(text: str) -> Schedule:
    """Read a schedule phrase (see the module docstring); raises RhythmError with a hint."""
    phrase = " ".join(text.lower().split())
    if phrase in ("as it happens", "instant"):
        return INSTANT
    if phrase.startswith("hourly"):
        rest = phrase.removeprefix("hourly").strip()
        if not rest:
            return Schedule(hourly_minute=0)
        match = re.fullmatch(r"at :?([0-5]?\d)", rest)
        if match is None:
            raise RhythmError(f'cannot read "{text}" ({_HINT})')
        return Schedule(hourly_minute=int(match.group(1)))
    if phrase.startswith("daily at "):
        return Schedule(times=_clocks(phrase.removeprefix("daily at ")))
    match = re.fullmatch(r"weekly on (.+?) at (.+)", phrase)
    if match is not None:
        days = [part for part in re.split(r",|\band\b", match.group(1)) if part.strip()]
        return Schedule(
            times=_clocks(match.group(2)), weekdays=frozenset(_day(day) for day in days)
        )
    raise RhythmError(f'cannot read schedule "{text}" ({_HINT})')


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, in the route's zone, during which instant alerts are held; may span
    midnight ("22:00-07:00"). ``start == end`` is refused (all day or never?)."""

    start: time
    end: time

    def contains(self, moment: datetime, zone: str) -> bool:
        clock = moment.astimezone(_zone(zone)).time()
        if self.start < self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def end_after(self, moment: datetime, zone: str) -> datetime:
        """The first end of quiet hours strictly after ``moment``, in UTC."""
        return Schedule(times=(self.end,)).next_after(moment, zone)


def parse_quiet_hours(text: str) -> QuietHours:
    """Read "HH:MM-HH:MM" (spaces allowed around the dash); raises RhythmError."""
    start, dash, end = text.partition("-")
    if not dash:
        raise RhythmError(f'cannot read quiet hours "{text}" (write e.g. "22:00-07:00")')
    hours = QuietHours(_clock(start), _clock(end))
    if hours.start == hours.end:
        raise RhythmError(f'quiet hours "{text}" start and end at the same time')
    return hours


@dataclass(frozen=True, slots=True)
class Rhythm:
    """One route's rhythm, as delivery needs it."""

    schedule: Schedule = INSTANT
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Release:
    """What to do with one pending alert: ``single`` (send it on its own now), or ``digest``:
    it goes in a digest at ``at`` (now or later)."""

    kind: Literal["single", "digest"]
    at: datetime


def release(rhythm: Rhythm, created_at: datetime, now: datetime) -> Release:
    """Decide an alert's fate from its route and when it was queued (not from when delivery
    happens to look at it, so the decision is the same in every round and after a restart).

    Digest routes: the first schedule time after the alert was queued; if that falls in quiet
    hours, the end of those quiet hours. Instant routes: at once, unless the alert was queued
    during quiet hours: then in the digest sent when they end.
    """
    quiet = rhythm.quiet_hours
    zone = rhythm.timezone
    if not rhythm.schedule.instant:
        due = rhythm.schedule.next_after(created_at, zone)
        if quiet is not None and quiet.contains(due, zone):
            due = quiet.end_after(due, zone)
        return Release("digest", due)
    if quiet is not None and quiet.contains(created_at, zone):
        return Release("digest", quiet.end_after(created_at, zone))
    return Release("single", now)
