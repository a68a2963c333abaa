"""How many requests go out at once, and how close together they reach one host.

Three limits, applied to every request wirewatch makes (feeds, article pages, robots.txt):

- `total`: requests in flight at once, all hosts together (our own bandwidth and sockets);
- `per_host`: requests in flight at once to one host (default 2, what browsers and crawlers
  consider polite);
- `min_delay`: the least time between the starts of two requests to one host, so that a site
  with fifty feeds is visited at a steady pace instead of in a burst.

A host is the URL's host name without the port: two ports on one machine are still one machine's
load. Written by hand because the asyncio primitives do it in a few lines and no maintained
library offers per-host spacing without also taking over the HTTP client.

`HostGate` keeps these limits in one process. Fetching code asks only for a `RequestGate` (the
`slot` method), so that several processes can share a site's limits through something outside
this pure package (bot.fleet_gate keeps them in the database) without feeds/ knowing about it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["HostGate", "RequestGate", "host_of"]


class RequestGate(Protocol):
    """Anything that holds a request to `url` until the limits allow it to start."""

    def slot(self, url: str) -> AbstractAsyncContextManager[None]:
        """Entered before the request starts, left when it is done."""
        ...


def host_of(url: str) -> str:
    """The politeness key of a URL: its lower-cased host name ("" when it has none)."""
    return (urlsplit(url).hostname or "").lower()


@dataclass(slots=True)
class _Host:
    slots: asyncio.Semaphore
    next_start: float
    """Monotonic time before which no request to this host may start."""


class HostGate:
    """Hold a slot (`async with gate.slot(url):`) around each request.

    Order matters: a request first takes its host's slot and waits out the host's delay, and only
    then takes one of the global slots, so a request waiting for a busy host never holds a global
    slot that a request to an idle host could use.
    """

    def __init__(
        self,
        *,
        total: int = 8,
        per_host: int = 2,
        min_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if total < 1 or per_host < 1 or min_delay < 0:
            raise ValueError("total and per_host must be at least 1, min_delay at least 0")
        self._global = asyncio.Semaphore(total)
        self._per_host = per_host
        self._min_delay = min_delay
        self._hosts: dict[str, _Host] = {}
        self._clock = clock
        self._sleep = sleep

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = self._hosts.get(host_of(url))
        if host is None:
            host = self._hosts[host_of(url)] = _Host(asyncio.Semaphore(self._per_host), 0.0)
        async with host.slots:
            # Reserve a start time before sleeping, so concurrent waiters queue up one delay
            # apart instead of all waking at the same instant.
            now = self._clock()
            start = max(now, host.next_start)
            host.next_start = start + self._min_delay
            if start > now:
                await self._sleep(start - now)
            async with self._global:
                yield
