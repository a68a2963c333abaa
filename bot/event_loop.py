"""The event loop `wirewatch run` runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's API) makes the embedded feed server answer about 30% more requests
per second on one core (bench/serve), and it is a drop-in loop for everything else the bot runs
(httpx, python-telegram-bot, APScheduler, signal handlers). Nothing else changes: code written for
asyncio runs unchanged on either loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Like :func:`asyncio.run`, on uvloop when available."""
    try:
        import uvloop
    except ImportError:  # not built for this platform: asyncio's loop works the same, slower
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
