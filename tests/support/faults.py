"""Tools for the fault tests (tests/faults): virtual time, scripted feeds, a config writer, a
simulated schedule, a proxy that resets connections, and a database reader for checks.

Why virtual time: "a source fails for an hour, then recovers" and "a day of news" must run in
seconds. The app takes its clock as an argument (`App.clock`), the delivery throttle takes a
clock and a sleep, and `poll_due` below plays the part of bot.scheduler: it polls each source
when the store says it is due (the time the last poll returned), exactly the rule the real
schedule follows, but on the virtual clock.

Why a proxy for resets: a loopback HTTP server answers or closes; a reset (RST) needs the socket
closed with SO_LINGER 0 after the request arrived, which no HTTP server API offers. The proxy
forwards to a SampleSite and, while told to, resets every connection instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import select
import socket
import socketserver
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape

from bot.app import App
from tests.conftest import free_port

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


_SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze",
              "ba", "de", "fi", "go", "hu", "ja", "ke", "li", "mo", "ny")  # fmt: skip
_VOCABULARY = tuple(a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("n", "r", "s"))
"""1,200 made-up words: texts drawn from them never read as the same story by chance."""


class VirtualClock:
    """A settable now: `clock()` for the app, `monotonic()` and `sleep()` for the throttle.

    `sleep` moves time forward instead of waiting, then yields once so other tasks run.
    """

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self._start = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def monotonic(self) -> float:
        return (self.now - self._start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            # At least a microsecond (the clock's grain): a wait of 1e-7 s would otherwise not
            # move time at all, and the throttle would ask again for ever.
            self.now += max(timedelta(seconds=seconds), timedelta(microseconds=1))
        await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class Item:
    guid: str
    title: str
    text: str
    published: datetime


def rss(base_url: str, items: Sequence[Item], title: str = "Feed") -> bytes:
    """An RSS 2.0 document carrying each item's whole text (no article page is needed)."""
    body = "".join(
        f"<item><title>{escape(item.title)}</title><link>{base_url}/a/{item.guid}</link>"
        f'<guid isPermaLink="false">{escape(item.guid)}</guid>'
        f"<pubDate>{format_datetime(item.published)}</pubDate>"
        f"<description>{escape(item.text)}</description></item>"
        for item in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{escape(title)}</title>'
        f"<link>{base_url}/</link><description>d</description>{body}</channel></rss>"
    ).encode()


@dataclass
class NewsFeed:
    """A feed that grows as virtual time passes and keeps its newest `keep` items.

    `publish(n, at)` adds n items; `document(base_url)` is the feed as served now.
    """

    name: str
    keep: int = 50
    keyword: str = "Ukraine"
    items: list[Item] = field(default_factory=list)

    def publish(self, count: int, at: datetime, *, matching: bool = True) -> list[Item]:
        added = []
        for _ in range(count):
            number = len(self.items)
            topic = self.keyword if matching else "the weather"
            # Words drawn per item, so that no two items read as the same story (bot.story_store
            # would alert a near-copy once) yet the whole run stays reproducible.
            draw = random.Random(f"{self.name}-{number}")
            words = " ".join(draw.choice(_VOCABULARY) for _ in range(30))
            text = f"Report {number} from {self.name} about {topic}: {words}."
            item = Item(f"{self.name}-{number}", f"{self.name} story {number}", text, at)
            self.items.append(item)
            added.append(item)
        return added

    def visible(self) -> list[Item]:
        """The items a poll sees now: the newest `keep`, newest first."""
        return list(reversed(self.items[-self.keep :]))

    def document(self, base_url: str) -> bytes:
        return rss(base_url, self.visible(), self.name)


def write_config(
    tmp_path: Path,
    sources: Sequence[tuple[str, str]],
    *,
    telegram: tuple[str, str] | None = None,
    chats: Sequence[int] = (1001,),
    every: str = "5m",
    extra: Sequence[str] = (),
    timeout: str = "2s",
    fetch: str = "",
) -> Path:
    """A config of `sources` (name, url), one `ukraine` watchlist to `chats`, feeds only
    (`full_text: never`), no per-host spacing or robots.txt (one loopback host serves all);
    `fetch` adds keys to the fetch section (", backoff_cap: 2s")."""
    token, api_url = telegram or ("", "https://api.telegram.org")
    chat_list = ", ".join(str(chat) for chat in chats)
    lines = [
        f"database: sqlite:///{tmp_path / 'wirewatch.sqlite3'}",
        f"server: {{host: 127.0.0.1, port: {free_port()}}}",
        f"output_dir: {tmp_path / 'feeds'}",
        f"telegram: {{token: '{token}', api_url: '{api_url}', burst_threshold: 0}}",
        f"fetch: {{timeout: {timeout}, host_delay: 0s, robots: false{fetch}}}",
        "sources:",
        *(
            f"  - {{name: {name}, url: '{url}', every: {every}, full_text: never}}"
            for name, url in sources
        ),
        "watchlists:",
        f"  - {{name: ukraine, keywords: [Ukraine], chats: [{chat_list}]}}",
        *extra,
    ]
    path = tmp_path / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def poll_due(app: App, clock: VirtualClock) -> list[str]:
    """Poll every source that is due now (as bot.scheduler would); returns their names."""
    polled = []
    for source in app.settings.sources:
        state = app.store.source_state(source.name, source.url)
        if state.next_poll_at is None or state.next_poll_at <= clock():
            await app.poll_one(app.job(source))
            polled.append(source.name)
    return polled


def next_due(app: App) -> datetime | None:
    """The earliest time a source is due again, by the store (None: none is scheduled)."""
    due = [
        state.next_poll_at
        for source in app.settings.sources
        if (state := app.store.source_state(source.name, source.url)).next_poll_at is not None
    ]
    return min(due, default=None)


def stored_guids(database: Path) -> dict[str, list[str]]:
    """source → guids of its stored articles, in id order (read-only; WAL lets us in)."""
    found: dict[str, list[str]] = {}
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    ) as connection:
        for source, guid in connection.execute("SELECT source, guid FROM articles ORDER BY id"):
            found.setdefault(source, []).append(guid)
    return found


def integrity(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        (result,) = connection.execute("PRAGMA integrity_check").fetchone()
    return str(result)


class ResetProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream`; while `resetting` is set, every request
    that arrives is answered with a TCP reset (the connection is closed with SO_LINGER 0)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.resetting = threading.Event()
        self.resets = 0
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._pipe(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ResetProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reset(self, client: socket.socket) -> None:
        self.resets += 1
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()

    def _pipe(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            upstream: socket.socket | None = None
            while True:
                sockets = [client] if upstream is None else [client, upstream]
                readable, _, _ = select.select(sockets, [], [], 5.0)
                if not readable:
                    return
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if sock is client:
                        if self.resetting.is_set():
                            self._reset(client)
                            return
                        if upstream is None:
                            upstream = stack.enter_context(
                                socket.create_connection(self.upstream, timeout=5)
                            )
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
