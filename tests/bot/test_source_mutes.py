"""Muting a source (an outlet) per chat: the button's callback data, the store, silent delivery of
single alerts and digests, and the whole round trip of the buttons and /mute source, /unmute and
/status through python-telegram-bot's real stack against the fake Bot API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.commands import MUTE_USAGE, UNMUTE_USAGE, ChatCommands, status_text
from bot.delivery import Deliverer, route_table
from bot.mutes import ActiveMute, Mutes, button_data, parse_button_data
from bot.ratelimit import Limits, Throttle
from bot.settings import Settings, WatchlistSettings, load_settings
from bot.store import Store
from bot.telegram import SendOptions, TelegramSender
from feeds.models import Article, Match, TermHit
from tests.bot.test_delivery import T0, FakeTime, ScriptedSender, direct
from tests.support.fake_telegram import FakeTelegram

CONFIG = """\
telegram:
  admins: [1]
sources:
  - {name: wire, title: Wire Service, url: "https://example.org/wire.xml"}
  - {name: daily, url: "https://example.org/daily.xml"}
watchlists:
  - {name: ukraine, keywords: [Ukraine], sources: [wire, daily], chats: [5, 6]}
  - {name: source, keywords: [sources], chats: [5]}
"""


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + f"database: {store_url}\n", encoding="utf-8")
    return load_settings(path, {})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.database) as opened:
        yield opened


# ── the callback data ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("kind", "name", "data"),
    [
        ("watchlist", "ukraine", "mute:ukraine"),  # as on alerts already in chats
        ("source", "wire", "mutesrc:wire"),
        ("source", "a" * 56, "mutesrc:" + "a" * 56),  # exactly 64 bytes
        ("source", "a" * 57, None),  # 65 bytes: Telegram would refuse the whole message
        ("watchlist", "w" * 70, None),
        ("source", "Wire", None),  # not a name the configuration accepts
        ("source", "", None),
        ("source", "a:b", None),
    ],
)
def test_button_data(kind: Any, name: str, data: str | None) -> None:
    assert button_data(kind, name) == data
    if data is not None:
        assert parse_button_data(data) == (kind, name)


@pytest.mark.parametrize(
    "data",
    ["mutesrc:", "mutesrc:Wire", "mutesrc:a:b", "mute:", "mute:x y", "mutes:wire", "other:wire",
     "mutesrc:" + "a" * 57],
)  # fmt: skip
def test_anything_else_is_not_a_mute_button(data: str) -> None:
    assert parse_button_data(data) is None


def test_a_mute_silences_by_watchlist_or_by_source_in_its_chat_only() -> None:
    mutes = Mutes(watchlists=frozenset({(5, "ukraine")}), sources=frozenset({(5, "wire")}))
    assert mutes.silences(5, "ukraine", "daily")
    assert mutes.silences(5, "energy", "wire")
    assert not mutes.silences(5, "energy", "daily")
    assert not mutes.silences(6, "ukraine", "wire")


# ── the store ───────────────────────────────────────────────────────────────────────────────────


def test_source_mutes_expire_are_per_chat_and_can_be_ended(store: Store) -> None:
    store.mute_source(5, "wire", T0 + timedelta(hours=1))
    store.mute_source(6, "daily", T0 + timedelta(hours=2))
    store.mute(5, "ukraine", T0 + timedelta(minutes=30))
    assert store.mutes(T0) == Mutes(
        watchlists=frozenset({(5, "ukraine")}), sources=frozenset({(5, "wire"), (6, "daily")})
    )
    assert store.active_mutes(5, T0) == [
        ActiveMute("watchlist", "ukraine", T0 + timedelta(minutes=30)),
        ActiveMute("source", "wire", T0 + timedelta(hours=1)),
    ]
    assert store.mutes(T0 + timedelta(hours=1)).sources == {(6, "daily")}  # wire's ended
    store.mute_source(6, "daily", T0 + timedelta(minutes=5))  # a new mute replaces the old one
    assert store.mutes(T0 + timedelta(minutes=5)).sources == {(5, "wire")}
    assert store.unmute_source(5, "daily") == 0
    assert store.unmute_source(5) == 1
    assert store.unmute(5) == 1  # watchlist mutes are kept apart
    assert store.mutes(T0) == Mutes(sources=frozenset({(6, "daily")}))


# ── delivery ────────────────────────────────────────────────────────────────────────────────────


def queue(store: Store, source: str, title: str, chats: list[int], at: datetime) -> None:
    article = Article(url=f"https://news.test/{title}", title=title, paragraphs=("x",), html="")
    match = Match("ukraine", (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches(source, title, article, [match], {"ukraine": chats}, at)


async def test_a_digest_is_silent_only_when_every_alert_in_it_is_muted(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeTime()
    watchlist = WatchlistSettings.model_validate(
        {"name": "ukraine", "keywords": ["x"], "chats": [{"chat": 5, "schedule": "hourly"}, 6]}
    )
    sender = ScriptedSender(clock)
    deliverer = Deliverer(
        store, sender, "sent", watchlist_titles={}, source_titles={}, routes=route_table(
            [watchlist]), clock=clock.now, throttle=clock.throttle(), blocking=direct,
    )  # fmt: skip
    store.mute_source(5, "wire", T0 + timedelta(hours=3))
    store.mute_source(6, "wire", T0 + timedelta(hours=3))
    clock.seconds = 300
    queue(store, "wire", "w1", [5, 6], clock.now())
    queue(store, "wire", "w2", [5], clock.now())
    clock.seconds = 3600  # the hourly digest is due
    await deliverer.deliver()
    sent = {chat: (text, options.silent) for chat, text, _, options in sender.sent if options}
    assert sent[6][1] is True  # the instant route: a single alert, silent
    assert sent[5][0].startswith("<b>Digest</b>") and sent[5][1] is True  # wire's alerts only
    queue(store, "wire", "w3", [5], clock.now())
    queue(store, "daily", "d1", [5], clock.now())
    clock.seconds = 7200
    await deliverer.deliver()
    assert len(sender.sent) == 3
    chat, text, _, options = sender.sent[-1]
    assert chat == 5 and text.startswith("<b>Digest</b>")
    assert options is not None and options.silent is False  # daily's alert makes it sound


async def test_a_mute_is_read_when_the_alert_is_sent(store: Store) -> None:
    clock = FakeTime()
    sender = ScriptedSender(clock)
    deliverer = Deliverer(
        store, sender, "sent", watchlist_titles={}, source_titles={}, clock=clock.now,
        throttle=clock.throttle(), blocking=direct,
    )  # fmt: skip
    store.mute_source(5, "wire", T0 + timedelta(minutes=10))
    queue(store, "wire", "queued-while-muted", [5], clock.now())
    clock.seconds = 600  # the mute has ended by the time it goes
    await deliverer.deliver()
    [(chat, _, _, options)] = sender.sent
    assert chat == 5 and options is not None and options.silent is False
    assert options.mute_source == "wire" and options.mute_watchlist == "ukraine"


# ── the whole round trip through PTB and the fake Bot API ────────────────────────────────────────


class Clock:
    """The moment the commands and the deliverer both see; tests move it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def answered(api: FakeTelegram, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        answers = [params for method, params in api.calls if method == "answerCallbackQuery"]
        if len(answers) >= count:
            return answers
        assert time.monotonic() < deadline, "no answer to the button"
        await asyncio.sleep(0.05)


async def replies(api: FakeTelegram, chat: int, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(api.replies(chat)) < count:
        assert time.monotonic() < deadline, f"no reply in chat {chat}"
        await asyncio.sleep(0.05)
    return api.replies(chat)


def alerts(api: FakeTelegram) -> list[tuple[int, str, bool]]:
    """(chat, headline, silent) of every alert sent, oldest first."""
    found = []
    for message in api.sent:
        text = message.text
        if "news.test" in text:
            headline = text.split("news.test/", 1)[1].split('"', 1)[0]
            silent = bool(message.params.get("disable_notification"))
            found.append((int(message.chat_id), headline, silent))
    return found


async def test_the_source_button_mutes_that_source_in_that_chat_until_the_time_passes(
    settings: Settings, store: Store
) -> None:
    clock = Clock()
    with FakeTelegram() as api:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store, clock=clock
        )
        sender = TelegramSender(api.token, api.base_url, timeout=5)
        deliverer = Deliverer(
            store,
            sender,
            "sent",
            watchlist_titles={},
            source_titles={source.name: source.title for source in settings.sources},
            clock=clock,
            throttle=Throttle(Limits(per_chat_window=0.01, chat_margin=0.0)),
        )
        assert await commands.start()
        await sender.start()
        try:
            queue(store, "wire", "first", [5], clock())
            await deliverer.deliver()
            [alert] = api.sent
            keyboard = alert.params["reply_markup"]["inline_keyboard"]
            assert keyboard[1] == [
                {"text": "🔕 Mute Wire Service 1h", "callback_data": "mutesrc:wire"}
            ]  # the outlet's title on the button, its name in the data
            assert keyboard[0][1]["callback_data"] == "mute:ukraine"

            api.press_button(keyboard[1][0]["callback_data"], user_id=77, chat_id=5)
            [answer] = await answered(api, 1)  # user 77 is no admin: anyone may mute a chat
            assert answer["text"] == (
                "Alerts from Wire Service (wire) arrive silently until 1 Mar 2026 13:00 UTC."
            )

            queue(store, "wire", "wire-muted", [5, 6], clock())
            queue(store, "daily", "daily-loud", [5], clock())
            await deliverer.deliver()
            clock.now += timedelta(minutes=59)
            queue(store, "wire", "wire-still-muted", [5], clock())
            await deliverer.deliver()
            clock.now += timedelta(minutes=1)  # the hour is up
            queue(store, "wire", "wire-loud-again", [5], clock())
            await deliverer.deliver()
            sent = alerts(api)[1:]  # chats are sent to independently: compare each one's
            assert [(headline, silent) for chat, headline, silent in sent if chat == 5] == [
                ("wire-muted", True),
                ("daily-loud", False),  # another source: unaffected
                ("wire-still-muted", True),
                ("wire-loud-again", False),
            ]
            assert [(h, silent) for chat, h, silent in sent if chat == 6] == [
                ("wire-muted", False)  # another chat: unaffected
            ]
            assert store.alert_counts().get("sent") == 6  # none held back or dropped
        finally:
            await sender.stop()
            await commands.stop()


async def test_bad_or_stale_buttons_change_nothing(settings: Settings, store: Store) -> None:
    with FakeTelegram() as api:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store, clock=Clock()
        )
        assert await commands.start()
        try:
            api.press_button("mutesrc:Wire!", user_id=5, chat_id=5)
            api.press_button("mutesrc:gone", user_id=5, chat_id=5)
            first, second = await answered(api, 2)
            assert first["text"] == "This button is not understood; nothing changed."
            assert second["text"] == "There is no source named gone any more."
            assert store.mutes(T0) == Mutes()
        finally:
            await commands.stop()


