"""Digests as pure decisions: which alerts go singly, together or later (schedules, quiet hours,
the burst rule), and how a digest is written and split under Telegram's 4096-character limit."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from bot.digest import (
    BURST_OVER,
    BurstRule,
    DigestItem,
    compose_digest,
    plan_chat,
    visible_length,
)
from bot.rhythm import INSTANT, QuietHours, Rhythm, Schedule
from bot.store import PendingAlert, StoredArticle
from bot.telegram import MAX_MESSAGE_LENGTH
from tests.support.fake_telegram import parse_telegram_html, utf16_length

NOON = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
RULE = BurstRule(threshold=3, every=timedelta(minutes=15))


def alert(
    number: int,
    queued: datetime = NOON,
    *,
    watchlist: str = "w",
    title: str | None = None,
    url: str | None = None,
) -> PendingAlert:
    article = StoredArticle(
        id=number,
        source="wire",
        guid=f"g{number}",
        url=url if url is not None else f"https://news.test/{number}",
        title=title if title is not None else f"Story {number}",
        text="",
        html="",
        author=None,
        published=datetime(2026, 1, 10, 9, 30, tzinfo=UTC),
        fetched_at=queued,
        updated_at=queued,
    )
    return PendingAlert(number, 1, watchlist, ("x",), "x", article, 0, None, queued)


INSTANT_ROUTE = Rhythm()
HOURLY = Rhythm(Schedule(hourly_minute=0))
QUIET = Rhythm(INSTANT, QuietHours(time(22), time(7)))


def ids(alerts: list[PendingAlert]) -> list[int]:
    return [a.id for a in alerts]


def test_instant_alerts_go_singly_and_digest_alerts_wait_for_their_time() -> None:
    pending = [alert(1), alert(2, watchlist="d"), alert(3)]
    rhythms = {"w": INSTANT_ROUTE, "d": HOURLY}
    plan = plan_chat(pending, lambda a: rhythms[a.watchlist], None, RULE, NOON)
    assert (ids(plan.singles), ids(plan.digest), plan.burst) == ([1, 3], [], "none")
    assert plan.next_due == NOON + timedelta(hours=1)
    later = plan_chat(
        pending, lambda a: rhythms[a.watchlist], None, RULE, NOON + timedelta(hours=1)
    )
    assert ids(later.digest) == [2]
    assert later.next_due is None


def test_alerts_queued_in_quiet_hours_wait_for_their_end() -> None:
    night = datetime(2026, 1, 10, 23, 0, tzinfo=UTC)
    pending = [alert(1, night), alert(2, night + timedelta(hours=3))]
    plan = plan_chat(pending, lambda _: QUIET, None, None, night + timedelta(hours=4))
    assert (plan.singles, plan.digest) == ([], [])
    assert plan.next_due == datetime(2026, 1, 11, 7, 0, tzinfo=UTC)
    morning = plan_chat(pending, lambda _: QUIET, None, None, datetime(2026, 1, 11, 7, tzinfo=UTC))
    assert ids(morning.digest) == [1, 2]


@pytest.mark.parametrize(
    ("queued_minutes", "burst_since", "now_minutes", "singles", "digest", "step"),
    [
        # No burst: under the threshold, one by one; at it, the backlog becomes one digest.
        ([0, 1], None, 2, [1, 2], [], "none"),
        ([0, 1, 2], None, 2, [], [1, 2, 3], "start"),
        # In a burst that began at minute 2: the first backlog's digest (if not gone yet) is due,
        # newer alerts wait for the end of the interval.
        ([0, 5], 2, 6, [], [1], "start"),
        ([5, 6], 2, 6, [], [], "none"),
        # At the end of the interval: as many as the threshold, the burst goes on; fewer, it ends.
        ([5, 6, 7], 2, 17, [], [1, 2, 3], "continue"),
        ([5, 6], 2, 17, [], [1, 2], "end"),
        # An interval that brought nothing ended the burst: what came later goes as usual.
        ([], 2, 17, [], [], "end"),
        ([18], 2, 19, [], [], "end"),
    ],
)
def test_the_burst_rule(
    queued_minutes: list[int],
    burst_since: int | None,
    now_minutes: int,
    singles: list[int],
    digest: list[int],
    step: str,
) -> None:
    minute = timedelta(minutes=1)
    pending = [alert(n, NOON + m * minute) for n, m in enumerate(queued_minutes, start=1)]
    since = None if burst_since is None else NOON + burst_since * minute
    plan = plan_chat(pending, lambda _: INSTANT_ROUTE, since, RULE, NOON + now_minutes * minute)
    assert (ids(plan.singles), ids(plan.digest), plan.burst) == (singles, digest, step)


def test_without_a_burst_rule_a_backlog_goes_singly() -> None:
    pending = [alert(n) for n in range(1, 30)]
    plan = plan_chat(pending, lambda _: INSTANT_ROUTE, None, None, NOON)
    assert len(plan.singles) == 29 and plan.burst == "none"


def items(count: int, **names: str) -> list[DigestItem]:
    return [
        DigestItem(alert(n, **names), "Ukraine <war>", "Wire & Co", ("Daily", "Gazette"))
        for n in range(1, count + 1)
    ]


def test_a_digest_links_every_item_escapes_and_names_other_outlets() -> None:
    [part] = compose_digest(
        items(2, title='Kyiv <says> "no" & more'), "Europe/Kyiv", note="Burst!", footer=BURST_OVER
    )
    assert part.alert_ids == (1, 2)
    visible = parse_telegram_html(part.html)  # as strict as Telegram
    assert visible.startswith('Digest · 2 alerts\nBurst!\n\n• Kyiv <says> "no" & more\n')
    assert '<a href="https://news.test/1">Kyiv &lt;says&gt; "no" &amp; more</a>' in part.html
    assert '<a href="https://news.test/2">' in part.html
    assert "Wire & Co · 10 Jan 2026 11:30 EET · Ukraine <war>" in visible
    assert visible.count("Also reported by: Daily, Gazette") == 2
    assert visible.endswith(BURST_OVER)


def test_an_unlinkable_url_is_not_made_a_link() -> None:
    [part] = compose_digest(items(1, url="javascript:alert(1)"), "UTC")
    assert "<a " not in part.html


@pytest.mark.parametrize("title", ["Short", "Long " * 80, "Emoji 🇺🇦 & <tags> " * 20])
def test_a_long_digest_is_split_between_items_under_the_limit(title: str) -> None:
    many = items(150, title=title)
    parts = compose_digest(many, "UTC", note="A burst.", footer=BURST_OVER)
    assert len(parts) > 1
    carried = [alert_id for part in parts for alert_id in part.alert_ids]
    assert carried == list(range(1, 151))  # every item once, in order
    for number, part in enumerate(parts, start=1):
        visible = parse_telegram_html(part.html)
        assert utf16_length(visible) <= MAX_MESSAGE_LENGTH
        assert visible_length(part.html) == utf16_length(visible)
        assert visible.startswith(f"Digest · {len(part.alert_ids)} alert")
        assert f"part {number} of {len(parts)}" in visible
        assert visible.count("\n• ") == len(part.alert_ids)
        assert visible.endswith(BURST_OVER) is (number == len(parts))
    # Few messages: each but the last is well filled.
    assert all(visible_length(p.html) > MAX_MESSAGE_LENGTH * 0.6 for p in parts[:-1])
