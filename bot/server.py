"""The HTTP feed server: the rendered Atom feeds, their archives, an index page, OPML, health.

Feeds are rendered elsewhere and put into a :class:`FeedCatalog` when their content changes; the
server only ever serves what the catalog holds (an exact lookup of the request path), so path
input can never reach the file system or anything but a published document.

Readers poll, so every feed answers conditional requests (ETag / Last-Modified → 304) and is gzipped
when asked. Compression is done when a feed is rendered, not per request, and not by Starlette's
GZipMiddleware: a gzipped body is a different representation and needs its own strong ETag (the
middleware keeps the identity one). When a WebSub hub is configured, every feed response names it
in a ``Link`` header as well as in the document (WebSub 4: either is enough, both is kindest).

:class:`FeedServer` runs uvicorn inside the bot's own event loop, without touching signal
handlers (the application owns those). uvicorn picks httptools (a dependency) as its HTTP parser;
with uvloop as the loop (bot.event_loop) that is most of what makes it fast (see bench/serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import hashlib
import html
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

import uvicorn
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ALL_FEED",
    "DocumentApp",
    "FeedCatalog",
    "FeedServer",
    "FeedServerError",
    "RenderedFeed",
    "archive_path",
    "feed_path",
    "make_app",
    "source_path",
]

ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
OPML_MEDIA_TYPE = "text/x-opml; charset=utf-8"
CACHE_CONTROL = "public, max-age=300"
MAX_NAME_LENGTH = 64
ALL_FEED = "all"
"""The feed of every match; listed first on the index page."""
ICON_PATH = "icon.svg"
ICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#b3261e"/>'
    b'<circle cx="9" cy="23" r="3" fill="#fff"/>'
    b'<path d="M6 13a13 13 0 0 1 13 13h-4a9 9 0 0 0-9-9zM6 5a21 21 0 0 1 21 21h-4A17 17 0 0 0 6 9z"'
    b' fill="#fff"/></svg>'
)
"""The feeds' ``<icon>``: a square feed symbol, served by the server so it always resolves."""