async def test_mute_source_status_and_unmute_round_trip(settings: Settings, store: Store) -> None:
    clock = Clock()
    with FakeTelegram() as api:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store, clock=clock
        )
        assert await commands.start()
        script = [
            ("/mute source wire 2h",
             "Alerts from Wire Service (wire) will arrive silently until 1 Mar 2026 14:00 UTC."),
            ("/mute source 1h", "source alerts will arrive silently until 1 Mar 2026 13:00 UTC."),
            # Two words are always WATCHLIST DURATION, and this config has a watchlist "source":
            ("/mute source daily",
             'Nothing changed: bad duration "daily" (use e.g. 30s, 10m, 1h, 1d).'),
            ("/mute wire", MUTE_USAGE),
            ("/mute source nope 1h", "There is no source named nope (try one of: wire, daily)."),
            ("/mute source wire forever",
             'Nothing changed: bad duration "forever" (use e.g. 30s, 10m, 1h, 1d).'),
            ("/status", None),
            ("/unmute source wire", "Alerts from wire make a sound again."),
            ("/unmute source wire", "Source wire was not muted here."),
            ("/unmute source wire now", UNMUTE_USAGE),
            ("/unmute", "Alerts make a sound again."),  # the watchlist called "source"
            ("/unmute", "Nothing was muted here."),
        ]  # fmt: skip
        try:
            for number, (command, expected) in enumerate(script, start=1):
                api.send_command(command, user_id=5)
                reply = (await replies(api, 5, number))[-1]
                if expected is not None:
                    assert reply == expected, command
                if command == "/mute source wire 2h":
                    assert store.mutes(clock()).sources == {(5, "wire")}
                    assert store.mutes(clock() + timedelta(hours=2)).sources == set()
                if command == "/status":
                    assert reply.endswith(
                        "Muted here (alerts arrive silently):\n"
                        "- watchlist source until 1 Mar 2026 13:00 UTC\n"
                        "- source wire until 1 Mar 2026 14:00 UTC"
                    )
            assert store.mutes(clock()) == Mutes()
        finally:
            await commands.stop()


def test_status_lists_no_mutes_when_there_are_none() -> None:
    assert "Muted" not in status_text([], {})


async def test_a_source_name_too_long_for_callback_data_gets_no_button() -> None:
    with FakeTelegram() as api:
        sender = TelegramSender(api.token, api.base_url, timeout=5)
        await sender.start()
        try:
            await sender.send(42, "x", SendOptions(mute_source="s" * 57, source_title="Long"))
            await sender.send(42, "y", SendOptions(mute_source="s" * 56, source_title="T" * 60))
        finally:
            await sender.stop()
        first, second = api.sent
        assert "reply_markup" not in first.params
        [[button]] = second.params["reply_markup"]["inline_keyboard"]
        assert button["callback_data"] == "mutesrc:" + "s" * 56  # 64 bytes: allowed
        assert len(button["text"]) <= 40 and button["text"].endswith("…")  # a long title clipped
