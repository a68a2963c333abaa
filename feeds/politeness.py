"""How many requests go out at once, and how close together they reach one host.

Three limits, applied to every request wirewatch makes (feeds, article pages, robots.txt):

- `total`: requests in flight at once, all hosts together (our own bandwidth and sockets);
- `per_host`: requests in flight at once to one host (default 2, what browsers and crawlers
  consider polite);
- `min_delay`: the least time between the starts of two requests to one host, so that a site
  with fifty feeds is visited at a steady pace instead of in a burst.

The delay is kept twice. A slot reserves its start a delay after the previous reservation, so
waiters queue up in order. And every request that goes on the wire (each redirect hop and
resend too) waits, just before it is handed to the HTTP client (`sending`), until the host's
previous request has been written and a delay has passed since (`sent`, from httpcore's trace
hook as the head is written). The second check is what a site sees: a request granted on time
can still leave late, behind an event loop busy with parsing, and without it the next one,
leaving on time, would arrive less than a delay after it (bench/ingest's farm saw 0.93 s gaps
at a 1 s delay); a redirect to the same host would follow at once.

A host is the URL's host name without the port: two ports on one machine are still one machine's
load. Written by hand because the asyncio primitives do it in a few lines and no maintained
library offers per-host spacing without also taking over the HTTP client.

`HostGate` keeps these limits in one process. Fetching code asks only for a `RequestGate` (its
`slot`, `sending` and `sent` methods), so that several processes can share a site's limits
through something outside this pure package (bot.fleet_gate keeps them in the database) without
feeds/ knowing about it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

__all__ = ["HostGate", "RequestGate", "SendSpacing", "host_of"]


class RequestGate(Protocol):
    """Anything that holds a request to `url` until the limits allow it to start."""

    def slot(self, url: str) -> AbstractAsyncContextManager[None]:
        """Entered before the request starts, left when it is done."""
        ...

    async def sending(self, url: str) -> None:
        """Awaited inside the slot before each request to `url` is handed to the HTTP client
        (each redirect hop and resend too); returns once the host may receive it."""
        ...

    def sent(self, url: str) -> None:
        """Called once after each `sending`: when the request's head has been written (the
        moment the next request's delay runs from), or when it failed before that."""
        ...


def host_of(url: str) -> str:
    """The politeness key of a URL: its lower-cased host name ("" when it has none)."""
    return (urlsplit(url).hostname or "").lower()


@dataclass(slots=True)
class _Outgoing:
    written: float
    """When the host's last request was written (or, while one is on its way, let go)."""
    settled: asyncio.Event
    """Set while no request to the host is on its way (between `wait` and `sent`)."""


class SendSpacing:
    """The least time between two requests *written* to one host.

    `wait` lets one request to a host go at a time, once a delay has passed since the previous
    one was written; `sent` records when it was. Until then the next one waits, so a request
    that takes long to get onto the wire (a new connection, a busy event loop) never has the
    next one overtake it or follow it closer than the delay. Kept per process: it sees only
    this process's requests (bot.fleet_gate spaces a fleet's turns in the database and uses this
    for the requests that follow a turn, such as redirects).
    """

    def __init__(
        self,
        min_delay: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._min_delay = min_delay
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _Outgoing] = {}

    async def wait(self, url: str) -> None:
        """Return once a request to `url` may go; call `sent` when it has been written."""
        host = self._hosts.get(host_of(url))
        if host is None:
            host = self._hosts[host_of(url)] = _Outgoing(-math.inf, asyncio.Event())
            host.settled.set()
        while True:  # checked again after every wait: another request may have gone meanwhile
            if not host.settled.is_set():
                await host.settled.wait()
            elif (wait := host.written + self._min_delay - self._clock()) > 0:
                await self._sleep(wait)
            else:
                break
        host.settled.clear()
        host.written = self._clock()

    def sent(self, url: str) -> float:
        """The request `wait` let go has been written (or failed first); returns when."""
        host = self._hosts[host_of(url)]
        host.written = max(host.written, self._clock())
        host.settled.set()
        return host.written


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
        self._spacing = SendSpacing(min_delay, clock=clock, sleep=sleep)

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

    async def sending(self, url: str) -> None:
        await self._spacing.wait(url)

    def sent(self, url: str) -> None:
        written = self._spacing.sent(url)
        host = self._hosts.get(host_of(url))
        if host is not None:
            # A request that left late moves the queue back, so the next waiter is not granted
            # a slot only to wait in `sending` holding a global one.
            host.next_start = max(host.next_start, written + self._min_delay)
