"""A watchlist's `chats`: bare ids keep working, mappings add topic, time zone and link preview,
and mistakes are reported at their line like every other config problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ChatRoute, SettingsError, load_settings

HEAD = """\
sources:
  - {name: s, url: "https://example.org/feed.xml"}
watchlists:
  - name: w
    keywords: [x]
"""


def load(tmp_path: Path, chats: str) -> tuple[ChatRoute, ...]:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"    chats: {chats}\n", encoding="utf-8")
    return load_settings(path, {}).watchlists[0].chats


def problems(tmp_path: Path, chats: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, chats)
    return [str(problem) for problem in caught.value.problems]


def test_bare_ids_and_mappings_mix(tmp_path: Path) -> None:
    routes = load(
        tmp_path,
        "[222, {chat: -100123, thread: 7, timezone: Europe/Kyiv, link_preview: below}]",
    )
    assert routes == (
        ChatRoute(chat=222),
        ChatRoute(chat=-100123, thread=7, timezone="Europe/Kyiv", link_preview="below"),
    )
    assert routes[0] == ChatRoute(chat=222, thread=None, timezone="UTC", link_preview="off")


@pytest.mark.parametrize(
    ("chats", "message"),
    [
        ('["@channel"]', 'chats[0]: expected an integer, got "@channel"'),
        ("[true]", "chats[0]: expected an integer, got true"),
        ("[{chat: 1, timezone: Mars/Olympus}]", 'unknown time zone "Mars/Olympus"'),
        ("[{chat: 1, link_preview: maybe}]", "expected one of off, above, below"),
        ("[{thread: 3}]", 'missing required key "chat"'),
        ("[{chat: 1, mode: digest}]", "mode: digest needs a schedule"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, chats: str, message: str) -> None:
    found = problems(tmp_path, chats)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'c.yaml'}:6:")
    assert message in found[0]
