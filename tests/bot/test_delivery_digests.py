"""Digests through the real outbox on virtual time: schedules in the route's zone (across DST),
quiet hours over midnight, the burst switch on and off, and every alert delivered exactly once,
including when the process dies between any two steps of sending a digest."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.delivery import Deliverer, route_table
from bot.digest import BURST_OVER, BurstRule
from bot.settings import WatchlistSettings
from bot.store import Store
from bot.telegram import DeliveryError, SendOptions
from feeds.models import Article, Match, TermHit
from tests.bot.test_delivery import T0, FakeTime, ScriptedSender, direct
from tests.support.fake_telegram import parse_telegram_html, utf16_length


class Crash(BaseException):
    """Stands for the process dying (kill -9): nothing after it runs, nothing is cleaned up."""


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    with Store.open(database) as opened:
        yield opened


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def at(time: FakeTime, moment: datetime) -> None:
    """Move virtual time to ``moment``."""
    time.seconds = (moment - T0).total_seconds()


def queue(store: Store, time: FakeTime, name: str, chats: list[int], title: str = "") -> None:
    """Queue an alert for ``chats`` at the current virtual time."""
    article = Article(
        url=f"https://news.test/{name}", title=title or name, paragraphs=("x",), html=""
    )
    watchlist = "w"
    match = Match(watchlist, (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches("src", name, article, [match], {watchlist: chats}, time.now())


def routes(*chats: object, name: str = "w") -> Any:
    watchlist = WatchlistSettings.model_validate({"name": name, "keywords": ["x"], "chats": chats})
    return route_table([watchlist])


def deliverer(store: Store, sender: Any, time: FakeTime, **options: Any) -> Deliverer:
    return Deliverer(
        store,
        sender,
        "sent",
        watchlist_titles={},
        source_titles={},
        clock=time.now,
        throttle=time.throttle(),
        blocking=direct,
        **options,
    )


LINK = re.compile(r'<a href="https://news\.test/([^"]+)">')


def items(text: str) -> list[str]:
    """The articles a message links to, in order."""
    return LINK.findall(text)


def is_digest(text: str) -> bool:
    return parse_telegram_html(text).startswith("Digest · ")


def outbox(store: Store, chat: int | None = None) -> dict[str, tuple[str, int | None]]:
    """Article name → (status, Telegram message id) for every alert (to ``chat``)."""
    with store._engine.begin() as connection:  # a test may look inside
        rows = connection.exec_driver_sql(
            "SELECT a.guid, o.status, o.message_id, o.chat_id FROM outbox o JOIN articles a"
            " ON a.id = o.article_id"
        ).all()
    return {
        guid: (status, message_id)
        for guid, status, message_id, chat_id in rows
        if chat is None or chat == chat_id
    }


MONDAY_NOON = datetime(2026, 3, 9, 12)


@pytest.mark.parametrize(
    ("schedule", "zone", "queued", "due"),
    [
        # 08:00 in Kyiv is 06:00 UTC in winter.
        ("daily at 08:00", "Europe/Kyiv", datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 6)),
        # Berlin springs forward on 29 March: 08:00 is 06:00 UTC that day, not 07:00.
        ("daily at 08:00", "Europe/Berlin", datetime(2026, 3, 28, 12), datetime(2026, 3, 29, 6)),
        # And falls back on 25 October: 08:00 is 07:00 UTC again.
        ("daily at 08:00", "Europe/Berlin", datetime(2026, 10, 24, 12), datetime(2026, 10, 25, 7)),
        # New York springs forward on 8 March: Monday 08:00 is 12:00 UTC, no longer 13:00.
        ("weekly on monday at 08:00", "America/New_York", datetime(2026, 3, 6), MONDAY_NOON),
        # Hourly at local :00 in a zone half an hour off UTC.
        ("hourly", "Asia/Kolkata", datetime(2026, 1, 1, 10, 5), datetime(2026, 1, 1, 10, 30)),
    ],
)  # fmt: skip
async def test_a_scheduled_digest_goes_once_at_its_local_time(
    store: Store, time: FakeTime, schedule: str, zone: str, queued: datetime, due: datetime
) -> None:
    queued, due = queued.replace(tzinfo=UTC), due.replace(tzinfo=UTC)
    table = routes({"chat": 5, "schedule": schedule, "timezone": zone}, 6)
    sender = ScriptedSender(time)
    at(time, queued)
    for number in range(3):
        queue(store, time, f"s{number}", [5, 6])
        time.seconds += 60
    report = await deliverer(store, sender, time, routes=table).deliver()
    assert report.sent == 3 and {chat for chat, *_ in sender.sent} == {6}  # the instant route
    at(time, due - timedelta(seconds=1))
    await deliverer(store, sender, time, routes=table).deliver()
    assert len(sender.sent) == 3  # not yet
    at(time, due)
    await deliverer(store, sender, time, routes=table).deliver()
    await deliverer(store, sender, time, routes=table).deliver()
    digests = [(chat, text) for chat, text, _, _ in sender.sent if chat == 5]
    assert len(digests) == 1
    assert items(digests[0][1]) == ["s0", "s1", "s2"]
    assert is_digest(digests[0][1])
    assert {status for status, _ in outbox(store).values()} == {"sent"}
    assert len({message_id for _, message_id in outbox(store, 6).values()}) == 3
    assert len({message_id for _, message_id in outbox(store, 5).values()}) == 1  # one digest


async def test_quiet_hours_over_midnight_hold_alerts_for_one_digest(
    store: Store, time: FakeTime
) -> None:
    table = routes({"chat": 5, "quiet_hours": "22:00-07:00", "timezone": "Europe/Kyiv"})
    sender = ScriptedSender(time)

    async def at_kyiv(hour: int, day: int = 10) -> None:  # Kyiv is UTC+2 in January
        at(time, datetime(2026, 1, day, hour, tzinfo=UTC) - timedelta(hours=2))
        await deliverer(store, sender, time, routes=table).deliver()

    await at_kyiv(21)
    queue(store, time, "evening", [5])
    await at_kyiv(21)
    assert [items(text) for _, text, _, _ in sender.sent] == [["evening"]]
    assert not is_digest(sender.sent[0][1])
    await at_kyiv(23)
    queue(store, time, "late", [5])
    await at_kyiv(3, day=11)
    queue(store, time, "night", [5])
    await at_kyiv(6, day=11)
    assert len(sender.sent) == 1  # held
    await at_kyiv(7, day=11)
    await at_kyiv(8, day=11)
    assert len(sender.sent) == 2
    morning = sender.sent[1][1]
    assert is_digest(morning) and items(morning) == ["late", "night"]
    assert sender.sent[1][2] == time.seconds - 3600  # sent at 07:00, when the quiet hours ended


async def test_a_burst_switches_the_chat_to_digests_and_back(store: Store, time: FakeTime) -> None:
    rule = BurstRule(threshold=5, every=timedelta(minutes=15))
    sender = ScriptedSender(time)

    async def round_at(minutes: float) -> None:
        time.seconds = minutes * 60
        await deliverer(store, sender, time, burst=rule).deliver()

    for number in range(8):
        queue(store, time, f"a{number}", [-100])
    await round_at(0)
    assert len(sender.sent) == 1  # eight alerts, one message saying why
    first = parse_telegram_html(sender.sent[0][1])
    assert first.startswith("Digest · 8 alerts\nBurst of news: this chat now gets its alerts")
    assert "every 15 min" in first
    assert store.chat_states()[-100].burst_since == T0

    for number in range(6):  # the burst goes on
        time.seconds = 60 + number
        queue(store, time, f"b{number}", [-100])
    await round_at(5)
    assert len(sender.sent) == 1  # held for the end of the interval
    await round_at(15)
    assert items(sender.sent[1][1]) == [f"b{n}" for n in range(6)]
    assert "Burst of news" in sender.sent[1][1] and BURST_OVER not in sender.sent[1][1]
    assert store.chat_states()[-100].burst_since == T0 + timedelta(minutes=15)

    time.seconds = 16 * 60
    queue(store, time, "c0", [-100])
    queue(store, time, "c1", [-100])
    await round_at(20)
    assert len(sender.sent) == 2
    await round_at(30)  # fewer than the threshold: the last burst digest, and the switch back
    assert items(sender.sent[2][1]) == ["c0", "c1"]
    assert parse_telegram_html(sender.sent[2][1]).endswith(BURST_OVER)
    assert store.chat_states()[-100].burst_since is None

    time.seconds = 31 * 60
    queue(store, time, "d0", [-100])
    await round_at(31)
    assert items(sender.sent[3][1]) == ["d0"] and not is_digest(sender.sent[3][1])
    assert Counter(status for status, _ in outbox(store).values()) == {"sent": 17}


async def test_a_burst_that_stops_ends_without_a_message(store: Store, time: FakeTime) -> None:
    rule = BurstRule(threshold=3, every=timedelta(minutes=15))
    sender = ScriptedSender(time)
    for number in range(3):
        queue(store, time, f"a{number}", [7])
    await deliverer(store, sender, time, burst=rule).deliver()
    assert len(sender.sent) == 1 and store.chat_states()[7].burst_since == T0
    time.seconds = 40 * 60  # nothing came in the burst's interval; this comes much later
    queue(store, time, "late", [7])
    await deliverer(store, sender, time, burst=rule).deliver()
    assert len(sender.sent) == 2
    assert items(sender.sent[1][1]) == ["late"] and not is_digest(sender.sent[1][1])
    assert store.chat_states()[7].burst_since is None


async def test_a_long_digest_is_split_and_valid_for_telegram(store: Store, time: FakeTime) -> None:
    table = routes({"chat": 5, "thread": 9, "schedule": "hourly"})
    sender = ScriptedSender(time)
    for number in range(60):
        queue(store, time, f"story-{number}", [5], title="long & <odd> title " * 12)
    time.seconds = 3600
    report = await deliverer(store, sender, time, routes=table).deliver()
    assert report.sent == 60
    assert len(sender.sent) >= 2
    linked = [name for _, text, _, _ in sender.sent for name in items(text)]
    assert len(linked) == 60 and len(set(linked)) == 60
    for _, text, _, options in sender.sent:
        assert utf16_length(parse_telegram_html(text)) <= 4096
        assert options == SendOptions(thread_id=9)  # the topic; no preview, no buttons
    spacing = [b[2] - a[2] for a, b in zip(sender.sent, sender.sent[1:], strict=False)]
    assert min(spacing) >= 1.0  # the rate limits hold for digests too


class CrashingSender(ScriptedSender):
    """Dies at its ``crash_at``-th send, before or after Telegram got the message."""

    def __init__(self, time: FakeTime, crash_at: int, *, arrived: bool) -> None:
        super().__init__(time)
        self.calls = 0
        self.crash_at = crash_at
        self.arrived = arrived

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        self.calls += 1
        if self.calls == self.crash_at:
            if self.arrived:
                await super().send(chat_id, html_text, options)
            raise Crash
        return await super().send(chat_id, html_text, options)


@pytest.mark.parametrize(
    "step",
    [
        "before the first claim",
        "after a claim, before the request",
        "after Telegram got the message, before its answer",
        "after the answer, before it was recorded",
        "between two messages of one digest",
    ],
)
async def test_every_alert_of_a_digest_exactly_once_across_a_crash(
    database: str, time: FakeTime, step: str
) -> None:
    """The process dies at ``step`` while sending a three-message digest, and starts again
    (a new Store on the same file, recovery, a new Deliverer). Afterwards no alert was delivered
    twice, each alert is `sent` (in exactly one message) or, only where Telegram may have it,
    `unknown`; nothing is left pending."""
    table = routes({"chat": 5, "schedule": "hourly"})
    sender = ScriptedSender(time)
    names = [f"n{number}" for number in range(90)]
    with Store.open(database) as store:
        for name in names:
            queue(store, time, name, [5], title="headline words " * 15)
    time.seconds = 3600
    crashing: Any = sender
    if step == "after a claim, before the request":
        crashing = CrashingSender(time, 2, arrived=False)
    elif step == "after Telegram got the message, before its answer":
        crashing = CrashingSender(time, 2, arrived=True)
    with Store.open(database) as store:
        if step == "before the first claim":
            store.claim_alerts = _crash  # type: ignore[method-assign]
        elif step == "after the answer, before it was recorded":
            store.settle_alerts = _crash  # type: ignore[method-assign]
        elif step == "between two messages of one digest":
            original = store.claim_alerts
            claims = iter([original, _crash])
            store.claim_alerts = lambda *a, **k: next(claims)(*a, **k)  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await deliverer(store, crashing, time, routes=table).deliver()
    first = crashing.sent if crashing is not sender else sender.sent
    first_count = len(first)

    time.seconds += 60
    with Store.open(database) as store:  # the restart
        store.recover_interrupted_alerts(time.now())
        again = ScriptedSender(time)
        await deliverer(store, again, time, routes=table).deliver()
        await deliverer(store, again, time, routes=table).deliver()
        states = outbox(store)

    messages = [text for _, text, _, _ in first] + [text for _, text, _, _ in again.sent]
    linked = Counter(name for text in messages for name in items(text))
    assert set(linked.values()) <= {1}  # never twice
    assert all(is_digest(text) for text in messages)  # never also singly
    statuses = Counter(status for status, _ in states.values())
    assert statuses["pending"] == 0 and statuses["sending"] == 0
    for name in names:
        status, _ = states[name]
        assert status in ("sent", "unknown")
        if status == "sent":
            assert linked[name] == 1
    unknown = {name for name, (status, _) in states.items() if status == "unknown"}
    if step in ("before the first claim", "between two messages of one digest"):
        assert not unknown  # nothing was in flight: every alert arrives, exactly once
        assert set(linked) == set(names)
    elif step == "after a claim, before the request":
        assert unknown and not (unknown & set(linked))  # claimed, never sent: the window
    else:  # Telegram has them; we cannot know, so they are not sent again
        assert unknown and unknown <= set(linked)
        assert set(linked) == set(names)
    assert first_count >= 1 or step == "before the first claim"


def _crash(*_: object, **__: object) -> Any:
    raise Crash


async def test_a_digest_route_follows_its_group_into_the_supergroup(
    store: Store, time: FakeTime
) -> None:
    """A group in digest mode with a forum topic becomes a supergroup while alerts are queued
    under its old id, and the configuration is rewritten to the new id (App.move_chat): the
    queued alerts still go as digests, into the same topic of the new chat."""
    old, new = -5, -1005
    sender = ScriptedSender(time)
    sender.failures[old] = DeliveryError("upgraded", permanent=False, migrate_to=new)

    async def moved(old_chat: int, new_chat: int) -> None:  # as App.move_chat does
        assert (old_chat, new_chat) == (old, new)
        sending.routes = routes({"chat": new_chat, "thread": 9, "schedule": "hourly"})

    sending = deliverer(
        store,
        sender,
        time,
        routes=routes({"chat": old, "thread": 9, "schedule": "hourly"}),
        on_chat_moved=moved,
    )
    for number in range(3):
        queue(store, time, f"a{number}", [old])
    time.seconds = 3600
    report = await sending.deliver()
    assert (report.sent, report.failed) == (3, 0)
    assert store.chat_states()[old].migrated_to == new
    assert [(chat, items(text)) for chat, text, _, _ in sender.sent] == [(new, ["a0", "a1", "a2"])]
    assert is_digest(sender.sent[0][1]) and sender.sent[0][3] == SendOptions(thread_id=9)

    time.seconds = 3600 + 60
    for number in range(2):  # matched before the rewrite, so still queued under the old id
        queue(store, time, f"b{number}", [old])
    later = deliverer(
        store, sender, time, routes=routes({"chat": new, "thread": 9, "schedule": "hourly"})
    )
    await later.deliver()
    assert len(sender.sent) == 1  # held for the next digest, not sent one by one
    time.seconds = 2 * 3600
    await later.deliver()
    assert len(sender.sent) == 2
    chat, text, _, options = sender.sent[1]
    assert (chat, items(text), options) == (new, ["b0", "b1"], SendOptions(thread_id=9))
    assert is_digest(text)
    assert {status for status, _ in outbox(store).values()} == {"sent"}
