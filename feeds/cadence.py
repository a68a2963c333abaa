"""When to poll a source next: pure decisions from what the last poll said, no I/O, no clock.

Every function takes `now` (and, where chance is involved, a random number source) so the
decisions are tested with tables of cases and no server:

- after a success, the next poll is the source's interval from now, pushed later (never earlier)
  by what the publisher asked for: Cache-Control max-age / Expires, RSS `<ttl>`, `<skipHours>`
  and `<skipDays>`. A hint is honoured up to `MAX_HINT` so a mistaken "max-age=31536000" cannot
  park a source for a year;
- the interval itself adapts to how often the source really publishes (half the median gap
  between its recent items), clamped to the configured bounds;
- after a failure: a Retry-After is obeyed exactly; 410 Gone disables the source with a reason;
  anything else backs off exponentially with jitter up to a cap, and keeps trying at the cap, so a
  source that comes back is picked up again without anyone touching it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise

__all__ = [
    "MAX_HINT",
    "Cadence",
    "Failure",
    "FeedHints",
    "adaptive_interval",
    "after_failure",
    "after_success",
    "freshness_lifetime",
    "interval_for_gap",
    "publication_gap",
]

MAX_HINT = timedelta(days=1)
"""The longest a publisher's hint (max-age, Expires, ttl, skip windows) can delay a poll."""


@dataclass(frozen=True, slots=True)
class Cadence:
    """A source's polling bounds, from its settings."""

    every: timedelta
    """The interval to start from, and the one used while there is too little history to adapt."""
    min_every: timedelta
    max_every: timedelta
    backoff_cap: timedelta = timedelta(hours=6)
    """The longest pause between retries of a failing source (it keeps retrying at this pace)."""


@dataclass(frozen=True, slots=True)
class FeedHints:
    """What an RSS channel says about when to come back. Hours and days are in UTC (GMT), as the
    RSS 2.0 specification defines them; days are 0 = Monday … 6 = Sunday."""

    ttl: timedelta | None = None
    skip_hours: frozenset[int] = field(default_factory=frozenset)
    skip_days: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed poll means for the schedule: when to retry, or why the source is disabled."""

    next_poll_at: datetime | None
    disabled_reason: str | None = None


def freshness_lifetime(
    cache_control: str | None, expires: str | None, now: datetime
) -> timedelta | None:
    """How long the response stays fresh by its headers (RFC 9111 §4.2.1): `max-age` wins over
    `Expires`; `no-cache`/`no-store` and an unreadable or past Expires mean no lifetime (None)."""
    directives: dict[str, str] = {}
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return None
    for name in ("s-maxage", "max-age"):
        value = directives.get(name, "")
        if value.isdigit():
            return timedelta(seconds=int(value)) if int(value) > 0 else None
    if not expires:
        return None
    try:
        when = parsedate_to_datetime(expires)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    lifetime = when - now
    return lifetime if lifetime > timedelta(0) else None


def adaptive_interval(published: Sequence[datetime], cadence: Cadence) -> timedelta:
    """Half the median gap between the source's recent items, clamped to the bounds.

    Half, so that a story is typically picked up within half its source's rhythm; the median, so
    that one quiet weekend or one burst does not swing the interval. Fewer than three dated items
    give no rhythm: the configured `every` is used.
    """
    return interval_for_gap(publication_gap(published), cadence)


def publication_gap(published: Sequence[datetime]) -> timedelta | None:
    """The median gap between the source's recent items; None for fewer than three dated items.

    Separate from `interval_for_gap` so that a caller can keep the gap between polls (it
    changes only when the source's items do) and skip reading the items on every 304.
    """
    ordered = sorted(set(published))
    if len(ordered) < 3:
        return None
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(ordered)]
    return timedelta(seconds=statistics.median(gaps))


def interval_for_gap(gap: timedelta | None, cadence: Cadence) -> timedelta:
    """Half the publication gap, clamped to the bounds; the configured `every` without one."""
    return _clamp(cadence.every if gap is None else gap / 2, cadence)


def after_success(
    now: datetime,
    interval: timedelta,
    *,
    lifetime: timedelta | None = None,
    hints: FeedHints = FeedHints(),
) -> datetime:
    """The next poll after a successful one (new content or 304)."""
    wait = interval
    for hint in (lifetime, hints.ttl):
        if hint is not None:
            wait = max(wait, min(hint, MAX_HINT))
    return _outside_skip_windows(now + wait, hints, limit=now + wait + MAX_HINT)


def after_failure(
    now: datetime,
    *,
    streak: int,
    interval: timedelta,
    cadence: Cadence,
    status: int | None = None,
    retry_after: float | None = None,
    message: str = "",
    random: Callable[[], float],
) -> Failure:
    """The schedule after the `streak`-th failure in a row (1 for the first).

    `random` returns a float in [0, 1) (e.g. `random.random`); it spreads the retries of many
    sources that failed together (a shared host went down) so they do not all come back at once.
    """
    if status == 410:
        return Failure(None, f"gone (HTTP 410) at {now:%Y-%m-%d %H:%M} UTC: {message}".strip())
    if retry_after is not None:
        return Failure(now + timedelta(seconds=retry_after))
    # 2 ** streak grows past any cap within a few dozen failures; stop doubling before overflow.
    doubled = interval * (2 ** min(max(streak - 1, 0), 32))
    delay = min(doubled, cadence.backoff_cap)
    # "Equal jitter": half the delay is certain, the other half random.
    jittered = delay / 2 + delay / 2 * random()
    return Failure(now + jittered)


def _clamp(value: timedelta, cadence: Cadence) -> timedelta:
    return max(cadence.min_every, min(value, cadence.max_every))


def _outside_skip_windows(when: datetime, hints: FeedHints, *, limit: datetime) -> datetime:
    """The first whole hour from `when` on that neither skipHours nor skipDays excludes; `when`
    itself if it is allowed, or when every hour up to `limit` is skipped (a feed that skips
    everything is ignored rather than obeyed into silence)."""
    skip_hours = set(hints.skip_hours)
    skip_days = set(hints.skip_days)
    if not _skipped(when, skip_hours, skip_days):
        return when
    candidate = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while candidate <= limit:
        candidate += timedelta(hours=1)
        if not _skipped(candidate, skip_hours, skip_days):
            return candidate
    return when


def _skipped(when: datetime, hours: Collection[int], days: Collection[int]) -> bool:
    moment = when.astimezone(UTC)
    return moment.hour in hours or moment.weekday() in days