_NAME = rf"[a-z0-9][a-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}"
# Every path a document can be published at: a watchlist's feed (or "all"), a source's full-text
# feed, and the RFC 5005 archive pages of either.
_DOCUMENT_PATH = re.compile(rf"(feeds|sources)/({_NAME})(?:/archive/([1-9][0-9]{{0,8}}))?\.atom")
_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')
_GZIP_TOKEN = re.compile(r"^\s*(?:gzip|x-gzip)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RenderedFeed:
    """One document's current bytes, both encodings, and the validators derived from them."""

    path: str
    """Where it is served, without the leading slash: ``feeds/ukraine.atom``,
    ``sources/bbc-world.atom``, ``feeds/ukraine/archive/3.atom``."""
    title: str
    body: bytes
    etag: str
    """Strong ETag, quoted: the same bytes always give the same tag."""
    last_modified: datetime
    """Timezone-aware; sent as Last-Modified (HTTP dates have whole seconds)."""
    gzipped: bytes
    """``body`` gzipped once, at render time (``mtime=0``: the same body gives the same bytes)."""
    last_modified_http: str
    """``last_modified`` as an HTTP date, formatted once."""
    listed: bool = True
    """Whether the index page and /opml show it: subscription documents are, archive pages not."""

    @classmethod
    def of(
        cls, path: str, title: str, body: bytes, last_modified: datetime, *, listed: bool = True
    ) -> RenderedFeed:
        """Build a document with its ETag (first 32 hex digits of the body's SHA-256).

        Raises ValueError for a path the server would never route to, or a naive datetime.
        """
        if not is_document_path(path):
            raise ValueError(f"invalid feed path: {path!r}")
        if last_modified.tzinfo is None or last_modified.utcoffset() is None:
            raise ValueError("last_modified must be timezone-aware")
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        return cls(
            path=path,
            title=title,
            body=body,
            etag=etag,
            last_modified=last_modified,
            gzipped=gzip.compress(body, mtime=0),
            last_modified_http=format_datetime(last_modified.astimezone(UTC), usegmt=True),
            listed=listed,
        )

    @property
    def kind(self) -> str:
        """``feeds`` (a watchlist or all) or ``sources`` (a source's full text)."""
        return self.path.split("/", 1)[0]


class FeedCatalog:
    """Thread-safe path → :class:`RenderedFeed`: the publisher puts, the server reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, RenderedFeed] = {}

    def put(self, feed: RenderedFeed) -> None:
        """Add or replace the document at that path."""
        with self._lock:
            self._feeds[feed.path] = feed

    def get(self, path: str) -> RenderedFeed | None:
        # A plain dict read is atomic in CPython; the lock only orders writers.
        return self._feeds.get(path)

    def remove(self, path: str) -> None:
        """Stop serving a document (an archive page whose entries retention pruned)."""
        with self._lock:
            self._feeds.pop(path, None)

    def listed(self) -> list[RenderedFeed]:
        """Subscription documents: watchlist feeds ("all" first, then by name), then sources."""
        with self._lock:
            feeds = [feed for feed in self._feeds.values() if feed.listed]
        return sorted(
            feeds, key=lambda feed: (feed.kind, feed.path != feed_path(ALL_FEED), feed.path)
        )


def is_document_path(path: str) -> bool:
    """Whether ``path`` is a place a document may be published at (see ``_DOCUMENT_PATH``)."""
    return _DOCUMENT_PATH.fullmatch(path) is not None


def feed_path(name: str) -> str:
    """A watchlist's (or "all") subscription document."""
    return f"feeds/{name}.atom"


def source_path(name: str) -> str:
    """A source's full-text subscription document."""
    return f"sources/{name}.atom"


def archive_path(subscription_path: str, page: int) -> str:
    """The RFC 5005 archive page ``page`` (1 = oldest) of a subscription document."""
    if page < 1:
        raise ValueError("archive pages are numbered from 1")
    return f"{subscription_path.removesuffix('.atom')}/archive/{page}.atom"


def make_app(
    catalog: FeedCatalog,
    *,
    site_title: str = "wirewatch",
    public_url: str,
    hub_url: str | None = None,
    routes: Sequence[BaseRoute] = (),
) -> ASGIApp:
    """Build the ASGI app; ``public_url`` is how readers reach it (for links on the index, in OPML
    and in Link headers). ``routes`` adds pages served beside the feeds (the app's ``/readyz``
    and ``/metrics``, bot.readiness and bot.metrics).

    Documents (``/feeds/…``, ``/sources/…``) are answered by :class:`DocumentApp` directly at the
    ASGI level: they are nearly all the traffic (readers polling), and skipping the framework's
    request and response objects there is what lets one process keep up with many readers (see
    bench/serve). Everything else goes through an ordinary Starlette app.
    """
    base_url = public_url.rstrip("/")

    async def index(request: Request) -> Response:
        return HTMLResponse(
            render_index(catalog.listed(), site_title=site_title, base_url=base_url)
        )

    async def opml(request: Request) -> Response:
        body = render_opml(catalog.listed(), site_title=site_title, base_url=base_url)
        return Response(
            body,
            media_type=OPML_MEDIA_TYPE,
            headers={"Content-Disposition": 'inline; filename="wirewatch.opml"'},
        )

    async def icon(request: Request) -> Response:
        return Response(
            ICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    pages = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/opml", opml, methods=["GET"]),
            Route(f"/{ICON_PATH}", icon, methods=["GET"]),
            *routes,
        ]
    )
    return DocumentApp(catalog, pages, base_url=base_url, hub_url=hub_url)


