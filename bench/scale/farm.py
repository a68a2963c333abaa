"""The loopback feed farm of bench/scale: many small RSS feeds on many 127.x addresses, from nginx.

nginx rather than a Python server: on a two-core machine every cycle the farm spends is a cycle
the workers under test do not get, and one nginx worker process serves static files with
conditional GET (ETag and Last-Modified from the file, 304 on a match) for a few microseconds of
CPU each. Each host is its own listening address (127.0.10.1, 127.0.10.2, ...), because
wirewatch's per-host limits key on the host name: spread over enough of them, the limits never
bind and the benchmark measures the workers, not politeness.

Every request is logged as ``<arrival time> <host address> <status> <path>``, unbuffered: the
farm's log is what the benchmark counts polls from, independently of what the workers say.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

CONFIG = """\
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
worker_rlimit_nofile {files};
events {{ worker_connections {connections}; }}
http {{
    log_format farm '$msec $server_addr $status $uri';
    access_log {root}/access.log farm;
    sendfile on;
    keepalive_timeout 30s;
    types {{ application/rss+xml xml; }}
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
{listen}
        root {documents};
        location /feeds/ {{ }}
        location / {{ return 404; }}
    }}
}}
"""

ITEM = (
    "<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
    "<pubDate>Fri, 27 Nov 2026 0{hour}:00:00 GMT</pubDate>"
    "<description>{text}</description></item>"
)


def host_address(index: int) -> str:
    """The loopback address of host `index`: 127.0.10.1, ... 127.0.10.250, 127.0.11.1, ..."""
    return f"127.0.{10 + index // 250}.{index % 250 + 1}"


@dataclass(frozen=True, slots=True)
class Request:
    at: float
    """Arrival, seconds since the epoch (nginx's $msec)."""
    host: str
    status: int
    path: str


class Farm:
    """`feeds` RSS feeds of `items` items each, feed i on host i mod `hosts`; start with `with`."""

    def __init__(self, root: Path, *, feeds: int, hosts: int, items: int) -> None:
        if not 1 <= hosts <= feeds:
            raise ValueError("need 1 <= hosts <= feeds")
        if hosts > 250 * 200:
            raise ValueError("at most 50,000 hosts (127.0.10.1 to 127.0.209.250)")
        self.root = root
        self.feeds = feeds
        self.hosts = hosts
        self.items = items
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def url(self, feed: int) -> str:
        return f"http://{host_address(feed % self.hosts)}:{self.port}/feeds/{feed}.xml"

    def __enter__(self) -> Farm:
        self._write_feeds()
        self._start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: finish writing the log
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def requests_since(self, at: float) -> list[Request]:
        """Every request logged that arrived at or after `at`, in log order."""
        found = []
        with (self.root / "access.log").open(encoding="ascii") as log:
            for line in log:
                moment, host, status, path = line.split()
                if float(moment) >= at:
                    found.append(Request(float(moment), host, int(status), path))
        return found

    def _write_feeds(self) -> None:
        documents = self.root / "documents" / "feeds"
        documents.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        for feed in range(self.feeds):
            base = self.url(feed).removesuffix(".xml")
            items = "".join(
                ITEM.format(
                    title=f"Feed {feed} story {item}",
                    link=f"{base}/{item}.html",
                    hour=item % 10,
                    text=f"Story {item} of feed {feed}: council meets, budget talks go on.",
                )
                for item in range(self.items)
            )
            (documents / f"{feed}.xml").write_text(
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Feed {feed}</title><link>{base}</link><description>bench</description>"
                f"{items}</channel></rss>",
                encoding="utf-8",
            )

    def _start(self) -> None:
        listen = "\n".join(
            f"        listen {host_address(host)}:{self.port};" for host in range(self.hosts)
        )
        # A listening socket takes a connection slot in nginx, like a client does.
        connections = self.hosts + 4096
        # Started as root, nginx would read files as "nobody", who may not enter a private
        # temporary folder: its worker stays root (loopback only, for the benchmark's length).
        user = "user root;" if os.geteuid() == 0 else ""
        config = self.root / "nginx.conf"
        config.write_text(
            CONFIG.format(
                user=user,
                root=self.root,
                files=connections * 2,
                connections=connections,
                listen=listen,
                documents=self.root / "documents",
            ),
            encoding="utf-8",
        )
        (self.root / "access.log").touch()
        self._process = subprocess.Popen(
            [
                "nginx",
                "-c",
                str(config),
                "-p",
                str(self.root),
                "-e",
                str(self.root / "nginx-error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_raise_file_limit,
        )
        deadline = time.monotonic() + 30
        last = self.url(self.feeds - 1)
        while True:
            if self._process.poll() is not None:
                error = (self.root / "nginx-error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx stopped at start-up: {error[-2000:]}")
            try:
                if httpx.get(last, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not answer within 30 s")
            time.sleep(0.1)


def repeats(requests: list[Request]) -> int:
    """Feed requests beyond the first of each feed: a source polled twice in one round."""
    counts = Counter(request.path for request in requests if request.path.startswith("/feeds/"))
    return sum(count - 1 for count in counts.values())


def min_host_gap(requests: list[Request]) -> float | None:
    """The shortest time between two requests' arrivals at one host (None: no host got two)."""
    last: dict[str, float] = {}
    gap: float | None = None
    for request in sorted(requests, key=lambda request: request.at):
        before = last.get(request.host)
        if before is not None:
            gap = request.at - before if gap is None else min(gap, request.at - before)
        last[request.host] = request.at
    return gap


def _raise_file_limit() -> None:
    """nginx opens one socket per host address before its worker can raise its own limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """A port free on 127.0.0.1 (and, in practice, on every other loopback address)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
