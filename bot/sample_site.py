"""A static web site on 127.0.0.1 with real HTTP caching semantics.

The offline demo serves the bundled sample sources from it, and the test suite uses it as the one
fixture server: what the fetcher must cope with (validators and 304s, gzip, redirects, slow or
failing servers) has to cross a real socket to be tested honestly, and nothing may touch the
internet. Standard library only, so it costs no dependency.

Three layers answer a request, first match wins:

1. routes added with `route()` (tests: 500s, hangs, redirects, content that changes);
2. in-memory files added with `set_file()`;
3. files under `root`.

Files (layers 2 and 3) get a strong ETag, Last-Modified, 304 on If-None-Match / If-Modified-Since,
gzip when the client accepts it, and HEAD. Their text may contain ``{{BASE_URL}}``, replaced by
`base_url` when served, so bundled feeds can link to the site's own pages on whatever port it got.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import mimetypes
import socket
import socketserver
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from bot.arrival_clock import ArrivalReader, enable_timestamps

__all__ = ["PLACEHOLDER", "Request", "RequestLog", "Response", "SampleSite"]

logger = logging.getLogger(__name__)

PLACEHOLDER = b"{{BASE_URL}}"
"""Replaced by the site's base URL in every text file it serves."""

_CONTENT_TYPES = {
    ".xml": "application/rss+xml",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".opml": "text/x-opml",
}
_TEXT_TYPES = (
    "text/",
    "application/rss+xml",
    "application/rdf+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
    "application/xml",
)
_GZIP_MIN_BYTES = 256
"""Below this, gzip costs more than it saves (and tests can still see identity responses)."""
_GAP_WINDOW = 32
"""How many recent arrivals a new one is compared with: handler threads get to requests in any
order, so the nearest earlier arrival need not be the last one entered."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a route handler gets. Header names are lower-case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


RequestLog = Request
"""A request as the site recorded it, for tests to assert on (e.g. the conditional headers)."""


@dataclass(frozen=True, slots=True)
class Response:
    """What a route handler returns.

    `delay` waits before anything is sent (a server that hangs); `trickle` waits between single
    bytes of the body (a server that never finishes). Both waits end early when the site stops, so
    a test never blocks on its own server. Content-Length is added unless given.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    trickle: float = 0.0


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    mtime: float


