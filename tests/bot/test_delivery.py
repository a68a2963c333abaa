"""Delivery rules on a real SQLite outbox with a scripted sender and a fake clock: order per chat,
rate limits, 429/5xx/403/migration/unknown outcomes, one stuck chat never blocking the others,
and never sending twice. (PTB and the HTTP side are tested against the fake Bot API elsewhere.)"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.delivery import Deliverer, RouteOptions, route_table
from bot.ratelimit import Limits, Throttle
from bot.rhythm import Rhythm
from bot.settings import WatchlistSettings
from bot.store import Store
from bot.telegram import DeliveryError, SendOptions
from feeds.models import Article, Match, TermHit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHAT_SPACING = Limits().per_chat_window + Limits().chat_margin


class FakeTime:
    """Virtual time for the store's datetimes and the throttle.

    ``sleep`` parks the caller; once every other task has had its turn, time jumps to the
    earliest wake-up. Tasks thus interleave as they would in real time, instantly.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.seconds + max(seconds, 0.0), next(self._count), wake))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        await wake

    async def _drive(self) -> None:
        while self._sleepers:
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            at, _, wake = heapq.heappop(self._sleepers)
            self.seconds = max(self.seconds, at)
            wake.set_result(None)

    def throttle(self) -> Throttle:
        return Throttle(Limits(), clock=self.monotonic, sleep=self.sleep)


