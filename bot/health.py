"""Health you can see: per source, what its polls have been doing, and whether it went quiet.

`source_health` is a pure function of what the store remembers, so it is tested with tables; the
`wirewatch sources` command prints `render_table` of it. A source is reported as

- `disabled` when it answered 410 Gone (with the reason), until its URL is changed;
- `failing` while its last poll failed (with the error's kind and message and the streak);
- `silent` when it has not brought a new article for far longer than its usual rhythm
  (`SILENT_FACTOR` × the median gap between its recent articles, and at least `SILENT_FLOOR`):
  the failure users of other feed tools report is a feed that "works" but stopped publishing,
  or moved without a redirect, and nobody noticed for weeks;
- `new` before its first poll, else `ok`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from .store import SourceActivity, SourceState

__all__ = ["SILENT_FACTOR", "SILENT_FLOOR", "SourceHealth", "render_table", "source_health"]

SILENT_FACTOR = 5
SILENT_FLOOR = timedelta(hours=12)
WINDOW = timedelta(days=7)
"""Articles per day are counted over this window."""


@dataclass(frozen=True, slots=True)
class SourceHealth:
    name: str
    url: str
    status: str
    """ok, new, failing, silent or disabled (see the module docstring)."""
    last_success_at: datetime | None
    next_poll_at: datetime | None
    failure_streak: int
    last_error: str | None
    last_error_kind: str | None
    disabled_reason: str | None
    not_modified_share: float | None
    """Share of polls answered 304 (None before the first poll)."""
    articles_per_day: float
    last_article_at: datetime | None
    rhythm: timedelta | None
    """The median gap between its recent articles (None with fewer than three)."""


def rhythm_of(published: Sequence[datetime]) -> timedelta | None:
    ordered = sorted(published)
    if len(ordered) < 3:
        return None
    return timedelta(
        seconds=statistics.median((b - a).total_seconds() for a, b in pairwise(ordered))
    )


def source_health(
    configured: Sequence[tuple[str, str]],
    states: Mapping[str, SourceState],
    activity: Mapping[str, SourceActivity],
    published: Mapping[str, Sequence[datetime]],
    now: datetime,
) -> list[SourceHealth]:
    """One row per configured (name, url), in configuration order."""
    rows: list[SourceHealth] = []
    for name, url in configured:
        state = states.get(name)
        seen = activity.get(name, SourceActivity(0, None))
        rhythm = rhythm_of(published.get(name, ()))
        rows.append(
            SourceHealth(
                name=name,
                url=(state.fetch_url if state and state.fetch_url else url),
                status=_status(state, seen.last_article_at, rhythm, now),
                last_success_at=state.last_success_at if state else None,
                next_poll_at=state.next_poll_at if state else None,
                failure_streak=state.failure_streak if state else 0,
                last_error=state.last_error if state else None,
                last_error_kind=state.last_error_kind if state else None,
                disabled_reason=state.disabled_reason if state else None,
                not_modified_share=(
                    state.not_modified_polls / state.polls if state and state.polls else None
                ),
                articles_per_day=seen.articles_since / WINDOW.days,
                last_article_at=seen.last_article_at,
                rhythm=rhythm,
            )
        )
    return rows


def _status(
    state: SourceState | None,
    last_article_at: datetime | None,
    rhythm: timedelta | None,
    now: datetime,
) -> str:
    if state is None or state.last_polled_at is None:
        return "new"
    if state.disabled_reason:
        return "disabled"
    if state.failure_streak:
        return "failing"
    if (
        last_article_at is not None
        and rhythm is not None
        and now - last_article_at > max(SILENT_FACTOR * rhythm, SILENT_FLOOR)
    ):
        return "silent"
    return "ok"


def render_table(rows: Sequence[SourceHealth], now: datetime) -> str:
    """A plain-text table for a terminal: one line per source, errors and reasons last."""
    header = ("SOURCE", "STATUS", "LAST OK", "NEXT POLL", "FAILS", "304s", "ART/DAY", "DETAIL")
    lines = [header]
    for row in rows:
        detail = ""
        if row.status == "disabled":
            detail = f"disabled: {row.disabled_reason}"
        elif row.status == "failing" and row.last_error:
            detail = f"[{row.last_error_kind or 'error'}] {row.last_error}"
        elif row.status == "silent" and row.last_article_at is not None:
            detail = f"no new article for {_ago(now - row.last_article_at)}"
        lines.append(
            (
                row.name,
                row.status,
                _ago(now - row.last_success_at) + " ago" if row.last_success_at else "never",
                _when(row.next_poll_at, now),
                str(row.failure_streak),
                f"{row.not_modified_share:.0%}" if row.not_modified_share is not None else "-",
                f"{row.articles_per_day:.1f}",
                detail,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        (
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            + "  "
            + line[-1]
        ).rstrip()
        for line in lines
    )


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return "now" if moment <= now else "in " + _ago(moment - now)


def _ago(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
