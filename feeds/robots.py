"""robots.txt for article pages: fetched once per site, remembered for a while, obeyed.

Feeds are published to be polled, so they are not checked (as every feed reader does); the
article pages we fetch for their full text are crawling in the robots.txt sense, so they are.

What an answer means follows RFC 9309 §2.3.1: a 2xx body is parsed (by the standard library's
`urllib.robotparser`, which reads the format well); a 4xx means there are no rules (allow all); a
5xx or a network failure means the site is unreachable, and everything is disallowed until the
shorter `retry_after_error` has passed. Redirects are followed (up to the fetcher's cap).
"""

from __future__ import annotations

import asyncio
import time
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from feeds.errors import FetchError, FetchErrorKind
from feeds.fetch import FetchLimits, fetch
from feeds.models import FetchResult
from feeds.politeness import RequestGate

__all__ = ["RobotsCache"]

_MAX_ROBOTS_BYTES = 512 * 1024
"""RFC 9309 asks crawlers to read at least 500 KiB; a larger file is read as having no rules."""


_DEFAULT_LIMITS = FetchLimits()


@dataclass(slots=True)
class _Entry:
    parser: urllib.robotparser.RobotFileParser | None
    """None: the site was unreachable, everything is disallowed until `expires`."""
    expires: float


class RobotsCache:
    """`await robots.allowed(url)` before fetching an article page."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        user_agent: str,
        *,
        limits: FetchLimits = _DEFAULT_LIMITS,
        gate: RequestGate | None = None,
        keep_for: float = 24 * 3600,
        retry_after_error: float = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._agent = user_agent.split("/", 1)[0]
        """Rules name a crawler by its product token ("wirewatch"), not the whole User-Agent."""
        self._limits = FetchLimits(
            connect_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
            total_timeout=limits.total_timeout,
            max_bytes=_MAX_ROBOTS_BYTES,
            max_redirects=limits.max_redirects,
        )
        self._gate = gate
        self._keep_for = keep_for
        self._retry_after_error = retry_after_error
        self._clock = clock
        self._sites: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        origin = urlunsplit((parts.scheme, parts.netloc.lower(), "", "", ""))
        entry = await self._entry(origin)
        if entry.parser is None:
            return False
        return entry.parser.can_fetch(self._agent, url)

    async def _entry(self, origin: str) -> _Entry:
        # One load per site at a time: fifty pages of one site need one robots.txt request.
        lock = self._loading.setdefault(origin, asyncio.Lock())
        async with lock:
            entry = self._sites.get(origin)
            if entry is None or entry.expires <= self._clock():
                entry = self._sites[origin] = await self._load(origin)
            return entry

    async def _load(self, origin: str) -> _Entry:
        parser = urllib.robotparser.RobotFileParser()
        try:
            result = await fetch(
                self._client,
                origin + "/robots.txt",
                limits=self._limits,
                accept="text/plain, */*;q=0.1",
                gate=self._gate,
            )
        except FetchError as error:
            status = error.status or 0
            if error.kind is FetchErrorKind.HTTP_STATUS and 400 <= status < 500:
                parser.parse([])  # no rules: everything allowed
                return _Entry(parser, self._clock() + self._keep_for)
            if error.kind is FetchErrorKind.TOO_LARGE:
                parser.parse([])
                return _Entry(parser, self._clock() + self._keep_for)
            return _Entry(None, self._clock() + self._retry_after_error)
        body = result.content if isinstance(result, FetchResult) else b""
        parser.parse(body.decode("utf-8", "replace").splitlines())
        return _Entry(parser, self._clock() + self._keep_for)
