"""Watchlist reload without a restart: what is applied, what is refused, what waits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.reload import ConfigWatcher
from bot.settings import Settings, load_settings

BASE = """\
sources:
  - {name: a, url: "https://example.org/feed"}
watchlists:
  - name: ukraine
    keywords: [Ukraine]
"""


class Recorder:
    def __init__(self) -> None:
        self.applied: list[Settings] = []

    async def __call__(self, settings: Settings) -> None:
        self.applied.append(settings)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(BASE, encoding="utf-8")
    return path


async def test_a_watchlist_change_is_applied(config: Path) -> None:
    recorder = Recorder()
    watcher = ConfigWatcher(load_settings(config), recorder)
    config.write_text(BASE + "  - {name: nato, keywords: [Nato]}\n", encoding="utf-8")
    assert await watcher.reload()
    [applied] = recorder.applied
    assert [w.name for w in applied.watchlists] == ["ukraine", "nato"]


async def test_an_invalid_file_is_refused_with_its_locations_and_nothing_changes(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    watcher = ConfigWatcher(load_settings(config), recorder)
    config.write_text(BASE.replace("keywords", "keywrods"), encoding="utf-8")
    with caplog.at_level(logging.ERROR, "wirewatch.reload"):
        assert not await watcher.reload()
    assert recorder.applied == []
    assert f"{config}:5:5: watchlists[0]" in caplog.text
    assert "running configuration stays" in caplog.text


async def test_other_sections_wait_for_a_restart(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    watcher = ConfigWatcher(load_settings(config), recorder)
    config.write_text("server: {port: 9999}\n" + BASE, encoding="utf-8")
    with caplog.at_level(logging.WARNING, "wirewatch.reload"):
        assert await watcher.reload()
    assert recorder.applied == []
    assert "changes to server take effect at the next restart" in caplog.text


async def test_a_saved_file_is_noticed_without_a_signal(config: Path) -> None:
    recorder = Recorder()
    watcher = ConfigWatcher(load_settings(config), recorder, check_every=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.1)
    config.write_text(BASE + "  - {name: nato, keywords: [Nato]}\n", encoding="utf-8")
    for _ in range(100):
        if recorder.applied:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert [w.name for w in recorder.applied[0].watchlists] == ["ukraine", "nato"]


async def test_a_signal_reloads_at_once(config: Path) -> None:
    recorder = Recorder()
    watcher = ConfigWatcher(load_settings(config), recorder, check_every=60)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    config.write_text(BASE + "  - {name: nato, keywords: [Nato]}\n", encoding="utf-8")
    watcher.request()
    for _ in range(100):
        if recorder.applied:
            break
        await asyncio.sleep(0.02)
    stop.set()
    watcher.request()  # wake it so it sees stop without waiting a minute
    await task
    assert len(recorder.applied) == 1


async def test_a_change_already_applied_elsewhere_is_not_applied_again(config: Path) -> None:
    """A chat command writes the file and applies it itself; the watcher then sees the save."""
    recorder = Recorder()
    edited = BASE + "  - {name: nato, keywords: [Nato]}\n"
    config.write_text(edited, encoding="utf-8")
    running = load_settings(config)  # what the app already runs after the chat command
    config.write_text(BASE, encoding="utf-8")
    watcher = ConfigWatcher(load_settings(config), recorder, running=lambda: running)
    config.write_text(edited, encoding="utf-8")
    assert await watcher.reload()
    assert recorder.applied == []