class ScriptedSender:
    """Records sends with the fake time; fails for chats as told (a list is used up in order)."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.sent: list[tuple[int, str, float, SendOptions | None]] = []
        self.failures: dict[int, DeliveryError | list[DeliveryError]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        failure = self.failures.get(chat_id)
        if isinstance(failure, list):
            if failure:
                raise failure.pop(0)
        elif failure is not None:
            raise failure
        self.sent.append((chat_id, html_text, self.time.seconds, options))
        return len(self.sent)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


def queue(store: Store, title: str, chats: list[int], watchlist: str = "w") -> None:
    article = Article(url=f"https://news.test/{title}", title=title, paragraphs=("x",), html="")
    match = Match(watchlist, (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches("src", title, article, [match], {watchlist: chats}, T0)


async def direct(call: Callable[[], Any]) -> Any:
    """Run database calls in place: with virtual time, a thread hop would reorder events."""
    return call()


def deliverer(store: Store, sender: ScriptedSender, time: FakeTime, **options: object) -> Deliverer:
    return Deliverer(
        store,
        sender,
        "sent",
        watchlist_titles={},
        source_titles={},
        clock=time.now,
        throttle=time.throttle(),
        blocking=direct,
        **options,  # type: ignore[arg-type]
    )


async def deliver(store: Store, sender: ScriptedSender, time: FakeTime) -> tuple[int, int]:
    report = await deliverer(store, sender, time).deliver()
    return report.sent, report.failed


def titles(sender: ScriptedSender, chat: int) -> list[str]:
    return [text.split(">", 2)[2].split("<", 1)[0] for c, text, _, _ in sender.sent if c == chat]


def statuses(store: Store) -> dict[str, int]:
    return store.alert_counts()


async def test_alerts_go_out_in_order_and_never_twice(store: Store, time: FakeTime) -> None:
    for title in ("first", "second", "third"):
        queue(store, title, [1, 2])
    sender = ScriptedSender(time)
    assert await deliver(store, sender, time) == (6, 0)
    assert titles(sender, 1) == ["first", "second", "third"]
    assert await deliver(store, sender, time) == (0, 0)  # nothing is sent twice


async def test_the_message_id_is_recorded(store: Store, time: FakeTime) -> None:
    queue(store, "first", [1])
    await deliver(store, ScriptedSender(time), time)
    assert statuses(store) == {"sent": 1}


async def test_one_message_per_second_per_chat_and_chats_in_parallel(
    store: Store, time: FakeTime
) -> None:
    for number in range(3):
        queue(store, f"a{number}", [1, 2])
    sender = ScriptedSender(time)
    await deliver(store, sender, time)
    times = {chat: [t for c, _, t, _ in sender.sent if c == chat] for chat in (1, 2)}
    for chat in (1, 2):
        gaps = [later - earlier for earlier, later in itertools.pairwise(times[chat])]
        assert all(gap >= 1.0 for gap in gaps), gaps
    # The two chats do not wait for each other (only the overall pace of ~30/s separates them).
    assert times[2] == pytest.approx(times[1], abs=0.1)
    assert times[1] == pytest.approx([0, CHAT_SPACING, 2 * CHAT_SPACING])  # and no slower


async def test_a_group_gets_at_most_20_a_minute(store: Store, time: FakeTime) -> None:
    for number in range(25):
        queue(store, f"g{number}", [-100])
    sender = ScriptedSender(time)
    await deliver(store, sender, time)
    times = [t for _, _, t, _ in sender.sent]
    assert len(times) == 25
    for index in range(len(times) - 20):
        assert times[index + 20] - times[index] >= 60.0


async def test_flood_control_waits_exactly_retry_after_for_that_chat_only(
    store: Store, time: FakeTime
) -> None:
    for title in ("first", "second"):
        queue(store, title, [1, 2])
    sender = ScriptedSender(time)
    sender.failures[1] = [DeliveryError("flood", permanent=False, retry_after=7)]
    assert await deliver(store, sender, time) == (4, 1)
    first_to_1 = next(t for c, _, t, _ in sender.sent if c == 1)
    assert first_to_1 == pytest.approx(7.0)  # failed at 0, told to wait 7 s
    assert [t for c, _, t, _ in sender.sent if c == 2] == pytest.approx(
        [0.0, CHAT_SPACING], abs=0.1
    )
    assert titles(sender, 1) == ["first", "second"]  # still in order


async def test_a_long_retry_after_is_stored_and_honoured_by_a_later_round(
    store: Store, time: FakeTime
) -> None:
    queue(store, "first", [1])
    sender = ScriptedSender(time)
    sender.failures[1] = [DeliveryError("flood", permanent=False, retry_after=120)]
    assert await deliver(store, sender, time) == (0, 1)
    [alert] = store.pending_alerts()
    assert alert.next_attempt_at == T0 + timedelta(seconds=120)
    time.seconds = 60  # a fresh process (new throttle) still waits: the wait is in the outbox
    assert await deliver(store, sender, time) == (0, 0)
    time.seconds = 120
    assert await deliver(store, sender, time) == (1, 0)


async def test_a_temporary_failure_holds_the_chat_and_backs_off(
    store: Store, time: FakeTime
) -> None:
    for title in ("first", "second"):
        queue(store, title, [1, 2])
    sender = ScriptedSender(time)
    sender.failures[1] = DeliveryError("Bad Gateway", permanent=False)
    running = deliverer(store, sender, time, backoff_base=30.0)
    assert (await running.deliver()).failed == 1  # chat 2 got both; chat 1 waits, in order
    assert titles(sender, 1) == []
    assert titles(sender, 2) == ["first", "second"]
    del sender.failures[1]
    time.seconds += 10
    assert (await running.deliver()).sent == 0  # backing off: 30 s after the first failure
    time.seconds += 25
    assert (await running.deliver()).sent == 2
    assert titles(sender, 1) == ["first", "second"]


async def test_back_off_doubles_and_is_capped(store: Store, time: FakeTime) -> None:
    queue(store, "first", [1])
    sender = ScriptedSender(time)
    sender.failures[1] = DeliveryError("network down", permanent=False)
    running = deliverer(store, sender, time, backoff_base=10.0, backoff_cap=35.0)
    tries: list[float] = []
    for _ in range(120):
        before = len(tries)
        report = await running.deliver()
        if report.failed:
            tries.append(time.seconds)
        assert len(tries) - before <= 1
        time.seconds += 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
    assert gaps[:4] == [10, 20, 35, 35]


async def test_a_fresh_deliverer_retries_at_once(store: Store, time: FakeTime) -> None:
    """`run --once` builds a new one each run: a failed send is retried on the next run."""
    queue(store, "first", [1])
    sender = ScriptedSender(time)
    sender.failures[1] = [DeliveryError("Bad Gateway", permanent=False)]
    assert await deliver(store, sender, time) == (0, 1)
    assert await deliver(store, sender, time) == (1, 0)


async def test_a_permanent_failure_ends_that_alert_only(store: Store, time: FakeTime) -> None:
    for title in ("first", "second"):
        queue(store, title, [1])
    sender = ScriptedSender(time)
    sender.failures[1] = [DeliveryError("Bad Request: message is too long", permanent=True)]
    assert await deliver(store, sender, time) == (1, 1)
    assert titles(sender, 1) == ["second"]
    assert await deliver(store, sender, time) == (0, 0)  # failed for good: not retried forever
    assert statuses(store) == {"failed": 1, "sent": 1}


async def test_a_chat_that_refuses_the_bot_is_disabled(store: Store, time: FakeTime) -> None:
    for title in ("first", "second", "third"):
        queue(store, title, [1, 2])
    sender = ScriptedSender(time)
    sender.failures[1] = DeliveryError(
        "Forbidden: bot was blocked", permanent=True, chat_refused=True
    )
    assert await deliver(store, sender, time) == (3, 3)
    assert len([c for c, *_ in sender.sent if c == 1]) == 0
    assert store.chat_states()[1].disabled_reason == "Forbidden: bot was blocked"
    queue(store, "fourth", [1])
    del sender.failures[1]
    assert await deliver(store, sender, time) == (0, 1)  # not even tried: the chat is disabled
    assert titles(sender, 1) == []


async def test_a_migrated_group_gets_its_alerts_at_the_new_id(store: Store, time: FakeTime) -> None:
    for title in ("first", "second"):
        queue(store, title, [-5])
    sender = ScriptedSender(time)
    sender.failures[-5] = DeliveryError("migrated", permanent=False, migrate_to=-1005)
    moves: list[tuple[int, int]] = []

    async def moved(old: int, new: int) -> None:
        moves.append((old, new))

    report = await deliverer(store, sender, time, on_chat_moved=moved).deliver()
    assert (report.sent, report.failed) == (2, 0)
    assert moves == [(-5, -1005)]  # told once, so the configuration can follow
    assert titles(sender, -1005) == ["first", "second"]
    assert store.chat_states()[-5].migrated_to == -1005
    queue(store, "third", [-5])  # the config still names the old id
    assert await deliver(store, sender, time) == (1, 0)
    assert titles(sender, -1005) == ["first", "second", "third"]


async def test_an_uncertain_outcome_is_never_resent(store: Store, time: FakeTime) -> None:
    for title in ("first", "second"):
        queue(store, title, [1])
    sender = ScriptedSender(time)
    sender.failures[1] = [DeliveryError("ReadTimeout", permanent=False, uncertain=True)]
    report = await deliverer(store, sender, time).deliver()
    assert (report.sent, report.failed, report.unknown) == (1, 0, 1)
    assert titles(sender, 1) == ["second"]
    assert await deliver(store, sender, time) == (0, 0)
    assert statuses(store) == {"sent": 1, "unknown": 1}


async def test_a_stuck_chat_never_hides_the_other_chats(store: Store, time: FakeTime) -> None:
    for number in range(150):  # more than one page of pending alerts, all for the stuck chat
        queue(store, f"stuck{number}", [1])
    queue(store, "other", [2])
    sender = ScriptedSender(time)
    sender.failures[1] = DeliveryError("network down", permanent=False)
    assert await deliver(store, sender, time) == (1, 1)
    assert titles(sender, 2) == ["other"]


async def test_stopping_leaves_the_rest_pending(store: Store, time: FakeTime) -> None:
    for title in ("first", "second", "third"):
        queue(store, title, [1])
    sender = ScriptedSender(time)
    report = await deliverer(store, sender, time).deliver(should_stop=lambda: len(sender.sent) >= 1)
    assert report.sent == 1
    assert [a.article.title for a in store.pending_alerts()] == ["second", "third"]


async def test_routes_choose_topic_time_zone_and_preview(store: Store, time: FakeTime) -> None:
    watchlist = WatchlistSettings.model_validate(
        {
            "name": "w",
            "keywords": ["x"],
            "chats": [
                7,
                {"chat": -100, "thread": 12, "timezone": "Europe/Kyiv", "link_preview": "above"},
            ],
        }
    )
    routes = route_table([watchlist])
    assert routes[("w", 7)] == RouteOptions()
    kyiv = Rhythm(timezone="Europe/Kyiv")
    assert routes[("w", -100)] == RouteOptions(12, "Europe/Kyiv", "above", kyiv)
    queue(store, "first", [7, -100])
    sender = ScriptedSender(time)
    await deliverer(store, sender, time, routes=routes).deliver()
    options = {chat: sent_options for chat, _, _, sent_options in sender.sent}
    url = "https://news.test/first"
    buttons = {"mute_watchlist": "w", "mute_source": "src", "source_title": "src"}
    assert options[7] == SendOptions(None, "off", url, url, **buttons)  # type: ignore[arg-type]
    assert options[-100] == SendOptions(12, "above", url, url, **buttons)  # type: ignore[arg-type]


async def test_a_muted_watchlist_arrives_silently_until_the_mute_ends(
    store: Store, time: FakeTime
) -> None:
    queue(store, "first", [1, 2])
    store.mute(1, "w", T0 + timedelta(minutes=10))
    sender = ScriptedSender(time)
    await deliverer(store, sender, time).deliver()
    silent = {chat: options.silent for chat, _, _, options in sender.sent if options}
    assert silent == {1: True, 2: False}  # muted: delivered all the same, without a sound
    time.seconds = 600
    queue(store, "second", [1])
    await deliverer(store, sender, time).deliver()
    assert sender.sent[-1][3] is not None and sender.sent[-1][3].silent is False


async def test_other_outlets_of_the_story_are_named(store: Store, time: FakeTime) -> None:
    text = (
        "Ministers from twelve countries met in Vilnius on Tuesday to agree a common plan for "
        "air defence along the eastern border, officials said after talks that lasted all day."
    )
    for source, guid in (("src", "a"), ("wire", "b")):
        url = f"https://{source}.test/{guid}"
        article = Article(url=url, title="Ministers agree", paragraphs=(text,), html="")
        match = Match("w", (TermHit("x", 1, ("body",)),), "x")
        store.add_article_with_matches(source, guid, article, [match], {"w": [1]}, T0)
    sender = ScriptedSender(time)
    await Deliverer(
        store,
        sender,
        "sent",
        watchlist_titles={},
        source_titles={"wire": "Wire Service"},
        clock=time.now,
        throttle=time.throttle(),
        blocking=direct,
    ).deliver()
    [(_, alert, _, _)] = sender.sent  # one story, one alert
    assert "\nAlso reported by: Wire Service\n" in alert


async def test_alerts_queued_under_the_old_id_get_the_new_chats_route(
    store: Store, time: FakeTime
) -> None:
    """After a group's upgrade the configuration names the supergroup (App.move_chat), while
    alerts queued earlier still carry the old id: they get the new chat's topic and preview."""
    store.record_chat_migration(-5, -1005, T0)
    queue(store, "first", [-5])
    watchlist = WatchlistSettings.model_validate(
        {
            "name": "w",
            "keywords": ["x"],
            "chats": [{"chat": -1005, "thread": 4, "link_preview": "above"}],
        }
    )
    sender = ScriptedSender(time)
    await deliverer(store, sender, time, routes=route_table([watchlist])).deliver()
    url = "https://news.test/first"
    buttons = {"mute_watchlist": "w", "mute_source": "src", "source_title": "src"}
    assert [(chat, options) for chat, _, _, options in sender.sent] == [
        (-1005, SendOptions(4, "above", url, url, **buttons))  # type: ignore[arg-type]
    ]
