"""Chat commands: the replies as pure functions, and the whole round trip through getUpdates long
polling and python-telegram-bot's Application against the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from telegram.error import NetworkError

from bot.commands import (
    COMMANDS,
    MUTE_USAGE,
    REFUSAL,
    UNMUTE_USAGE,
    ChatCommands,
    _log_error,
    help_text,
    latest_text,
    mute_text,
    status_text,
    unmute_text,
    watchlists_text,
)
from bot.commands_keeper import CommandsKeeper
from bot.health import SourceHealth
from bot.settings import ChatRoute, Settings, load_settings
from bot.store import FeedItem, Store, StoredArticle
from bot.telegram import protect_token
from tests.support.fake_telegram import FakeTelegram

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = """\
telegram:
  admins: [1]       # the only admin
sources:
  - {name: wire, url: "https://example.org/wire.xml"}
watchlists:
  - {name: ukraine, title: Ukraine crisis, keywords: [Ukraine, Kyiv], chats: [5]}
  - {name: energy, keywords: [Nord Stream], exclude: [football], chats: [{chat: -100, thread: 3}]}
"""


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + f"database: sqlite:///{tmp_path / 'db.sqlite3'}\n", encoding="utf-8")
    return load_settings(path, {})


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.database) as opened:
        yield opened


def health(name: str, status: str, error: str | None = None) -> SourceHealth:
    return SourceHealth(
        name=name,
        url="https://example.org/x.xml",
        status=status,
        last_success_at=None,
        next_poll_at=None,
        failure_streak=1 if error else 0,
        last_error=error,
        last_error_kind=None,
        disabled_reason=None,
        not_modified_share=None,
        articles_per_day=0.0,
        last_article_at=None,
        rhythm=None,
    )


def test_help_lists_every_command() -> None:
    text = help_text()
    for name, description in COMMANDS:
        assert f"/{name} - {description}" in text


def test_watchlists_mark_the_ones_for_this_chat(settings: Settings) -> None:
    text = watchlists_text(settings, 5)
    assert "🔔 ukraine (Ukraine crisis): Articles mentioning Ukraine or Kyiv" in text
    assert "\nenergy (energy): Articles mentioning Nord Stream, not football" in text
    assert "🔔 energy" in watchlists_text(settings, -100)


@pytest.mark.parametrize(
    ("rows", "outbox", "expected"),
    [
        ([], {}, "Sources: none\nAlerts: 0 waiting, 0 sent, 0 failed, 0 outcome unknown"),
        (
            [health("a", "ok"), health("b", "failing", "HTTP 503"), health("c", "ok")],
            {"pending": 3, "sent": 10, "logged": 2, "unknown": 1},
            "Sources: 1 failing, 2 ok\n- b: failing (HTTP 503)\n"
            "Alerts: 3 waiting, 12 sent, 0 failed, 1 outcome unknown",
        ),
    ],
)
def test_status_text(rows: list[SourceHealth], outbox: dict[str, int], expected: str) -> None:
    assert status_text(rows, outbox) == expected


def test_a_long_reply_is_cut_at_a_line() -> None:
    rows = [health(f"source-{n}", "failing", "x" * 80) for n in range(100)]
    text = status_text(rows, {})
    assert len(text) <= 4096
    assert text.endswith("\n…")


async def wait_for_reply(api: FakeTelegram, chat: int, count: int = 1) -> list[str]:
    deadline = time.monotonic() + 10
    while len(api.replies(chat)) < count:
        assert time.monotonic() < deadline, f"no reply in chat {chat}"
        await asyncio.sleep(0.05)
    return api.replies(chat)


async def test_commands_round_trip_through_long_polling(settings: Settings, store: Store) -> None:
    with FakeTelegram() as api:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store, clock=lambda: NOW
        )
        assert await commands.start()
        try:
            registered = [params for method, params in api.calls if method == "setMyCommands"]
            assert [c["command"] for c in registered[0]["commands"]] == [n for n, _ in COMMANDS]

            api.send_command("/watchlists", user_id=5)
            [reply] = await wait_for_reply(api, 5)
            assert reply == watchlists_text(settings, 5)

            api.forums[-100] = {3}
            api.send_command("/status@wirewatch_test_bot", user_id=7, chat_id=-100, thread_id=3)
            [status] = await wait_for_reply(api, -100)
            assert status.startswith("Sources: 1 new\n")
            topic_reply = next(m for m in api.sent if m.chat_id == -100)
            assert topic_reply.params["message_thread_id"] == 3  # answered in the same topic
            assert topic_reply.parse_mode is None

            api.send_command("hello", user_id=5)  # not a command: no answer
            api.send_command("/help", user_id=5)
            replies = await wait_for_reply(api, 5, 2)
            assert replies[1] == help_text()
        finally:
            started = time.monotonic()
            await commands.stop()
            assert time.monotonic() - started < 3  # the open long poll does not hold the stop


async def test_commands_are_skipped_when_telegram_is_unreachable(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = FakeTelegram()
    api.start()
    base_url = api.base_url
    api.stop()
    commands = ChatCommands(
        api.token, base_url, settings=lambda: settings, store=store, clock=lambda: NOW
    )
    assert await commands.start() is False
    await commands.stop()
    assert "bot commands could not start" in caplog.text
    assert api.token not in caplog.text


async def test_admins_edit_watchlists_from_chat_and_others_are_refused(
    settings: Settings, store: Store
) -> None:
    applied: list[Settings] = []

    async def apply(changed: Settings) -> None:
        applied.append(changed)

    current = [settings]
    before = settings.path.read_text(encoding="utf-8")
    with FakeTelegram() as api:
        api.forums[-100] = {9}
        commands = ChatCommands(
            api.token,
            api.base_url,
            settings=lambda: current[0],
            store=store,
            clock=lambda: NOW,
            on_change=apply,
        )
        assert await commands.start()
        try:
            api.send_command("/add ukraine Jake Sullivan", user_id=2)  # not an admin
            [refused] = await wait_for_reply(api, 2)
            assert refused == REFUSAL
            assert settings.path.read_text(encoding="utf-8") == before
            assert applied == []

            api.send_command("/add ukraine Jake Sullivan", user_id=1)
            [added] = await wait_for_reply(api, 1)
            assert added == 'ukraine now also watches "Jake Sullivan".'
            assert applied[-1].watchlists[0].keywords == ("Ukraine", "Kyiv", "Jake Sullivan")
            current[0] = applied[-1]
            assert "admins: [1]       # the only admin" in settings.path.read_text("utf-8")

            api.send_command("/subscribe ukraine", user_id=1, chat_id=-100, thread_id=9)
            [subscribed] = await wait_for_reply(api, -100)
            assert subscribed == "ukraine alerts now come here."
            assert applied[-1].watchlists[0].chats[-1] == ChatRoute(chat=-100, thread=9)
            current[0] = applied[-1]

            api.send_command("/remove ukraine Odesa", user_id=1)
            api.send_command("/remove", user_id=1)
            replies = await wait_for_reply(api, 1, 3)
            assert replies[1] == 'Nothing changed: "Odesa" is not a term of ukraine.'
            assert replies[2] == "Usage: /remove WATCHLIST TERM"
            assert len(applied) == 2
        finally:
            await commands.stop()


async def test_unsubscribe_from_one_topic_leaves_the_other(
    settings: Settings, store: Store
) -> None:
    applied: list[Settings] = []

    async def apply(changed: Settings) -> None:
        applied.append(changed)

    with FakeTelegram() as api:
        api.forums[-100] = {3, 9}
        commands = ChatCommands(
            api.token,
            api.base_url,
            settings=lambda: applied[-1] if applied else settings,
            store=store,
            clock=lambda: NOW,
            on_change=apply,
        )
        assert await commands.start()
        try:
            api.send_command("/unsubscribe energy", user_id=1, chat_id=-100, thread_id=9)
            [refused] = await wait_for_reply(api, -100)
            assert refused == "Nothing changed: this topic does not get energy."
            assert applied == []  # topic 3's route is still there

            api.send_command("/subscribe energy", user_id=1, chat_id=-100, thread_id=9)
            await wait_for_reply(api, -100, 2)
            api.send_command("/unsubscribe energy", user_id=1, chat_id=-100, thread_id=3)
            replies = await wait_for_reply(api, -100, 3)
            assert replies[1:] == [
                "energy alerts now come here.",
                "energy alerts no longer come here.",
            ]
            assert applied[-1].watchlists[1].chats == (ChatRoute(chat=-100, thread=9),)
        finally:
            await commands.stop()


async def test_a_failed_command_is_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "123456:secret-part-of-the-token"
    protect_token(token)
    error = NetworkError(f"httpx.ConnectError: https://api.telegram.org/bot{token}/getUpdates")
    caplog.set_level(logging.WARNING, logger="wirewatch.commands")
    await _log_error(None, SimpleNamespace(error=error))  # type: ignore[arg-type]
    [record] = [r for r in caplog.records if r.name == "wirewatch.commands"]
    assert "secret-part-of-the-token" not in caplog.text
    assert record.getMessage() == (
        "a command failed: httpx.ConnectError: https://api.telegram.org/bot<token>/getUpdates"
    )


def feed_item(title: str, url: str) -> FeedItem:
    article = StoredArticle(
        id=1,
        source="wire",
        guid=url,
        url=url,
        title=title,
        text="x",
        html="",
        author=None,
        published=NOW,
        fetched_at=NOW,
        updated_at=NOW,
    )
    return FeedItem(article, ("ukraine",), ("ukraine",), "x", NOW)


@pytest.mark.parametrize(
    ("words", "items", "expected"),
    [
        ([], [], "Usage: /latest WATCHLIST (one of: ukraine, energy)"),
        (["nope"], [], "There is no watchlist named nope (try one of: ukraine, energy)."),
        (["energy"], [], "Nothing has matched energy yet."),
        (
            ["ukraine"],
            [feed_item("Talks  in\nKyiv", "https://news.example/1"), feed_item("B", "")],
            "Latest for ukraine:\n• Talks in Kyiv (wire, 1 Mar 2026 12:00 UTC)\n"
            "  https://news.example/1\n• B (wire, 1 Mar 2026 12:00 UTC)",
        ),
    ],
)
def test_latest_text(
    settings: Settings, words: list[str], items: list[FeedItem], expected: str
) -> None:
    asked: list[str] = []

    def lookup(name: str) -> list[FeedItem]:
        asked.append(name)
        return items

    assert latest_text(settings, words, lookup) == expected


@pytest.mark.parametrize(
    ("words", "expected", "recorded"),
    [
        (["ukraine", "2h"], "ukraine alerts will arrive silently until 1 Mar 2026 14:00 UTC.",
         [("watchlist", "ukraine", NOW + timedelta(hours=2))]),
        (["watchlist", "ukraine", "2h"],
         "ukraine alerts will arrive silently until 1 Mar 2026 14:00 UTC.",
         [("watchlist", "ukraine", NOW + timedelta(hours=2))]),
        (["source", "wire", "1d"],
         "Alerts from wire will arrive silently until 2 Mar 2026 12:00 UTC.",
         [("source", "wire", NOW + timedelta(days=1))]),
        (["ukraine"], MUTE_USAGE, []),
        (["source", "wire"], MUTE_USAGE, []),  # no watchlist called "source": no duration
        (["outlet", "wire", "1h"], MUTE_USAGE, []),  # three words need a kind first
        (["source", "wire", "1h", "more"], MUTE_USAGE, []),
        (["nope", "1h"], "There is no watchlist named nope (try one of: ukraine, energy).", []),
        (["source", "bbc", "1h"], "There is no source named bbc (try one of: wire).", []),
        (["source", "ukraine", "1h"], "There is no source named ukraine (try one of: wire).", []),
        (["ukraine", "soon"], 'Nothing changed: bad duration "soon" (use e.g. 30s, 10m, 1h, 1d).',
         []),
        (["ukraine", "90d"], "Nothing changed: a mute lasts from 1m to 30d.", []),
        (["source", "wire", "30s"], "Nothing changed: a mute lasts from 1m to 30d.", []),
    ],
)  # fmt: skip
def test_mute_text(
    settings: Settings,
    words: list[str],
    expected: str,
    recorded: list[tuple[str, str, datetime]],
) -> None:
    mutes: list[tuple[str, str, datetime]] = []
    assert (
        mute_text(settings, words, lambda kind, name, until: mutes.append((kind, name, until)), NOW)
        == expected
    )
    assert mutes == recorded


def test_mute_usage_is_what_help_promises() -> None:
    assert "/mute source SOURCE DURATION" in MUTE_USAGE
    assert dict(COMMANDS)["mute"].startswith("[source] NAME DURATION")


@pytest.mark.parametrize(
    ("words", "ended", "expected", "asked"),
    [
        ([], 2, "Alerts make a sound again.", [(None, None)]),
        ([], 0, "Nothing was muted here.", [(None, None)]),
        (["ukraine"], 1, "ukraine alerts make a sound again.", [("watchlist", "ukraine")]),
        (["ukraine"], 0, "Watchlist ukraine was not muted here.", [("watchlist", "ukraine")]),
        (["watchlist", "ukraine"], 1, "ukraine alerts make a sound again.",
         [("watchlist", "ukraine")]),
        (["source", "wire"], 1, "Alerts from wire make a sound again.", [("source", "wire")]),
        (["source", "wire"], 0, "Source wire was not muted here.", [("source", "wire")]),
        (["source"], 0, f"No watchlist named source was muted here. {UNMUTE_USAGE}",
         [("watchlist", "source")]),
        (["source"], 1, "source alerts make a sound again.", [("watchlist", "source")]),
        (["outlet", "wire"], 1, UNMUTE_USAGE, []),
        (["source", "wire", "now"], 1, UNMUTE_USAGE, []),
    ],
)  # fmt: skip
def test_unmute_text(
    words: list[str], ended: int, expected: str, asked: list[tuple[str | None, str | None]]
) -> None:
    calls: list[tuple[str | None, str | None]] = []

    def unmute(kind: str | None, name: str | None) -> int:
        calls.append((kind, name))
        return ended

    assert unmute_text(words, unmute) == expected
    assert calls == asked


async def test_mute_round_trip(settings: Settings, store: Store) -> None:
    with FakeTelegram() as api:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store, clock=lambda: NOW
        )
        assert await commands.start()
        try:
            api.send_command("/mute ukraine 1h", user_id=5)
            await wait_for_reply(api, 5)
            assert store.muted(NOW) == {(5, "ukraine")}
            api.send_command("/unmute", user_id=5)
            replies = await wait_for_reply(api, 5, 2)
            assert replies[1] == "Alerts make a sound again."
            assert store.muted(NOW) == set()

            api.press_button("mute:energy", user_id=5, chat_id=5)  # the button under an alert
            deadline = time.monotonic() + 10
            while not any(method == "answerCallbackQuery" for method, _ in api.calls):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            [answer] = [params for method, params in api.calls if method == "answerCallbackQuery"]
            assert answer["text"] == "energy alerts arrive silently until 1 Mar 2026 13:00 UTC."
            assert store.muted(NOW + timedelta(minutes=59)) == {(5, "energy")}
            assert store.muted(NOW + timedelta(minutes=60)) == set()
        finally:
            await commands.stop()


async def test_commands_start_later_when_telegram_was_down_as_the_process_took_the_lead(
    settings: Settings, store: Store
) -> None:
    """The keeper tries again (here after 0.1 s, then 0.2 s) until commands start, and a
    process that steps down stops them and tries no more."""
    with FakeTelegram() as api:
        api.fail_next("setMyCommands", 502, "Bad Gateway", times=2)

        async def start() -> ChatCommands | None:
            commands = ChatCommands(
                api.token, api.base_url, settings=lambda: settings, store=store, clock=lambda: NOW
            )
            return commands if await commands.start() else None

        keeper = CommandsKeeper(start, first_retry=0.1, last_retry=0.2)
        keeper.lead()
        try:
            api.send_command("/help", user_id=5)
            [reply] = await wait_for_reply(api, 5)
            assert reply == help_text()
            attempts = [method for method, _ in api.calls if method == "setMyCommands"]
            assert len(attempts) == 3  # two failures, then the start that answered
        finally:
            await keeper.follow()
        assert not keeper.running


async def test_a_process_that_steps_down_stops_trying_to_start_commands(
    settings: Settings, store: Store
) -> None:
    starts = 0

    async def never() -> ChatCommands | None:
        nonlocal starts
        starts += 1
        return None

    keeper = CommandsKeeper(never, first_retry=0.05, last_retry=0.05)
    keeper.lead()
    await asyncio.sleep(0.2)
    await keeper.follow()
    tried = starts
    assert tried >= 2  # it kept trying while leading
    await asyncio.sleep(0.2)
    assert starts == tried  # and stopped when it stepped down