class DocumentApp:
    """ASGI: GET and HEAD of a published document, with validators, 304s and gzip; any other
    request goes to ``fallback``.

    Only an exact catalog lookup of the (already percent-decoded) path can find a document, so no
    path input can reach anything else; unknown paths under the document prefixes are 404. The
    response headers of each document version are built once (:class:`_Prepared`), so a request
    costs a dictionary lookup, a look at three request headers and the send.
    """

    def __init__(
        self, catalog: FeedCatalog, fallback: ASGIApp, *, base_url: str, hub_url: str | None
    ) -> None:
        self._catalog = catalog
        self._fallback = fallback
        self._base_url = base_url
        self._hub_url = hub_url
        self._prepared: dict[str, _Prepared] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_DOCUMENT_PREFIXES):
            await self._fallback(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, [(b"allow", b"GET, HEAD")], b"Method Not Allowed")
            return
        path = scope["path"][1:]
        found = self._catalog.get(path) if len(path) <= _MAX_PATH_LENGTH else None
        if found is None:
            await _respond(send, 404, [], b"Not Found")
            return
        prepared = self._prepared.get(path)
        if prepared is None or prepared.feed is not found:
            prepared = _Prepared.of(found, self._base_url, self._hub_url)
            self._prepared[path] = prepared
        if_none_match = if_modified_since = None
        use_gzip = False
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"accept-encoding":
                use_gzip = _accepts_gzip_cached(value)
            elif name == b"if-modified-since":
                if_modified_since = value.decode("latin-1")
        if _is_not_modified(if_none_match, if_modified_since, found):
            headers = prepared.not_modified_gzip if use_gzip else prepared.not_modified
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = prepared.ok_gzip if use_gzip else prepared.ok
        body = found.gzipped if use_gzip else found.body
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if scope["method"] == "GET" else b""}
        )


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The four header lists one document version can be answered with."""

    feed: RenderedFeed
    ok: list[tuple[bytes, bytes]]
    ok_gzip: list[tuple[bytes, bytes]]
    not_modified: list[tuple[bytes, bytes]]
    not_modified_gzip: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, feed: RenderedFeed, base_url: str, hub_url: str | None) -> _Prepared:
        def validators(etag: str) -> list[tuple[bytes, bytes]]:
            headers = [
                (b"etag", etag.encode()),
                (b"last-modified", feed.last_modified_http.encode()),
                (b"cache-control", CACHE_CONTROL.encode()),
                (b"vary", b"Accept-Encoding"),
            ]
            if hub_url:
                link = f'<{hub_url}>; rel="hub", <{base_url}/{feed.path}>; rel="self"'
                headers.append((b"link", link.encode()))
            return headers

        def content(body: bytes) -> list[tuple[bytes, bytes]]:
            return [
                (b"content-type", ATOM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]

        identity, gzipped = validators(feed.etag), validators(gzip_etag(feed.etag))
        return cls(
            feed=feed,
            ok=[*identity, *content(feed.body)],
            ok_gzip=[*gzipped, *content(feed.gzipped), (b"content-encoding", b"gzip")],
            not_modified=identity,
            not_modified_gzip=gzipped,
        )


_DOCUMENT_PREFIXES = ("/feeds/", "/sources/")
_MAX_PATH_LENGTH = 200


@functools.lru_cache(maxsize=256)
def _accepts_gzip_cached(accept_encoding: bytes) -> bool:
    """Readers send a handful of distinct Accept-Encoding values: each is parsed once."""
    return accepts_gzip(accept_encoding.decode("latin-1"))


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """An error answer in plain text."""
    headers = [
        *headers,
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_SECTIONS = {"feeds": "Watchlists", "sources": "Full-text sources"}


def render_index(feeds: list[RenderedFeed], *, site_title: str, base_url: str) -> str:
    """The index page: each feed's title and URL, plus autodiscovery links for feed readers."""
    escape = html.escape
    discovery = "".join(
        f'\n<link rel="alternate" type="application/atom+xml" title="{escape(feed.title)}"'
        f' href="{escape(f"{base_url}/{feed.path}")}">'
        for feed in feeds
    )
    sections = []
    for kind, heading in _SECTIONS.items():
        items = "".join(
            f'\n<li><a href="{escape(f"{base_url}/{feed.path}")}">{escape(feed.title)}</a>'
            f" <code>{escape(f'{base_url}/{feed.path}')}</code></li>"
            for feed in feeds
            if feed.kind == kind
        )
        if items:
            sections.append(f"<h2>{heading}</h2>\n<ul>{items}\n</ul>")
    listing = "\n".join(sections) if sections else "<p>No feeds yet.</p>"
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(site_title)}</title>{discovery}\n</head>\n<body>\n"
        f"<h1>{escape(site_title)}</h1>\n{listing}\n"
        f'<p><a href="{escape(base_url)}/opml">All feeds as OPML</a></p>\n</body>\n</html>\n'
    )


def render_opml(feeds: list[RenderedFeed], *, site_title: str, base_url: str) -> bytes:
    """OPML 2.0 subscription list: one outline per feed, grouped like the index page.

    No dateCreated: the same feeds give the same bytes.
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = site_title
    body = etree.SubElement(root, "body")
    for kind, heading in _SECTIONS.items():
        members = [feed for feed in feeds if feed.kind == kind]
        if not members:
            continue
        group = etree.SubElement(body, "outline", text=heading, title=heading)
        for feed in members:
            etree.SubElement(
                group,
                "outline",
                type="rss",
                text=feed.title,
                title=feed.title,
                xmlUrl=f"{base_url}/{feed.path}",
                htmlUrl=f"{base_url}/",
            )
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)


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


def _is_not_modified(
    if_none_match: str | None, if_modified_since: str | None, feed: RenderedFeed
) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison, either representation) wins; else
    If-Modified-Since not older than the feed's Last-Modified."""
    if if_none_match is not None:
        if if_none_match == feed.etag or if_none_match.strip() == "*":
            return True
        ours = {feed.etag, gzip_etag(feed.etag)}
        return any(tag in ours for tag in _ENTITY_TAG.findall(if_none_match))
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

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,  # its records go to the app's one handler (bot.logs), not its own
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # client addresses are never used: skip the middleware
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
