"""The HTTP feed server: the rendered Atom feeds, an index page, and a health check.

Feeds are rendered elsewhere and put into a :class:`FeedCatalog` when their content changes; the
server only ever serves what the catalog holds, so path input can never reach the file system.
Readers poll, so every feed answers conditional requests (ETag / Last-Modified → 304) and is gzipped
when asked. Compression is done here rather than by Starlette's GZipMiddleware because a gzipped
body is a different representation and needs its own strong ETag (the middleware keeps the
identity one); the compressed bytes are cached per feed version.

:class:`FeedServer` runs uvicorn inside the bot's own event loop, without touching signal
handlers (the application owns those).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["FeedCatalog", "FeedServer", "FeedServerError", "RenderedFeed", "make_app"]

ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
CACHE_CONTROL = "public, max-age=300"
MAX_NAME_LENGTH = 64
ALL_FEED = "all"
"""The feed of every match; listed first on the index page."""

_FEED_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')
_GZIP_TOKEN = re.compile(r"^\s*(?:gzip|x-gzip)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RenderedFeed:
    """One feed's current bytes and the validators derived from them."""

    name: str
    title: str
    body: bytes
    etag: str
    """Strong ETag, quoted: the same bytes always give the same tag."""
    last_modified: datetime
    """Timezone-aware; sent as Last-Modified (HTTP dates have whole seconds)."""

    @classmethod
    def of(cls, name: str, title: str, body: bytes, last_modified: datetime) -> RenderedFeed:
        """Build a feed with its ETag (first 32 hex digits of the body's SHA-256).

        Raises ValueError for a name the server would never route to, or a naive datetime.
        """
        if not is_feed_name(name):
            raise ValueError(f"invalid feed name: {name!r}")
        if last_modified.tzinfo is None or last_modified.utcoffset() is None:
            raise ValueError("last_modified must be timezone-aware")
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        return cls(name=name, title=title, body=body, etag=etag, last_modified=last_modified)


class FeedCatalog:
    """Thread-safe name → :class:`RenderedFeed`: the publisher puts, the server reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, RenderedFeed] = {}

    def put(self, feed: RenderedFeed) -> None:
        """Add or replace the feed of that name."""
        with self._lock:
            self._feeds[feed.name] = feed

    def get(self, name: str) -> RenderedFeed | None:
        with self._lock:
            return self._feeds.get(name)

    def all(self) -> list[RenderedFeed]:
        """Every feed, sorted by name with "all" first."""
        with self._lock:
            feeds = list(self._feeds.values())
        return sorted(feeds, key=lambda feed: (feed.name != ALL_FEED, feed.name))


def is_feed_name(name: str) -> bool:
    """Whether ``name`` can be a feed name: the only path input the server accepts."""
    return len(name) <= MAX_NAME_LENGTH and _FEED_NAME.fullmatch(name) is not None


def make_app(catalog: FeedCatalog, *, site_title: str = "wirewatch", public_url: str) -> Starlette:
    """Build the Starlette app; ``public_url`` is how readers reach it (for links on the index)."""
    base_url = public_url.rstrip("/")
    # Feed name → (identity ETag it was made from, gzipped body): one compression per version.
    compressed: dict[str, tuple[str, bytes]] = {}

    def gzipped(feed: RenderedFeed) -> bytes:
        cached = compressed.get(feed.name)
        if cached is None or cached[0] != feed.etag:
            # mtime=0 keeps the gzip header, and so its ETag, the same for the same body.
            cached = (feed.etag, gzip.compress(feed.body, mtime=0))
            compressed[feed.name] = cached
        return cached[1]

    async def feed(request: Request) -> Response:
        name = request.path_params["name"]
        found = catalog.get(name) if is_feed_name(name) else None
        if found is None:
            return PlainTextResponse("Not Found", status_code=404)
        use_gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = gzip_etag(found.etag) if use_gzip else found.etag
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(found.last_modified.astimezone(UTC), usegmt=True),
            "Cache-Control": CACHE_CONTROL,
            "Vary": "Accept-Encoding",
        }
        if is_not_modified(request, found):
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
            body = gzipped(found)
        else:
            body = found.body
        return Response(body, media_type=ATOM_MEDIA_TYPE, headers=headers)

    async def index(request: Request) -> Response:
        return HTMLResponse(render_index(catalog.all(), site_title=site_title, base_url=base_url))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/feeds/{name}.atom", feed, methods=["GET"]),
        ]
    )


def render_index(feeds: list[RenderedFeed], *, site_title: str, base_url: str) -> str:
    """The index page: each feed's title and URL, plus autodiscovery links for feed readers."""
    escape = html.escape
    discovery = "".join(
        f'\n<link rel="alternate" type="application/atom+xml" title="{escape(feed.title)}"'
        f' href="{escape(feed_url(base_url, feed.name))}">'
        for feed in feeds
    )
    items = "".join(
        f'\n<li><a href="{escape(feed_url(base_url, feed.name))}">{escape(feed.title)}</a>'
        f" <code>{escape(feed_url(base_url, feed.name))}</code></li>"
        for feed in feeds
    )
    listing = f"<ul>{items}\n</ul>" if feeds else "<p>No feeds yet.</p>"
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(site_title)}</title>{discovery}\n</head>\n<body>\n"
        f"<h1>{escape(site_title)}</h1>\n{listing}\n</body>\n</html>\n"
    )


def feed_url(base_url: str, name: str) -> str:
    return f"{base_url}/feeds/{name}.atom"


def gzip_etag(etag: str) -> str:
    """The gzipped representation's strong ETag: the identity tag with "-gzip" inside the quotes."""
    return f'{etag[:-1]}-gzip"'


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether Accept-Encoding lists gzip with a non-zero q (``*`` is not taken as gzip)."""
    for token in accept_encoding.split(","):
        match = _GZIP_TOKEN.match(token)
        if match is None:
            continue
        try:
            return match.group(1) is None or float(match.group(1)) > 0
        except ValueError:
            return False
    return False


def is_not_modified(request: Request, feed: RenderedFeed) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison, either representation) wins; else
    If-Modified-Since not older than the feed's Last-Modified."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        ours = {feed.etag, gzip_etag(feed.etag)}
        return any(tag in ours for tag in _ENTITY_TAG.findall(if_none_match))
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return feed.last_modified.replace(microsecond=0) <= since


class FeedServerError(Exception):
    """The server could not start (port taken, bad host...)."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the application it runs inside."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FeedServer:
    """Runs uvicorn as a task of the current event loop; start and stop it from that loop."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = _EmbeddedServer(self._config)
        self._task: asyncio.Task[None] | None = None
        self.port = port
        """The bound port once started (the real one when 0 was asked for)."""

    async def start(self) -> None:
        """Return once listening. Raises FeedServerError when uvicorn cannot bind."""
        if self._task is not None:
            raise RuntimeError("FeedServer already started")
        task = asyncio.create_task(self._serve(), name="wirewatch-feed-server")
        self._task = task
        while not self._server.started:
            if task.done():
                self._task = None
                await task  # raises FeedServerError
                raise FeedServerError("uvicorn exited before it was listening")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, let open requests finish (at most ~2 s), then return."""
        if self._task is None:
            return
        self._server.should_exit = True
        task, self._task = self._task, None
        await task

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exit_:
            # uvicorn calls sys.exit() when it cannot bind; that must not end the bot's loop.
            raise FeedServerError(
                f"feed server could not start on {self._config.host}:{self._config.port}"
            ) from exit_