class SampleSite:
    """The loopback site. Start it (or use it as a context manager), then read `base_url`."""

    def __init__(
        self,
        root: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
    ) -> None:
        """`latency`: seconds every answer waits before it is sent, as a site across the
        internet answers a round trip and some thinking later, not at once (bench/ingest)."""
        self._latency = latency
        self._root = root.resolve() if root is not None else None
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._routes: dict[str, Callable[[Request], Response]] = {}
        self._files: dict[str, _File] = {}
        self._requests: list[RequestLog] = []
        self._statuses: Counter[int] = Counter()
        self._paths: Counter[str] = Counter()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._recent_starts: deque[float] = deque(maxlen=_GAP_WINDOW)
        self._min_start_gap: float | None = None
        self._keep_log = True
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (port 0 picks a free port) and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("SampleSite already started")
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sample-site:{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake handlers that are waiting, and close every socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SampleSite:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """e.g. "http://127.0.0.1:43121" (no trailing slash); only known once started."""
        if self._server is None:
            raise RuntimeError("SampleSite is not started: the port is not known yet")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        """An absolute URL on this site for `path` ("/feed.xml" or "feed.xml")."""
        return self.base_url + "/" + path.lstrip("/")

    # -- content ---------------------------------------------------------------------------------

    def route(self, path: str, handler: Callable[[Request], Response]) -> None:
        """Answer `path` (query string ignored) with `handler`, over any file of that path."""
        with self._lock:
            self._routes[path] = handler

    def set_file(self, path: str, body: bytes, content_type: str) -> None:
        """Serve `body` at `path` as a file (ETag, 304, gzip), over any file under root.

        Setting it again changes the ETag and Last-Modified, as an edited file would.
        """
        with self._lock:
            self._files[path] = _File(body, content_type, time.time())

    @property
    def requests(self) -> list[RequestLog]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log, the status counts and the in-flight peak."""
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
            self._paths.clear()
            self._peak_in_flight = self._in_flight
            self._recent_starts.clear()
            self._min_start_gap = None

    @property
    def status_counts(self) -> dict[int, int]:
        """How many responses of each status were sent since the last `clear_requests`."""
        with self._lock:
            return dict(self._statuses)

    @property
    def path_counts(self) -> dict[str, int]:
        """How many requests each path got since the last `clear_requests`."""
        with self._lock:
            return dict(self._paths)

    @property
    def in_flight(self) -> int:
        """Requests being answered right now (a client may have its response a moment before
        the site has finished with the request)."""
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests this site was answering at once since the last `clear_requests`:
        what a client's per-host limit is checked against."""
        with self._lock:
            return self._peak_in_flight

    @property
    def min_start_gap(self) -> float | None:
        """The shortest time (seconds) between the arrivals of two requests at this site since
        the last `clear_requests` (None: fewer than two): what a client's per-host delay is
        checked against. Arrival is when the kernel received a request's first bytes (see
        `bot.arrival_clock`), not when a busy process got round to it."""
        with self._lock:
            return self._min_start_gap

    def keep_request_log(self, keep: bool) -> None:
        """Turn the per-request log off for long benchmark runs (counts are always kept)."""
        with self._lock:
            self._keep_log = keep

    def _enter(self, arrival: float) -> None:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            if self._recent_starts:
                gap = min(abs(arrival - earlier) for earlier in self._recent_starts)
                if self._min_start_gap is None or gap < self._min_start_gap:
                    self._min_start_gap = gap
            self._recent_starts.append(arrival)

    def _leave(self, status: int | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if status is not None:
                self._statuses[status] += 1

    # -- answering (called from handler threads) -------------------------------------------------

    def _answer(self, request: Request) -> Response:
        with self._lock:
            if self._keep_log:
                self._requests.append(request)
            self._paths[request.path] += 1
            handler = self._routes.get(request.path)
            memory_file = self._files.get(request.path)
        if handler is not None:
            return handler(request)
        found = memory_file or self._read_file(request.path)
        if found is None:
            return _plain(404, "not found")
        if request.method not in ("GET", "HEAD"):
            return Response(405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}, b"")
        return self._serve_file(request, found)

    def _read_file(self, path: str) -> _File | None:
        """The file under root for a URL path, or None; never anything outside root."""
        if self._root is None:
            return None
        parts = PurePosixPath(unquote(path)).parts
        if any(part in ("..", "") or "\\" in part or "\x00" in part for part in parts[1:]):
            return None
        candidate = self._root.joinpath(*parts[1:])
        try:
            resolved = candidate.resolve()
            if not resolved.is_relative_to(self._root):
                return None
            if resolved.is_dir():
                resolved = resolved / "index.html"
            stat = resolved.stat()
            body = resolved.read_bytes()
        except (OSError, ValueError):
            return None
        return _File(body, _content_type(resolved), stat.st_mtime)

    def _serve_file(self, request: Request, file: _File) -> Response:
        body = file.body
        if _is_text(file.content_type):
            body = body.replace(PLACEHOLDER, self.base_url.encode("ascii"))
        digest = hashlib.sha256(body).hexdigest()[:32]
        use_gzip = len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(
            request.headers.get("accept-encoding", "")
        )
        # A strong ETag names one representation, so the gzip variant gets its own.
        etag = f'"{digest}-gz"' if use_gzip else f'"{digest}"'
        headers = {
            "Content-Type": file.content_type,
            "ETag": etag,
            "Last-Modified": formatdate(file.mtime, usegmt=True),
            "Vary": "Accept-Encoding",
            "Cache-Control": "no-cache",
        }
        if _not_modified(request.headers, digest, file.mtime):
            del headers["Content-Type"]
            return Response(304, headers)
        if use_gzip:
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return Response(200, headers, body)


# -- HTTP plumbing --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], site: SampleSite
    ) -> None:
        self.site = site
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the fully qualified name of the host: slow, and a
        # loopback fixture has no business on the network.
        socketserver.TCPServer.server_bind(self)
        # Before any connection exists, so that a request arriving before its handler thread
        # starts is stamped too (accepted sockets inherit the option).
        enable_timestamps(self.socket)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive and in-flight connections so their handler threads end now."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts under test) are normal here, not worth a traceback.
        logger.debug("sample site: error answering %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wirewatch-sample-site"
    sys_version = ""
    timeout = 10
    """Idle keep-alive connections are closed after this many seconds."""
    disable_nagle_algorithm = True
    """Headers and body go out in separate writes; with Nagle's algorithm on, a kept-alive
    connection then waits for the client's delayed ACK (40 ms) on every response."""

    server: _Server
    _arrivals: ArrivalReader

    def setup(self) -> None:
        super().setup()
        # Read through a reader that knows when each request's bytes reached the host (the
        # connection inherited the listening socket's timestamps: _Server.server_bind).
        self.rfile.close()  # the socket's own reader: closed, or the socket's close waits for it
        self._arrivals = ArrivalReader(self.connection)
        self.rfile = io.BufferedReader(self._arrivals)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self._arrivals.reset()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path or "/",
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
        )
        site = self.server.site
        arrival = self._arrivals.arrival()
        site._enter(arrival if arrival is not None else time.time())
        sent: int | None = None
        try:
            try:
                response = site._answer(request)
            except Exception:
                logger.exception("sample site: handler for %s failed", request.path)
                response = _plain(500, "handler failed")
            wait = response.delay + site._latency
            if wait and site._stopping.wait(wait):
                self.close_connection = True
                return
            self._send(response, include_body=request.method != "HEAD")
            sent = response.status
        finally:
            site._leave(sent)

    def _send(self, response: Response, *, include_body: bool) -> None:
        self.send_response(response.status)
        names = {name.lower() for name in response.headers}
        for name, value in response.headers.items():
            self.send_header(name, value)
        has_body = response.status not in (204, 304) and response.status >= 200
        if has_body and "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not (include_body and has_body):
            return
        if not response.trickle:
            self.wfile.write(response.body)
            return
        for index in range(len(response.body)):
            self.wfile.write(response.body[index : index + 1])
            self.wfile.flush()
            if self.server.site._stopping.wait(response.trickle):
                self.close_connection = True
                return

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sample site: " + format, *args)


# -- pure helpers ---------------------------------------------------------------------------------


def _plain(status: int, text: str) -> Response:
    return Response(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())


def _content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _is_text(content_type: str) -> bool:
    return content_type.lower().startswith(_TEXT_TYPES)


def _accepts_gzip(accept_encoding: str) -> bool:
    """True when gzip (or *) is listed without q=0."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower().removeprefix("q=")
        try:
            return not params or float(quality) > 0
        except ValueError:
            return True
    return False


def _not_modified(headers: Mapping[str, str], digest: str, mtime: float) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; If-Modified-Since only without it."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        for tag in if_none_match.split(","):
            opaque = tag.strip().removeprefix("W/").strip('"')
            if opaque in (digest, f"{digest}-gz"):
                return True
        return False
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= since
