"""Watchlist edits from chat: comments and order survive, a bad edit writes nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from bot import config_edit
from bot.config_edit import (
    ConfigEditError,
    add_term,
    move_chat,
    remove_term,
    subscribe,
    unsubscribe,
)
from bot.settings import ChatRoute, Settings, SettingsError, load_settings
from bot.source_config import NewSource, add_sources

CONFIG = """\
# wirewatch configuration (this comment must survive)
telegram:
  token: ${TELEGRAM_BOT_TOKEN:-}   # from the environment
sources:
  - {name: wire, url: "https://example.org/wire.xml"}
watchlists:
  - name: ukraine          # the main one
    keywords: [Ukraine, "Jake Sullivan"]
    exclude: [football]
    chats: [222]
  - name: energy
    keywords:
      - Nord Stream        # pipeline
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_add_term_keeps_comments_order_and_variables(config: Path) -> None:
    settings = add_term(config, "ukraine", "Kyiv", {})
    assert settings.watchlists[0].keywords == ("Ukraine", "Jake Sullivan", "Kyiv")
    assert settings.path == config
    assert config.read_text(encoding="utf-8") == CONFIG.replace(
        'keywords: [Ukraine, "Jake Sullivan"]', 'keywords: [Ukraine, "Jake Sullivan", Kyiv]'
    )


def test_add_to_a_block_list(config: Path) -> None:
    add_term(config, "energy", "gas pipeline", {})
    text = config.read_text(encoding="utf-8")
    assert "      - Nord Stream        # pipeline\n      - gas pipeline\n" in text


def test_remove_term_from_any_list(config: Path) -> None:
    settings = remove_term(config, "ukraine", "FOOTBALL", {})
    assert settings.watchlists[0].exclude == ()
    assert "# the main one" in config.read_text(encoding="utf-8")


def test_subscribe_and_unsubscribe_a_topic(config: Path) -> None:
    settings = subscribe(config, "energy", -100, 7, {})
    assert settings.watchlists[1].chats == (ChatRoute(chat=-100, thread=7),)
    assert "    chats: [{chat: -100, thread: 7}]\n" in config.read_text(encoding="utf-8")
    settings = unsubscribe(config, "energy", -100, 7, {})
    assert settings.watchlists[1].chats == ()
    settings = subscribe(config, "ukraine", 333, None, {})
    assert settings.watchlists[0].chats == (ChatRoute(chat=222), ChatRoute(chat=333))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: add_term(p, "nope", "x", {}), "there is no watchlist named nope"),
        (lambda p: add_term(p, "ukraine", "ukraine", {}), "already a keyword of ukraine"),
        (lambda p: remove_term(p, "ukraine", "Kyiv", {}), '"Kyiv" is not a term of ukraine'),
        (lambda p: subscribe(p, "ukraine", 222, None, {}), "this chat already gets ukraine"),
        (lambda p: unsubscribe(p, "energy", 222, None, {}), "this chat does not get energy"),
    ],
)
def test_edits_that_do_not_apply_write_nothing(config: Path, edit: object, message: str) -> None:
    with pytest.raises(ConfigEditError, match=message):
        edit(config)  # type: ignore[operator]
    assert config.read_text(encoding="utf-8") == CONFIG


def test_an_edit_that_breaks_validation_writes_nothing(config: Path) -> None:
    with pytest.raises(SettingsError, match=r"must not be empty|at least 1"):
        remove_term(config, "energy", "Nord Stream", {})  # the last keyword
    assert config.read_text(encoding="utf-8") == CONFIG
    # no temporary file left; the lock file stays (see bot.config_edit)
    assert sorted(p.name for p in config.parent.iterdir()) == [
        ".wirewatch.yaml.lock",
        "wirewatch.yaml",
    ]


