"""Watchlist changes in the YAML file take effect without a restart: on SIGHUP, or when the file
changes on disk (checked every few seconds, so an editor's save is enough).

The new file is validated exactly as `wirewatch check` would; if it is invalid, its problems are
logged with their FILE:LINE:COL and the running configuration stays. Watchlists (terms, routes,
titles) are applied at once; a change to any other section is reported as needing a restart,
rather than half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("wirewatch.reload")

# How often the file is looked at. Cheap: one stat; the file is read only when that changed.
CHECK_EVERY_SECONDS = 2.0


class ConfigWatcher:
    def __init__(
        self,
        settings: Settings,
        apply_watchlists: Callable[[Settings], Awaitable[None]],
        check_every: float = CHECK_EVERY_SECONDS,
        *,
        running: Callable[[], Settings] | None = None,
    ) -> None:
        """`running` gives the settings in force now, when something else also applies changes
        (chat commands write the file and apply it themselves): the file is then compared with
        what runs, not with what this watcher last read, so such a change is not applied twice."""
        self._path = settings.path
        self._current = settings
        self._running = running or (lambda: self._current)
        self._apply = apply_watchlists
        self._check_every = check_every
        self._wanted = asyncio.Event()
        self._seen = _fingerprint(self._path)

    def request(self) -> None:
        """Ask for a reload now (the SIGHUP handler)."""
        self._wanted.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Reload when asked or when the file changed, until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=self._check_every)
            asked = self._wanted.is_set()
            self._wanted.clear()
            seen = _fingerprint(self._path)
            if asked or seen != self._seen:
                self._seen = seen
                await self.reload()

    async def reload(self) -> bool:
        """Read the file again and apply its watchlists; False (and nothing applied) if invalid."""
        try:
            new = load_settings(self._path)
        except SettingsError as error:
            log.error(
                "%s was not reloaded; the running configuration stays:\n%s", self._path, error
            )
            return False
        current = self._running()
        others = _changed_sections(current, new)
        if others:
            log.warning(
                "%s: changes to %s take effect at the next restart",
                self._path,
                ", ".join(others),
            )
        if new.watchlists != current.watchlists:
            await self._apply(new)
            log.info("%s: watchlists reloaded (%d)", self._path, len(new.watchlists))
        self._current = new
        return True


def _changed_sections(old: Settings, new: Settings) -> list[str]:
    fields = [name for name in Settings.model_fields if name not in {"watchlists", "path"}]
    return [name for name in fields if getattr(old, name) != getattr(new, name)]


def _fingerprint(path: Path) -> tuple[int, int] | None:
    """Size and modification time: a save changes them. A touch that changes nothing costs one
    reload that finds the same watchlists and applies nothing."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns
