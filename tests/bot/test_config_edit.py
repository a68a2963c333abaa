"""Watchlist edits from chat: comments and order survive, a bad edit writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config_edit import (
    ConfigEditError,
    add_term,
    move_chat,
    remove_term,
    subscribe,
    unsubscribe,
)
from bot.settings import ChatRoute, SettingsError

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
    settings = unsubscribe(config, "energy", -100, {})
    assert settings.watchlists[1].chats == ()
    settings = subscribe(config, "ukraine", 333, None, {})
    assert settings.watchlists[0].chats == (ChatRoute(chat=222), ChatRoute(chat=333))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: add_term(p, "nope", "x", {}), "there is no watchlist named nope"),
        (lambda p: add_term(p, "ukraine", "ukraine", {}), 'already a keyword of ukraine'),
        (lambda p: remove_term(p, "ukraine", "Kyiv", {}), '"Kyiv" is not a term of ukraine'),
        (lambda p: subscribe(p, "ukraine", 222, None, {}), "this chat already gets ukraine"),
        (lambda p: unsubscribe(p, "energy", 222, {}), "this chat does not get energy"),
    ],
)
def test_edits_that_do_not_apply_write_nothing(
    config: Path, edit: object, message: str
) -> None:
    with pytest.raises(ConfigEditError, match=message):
        edit(config)  # type: ignore[operator]
    assert config.read_text(encoding="utf-8") == CONFIG


def test_an_edit_that_breaks_validation_writes_nothing(config: Path) -> None:
    with pytest.raises(SettingsError, match=r"must not be empty|at least 1"):
        remove_term(config, "energy", "Nord Stream", {})  # the last keyword
    assert config.read_text(encoding="utf-8") == CONFIG
    assert [p.name for p in config.parent.iterdir()] == ["wirewatch.yaml"]  # no temp file left


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