def test_move_chat_everywhere_it_is_named(config: Path) -> None:
    subscribe(config, "energy", 222, 4, {})
    settings = move_chat(config, 222, -100999, {})
    assert settings is not None
    assert settings.watchlists[0].chats == (ChatRoute(chat=-100999),)
    assert settings.watchlists[1].chats == (ChatRoute(chat=-100999, thread=4),)
    text = config.read_text(encoding="utf-8")
    assert "    chats: [-100999]\n" in text
    assert "# the main one" in text
    assert move_chat(config, 222, -1, {}) is None  # no longer named: nothing written


def test_topics_of_one_chat_are_separate_routes(config: Path) -> None:
    subscribe(config, "energy", -100, 7, {})
    settings = subscribe(config, "energy", -100, 8, {})  # another topic of the same chat
    assert settings.watchlists[1].chats == (
        ChatRoute(chat=-100, thread=7),
        ChatRoute(chat=-100, thread=8),
    )
    with pytest.raises(ConfigEditError, match="this topic already gets energy"):
        subscribe(config, "energy", -100, 8, {})
    settings = unsubscribe(config, "energy", -100, 8, {})  # topic 8 leaves, topic 7 stays
    assert settings.watchlists[1].chats == (ChatRoute(chat=-100, thread=7),)
    with pytest.raises(ConfigEditError, match="this chat does not get energy"):
        unsubscribe(config, "energy", -100, None, {})  # the main thread never subscribed


def _validation_waits_for_a_second_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the first edit between its read and its replace until a second edit has read the
    file too (or 0.3 s have passed): without the lock that is the lost-update interleaving."""
    real = config_edit.load_settings
    arrived = threading.Semaphore(0)
    calls = iter(range(1_000))

    def waiting(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
        if next(calls) == 0:
            arrived.acquire(timeout=0.3)
        else:
            arrived.release()
        return real(path, environ)

    monkeypatch.setattr(config_edit, "load_settings", waiting)


def _at_once(*edits: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run(edit: Callable[[], object]) -> None:
        try:
            edit()
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(edit,)) for edit in edits]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # the first is inside its edit when the second starts
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []


def test_two_edits_at_once_both_survive(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _validation_waits_for_a_second_edit(monkeypatch)
    _at_once(
        lambda: add_term(config, "ukraine", "Kyiv", {}),
        lambda: subscribe(config, "energy", -100, 7, {}),
    )
    settings = load_settings(config, {})
    assert settings.watchlists[0].keywords == ("Ukraine", "Jake Sullivan", "Kyiv")
    assert settings.watchlists[1].chats == (ChatRoute(chat=-100, thread=7),)


def test_a_source_added_during_a_chat_edit_survives(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _validation_waits_for_a_second_edit(monkeypatch)
    _at_once(
        lambda: add_term(config, "ukraine", "Kyiv", {}),
        lambda: add_sources(config, [NewSource("https://b.example/f", "B News")]),
    )
    settings = load_settings(config, {})
    assert settings.watchlists[0].keywords == ("Ukraine", "Jake Sullivan", "Kyiv")
    assert [source.name for source in settings.sources] == ["wire", "b-news"]


def test_an_edit_waits_for_another_process_holding_the_lock(config: Path) -> None:
    """The lock is a file lock too: a `wirewatch add` in another process and the bot take turns."""
    script = (
        "import sys; from pathlib import Path; from bot.config_edit import config_lock\n"
        "with config_lock(Path(sys.argv[1])):\n"
        "    print('locked', flush=True); sys.stdin.readline()"
    )
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", script, str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline() == "locked\n"
            editing = threading.Thread(target=add_term, args=(config, "ukraine", "Kyiv", {}))
            editing.start()
            editing.join(timeout=0.3)
            assert editing.is_alive()  # waiting for the other process
            assert config.read_text(encoding="utf-8") == CONFIG
            holder.stdin.write("\n")
            holder.stdin.flush()
            editing.join(timeout=10)
            assert not editing.is_alive()
            assert "Kyiv" in config.read_text(encoding="utf-8")
        finally:
            holder.kill()
