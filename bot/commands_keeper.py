"""Chat commands for as long as this process leads, also when Telegram was unreachable at first.

`ChatCommands.start` gives up (logged) when Telegram cannot be reached, and alerts do not need
commands, so that is not fatal; but a process that leads for months must not stay deaf to
/status and /mute because the network was down the minute it took the lead. The keeper tries
again, one minute later and then doubling up to half an hour, until commands start or the
process stops leading (bot.leader decides, bot.app wires it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .commands import ChatCommands

log = logging.getLogger("wirewatch.commands")

FIRST_RETRY_SECONDS = 60.0
LAST_RETRY_SECONDS = 1800.0


class CommandsKeeper:
    """Starts chat commands when the process takes the lead, and stops them when it steps down."""

    def __init__(
        self,
        start: Callable[[], Awaitable[ChatCommands | None]],
        *,
        first_retry: float = FIRST_RETRY_SECONDS,
        last_retry: float = LAST_RETRY_SECONDS,
    ) -> None:
        self._start = start
        self._first_retry = first_retry
        self._last_retry = last_retry
        self._running: ChatCommands | None = None
        self._keeping: asyncio.Task[None] | None = None
        self._stepped_down = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._running is not None

    def lead(self) -> None:
        self._stepped_down.clear()
        if self._keeping is None or self._keeping.done():
            self._keeping = asyncio.create_task(self._keep())

    async def follow(self) -> None:
        """Step down: no more attempts, and the commands stop. An attempt in progress is let
        finish (a cancelled start could leave Telegram's long poll half set up)."""
        self._stepped_down.set()
        if self._keeping is not None:
            await self._keeping
            self._keeping = None
        if self._running is not None:
            running, self._running = self._running, None
            await running.stop()

    async def _keep(self) -> None:
        wait = self._first_retry
        while not self._stepped_down.is_set():
            started = await self._start()
            if started is not None:
                self._running = started
                return
            log.warning("bot commands: trying to start them again in %.0f s", wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stepped_down.wait(), timeout=wait)
            wait = min(wait * 2, self._last_retry)
