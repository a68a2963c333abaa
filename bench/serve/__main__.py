"""Feed serving under many concurrent readers: wirewatch's server beside nginx, same bytes.

    .venv/bin/python -m bench.serve [--connections 100] [--duration 10] [--rounds 3] [--threads 1]

Needs ``nginx`` and ``wrk`` from Debian (``apt-get install nginx wrk``); the test suite does not
run it (timed figures do not belong in unit tests).

What runs, all on 127.0.0.1:

1. A temporary SQLite store is filled with 300 synthetic articles (about 4 KB of distinct text
   each) matched by two watchlists, and ``bot.publish.Publisher`` renders every feed, with
   archive pages, exactly as ``wirewatch run`` does; the documents land in a temporary directory.
2. wirewatch's feed server (``bot.server``, uvicorn, one process) serves those documents from its
   catalog; nginx (one worker process, access log off) serves the same files from disk.
3. ``wrk`` runs the same scenarios against each: readers fetching the 50-entry ``all`` feed (200
   responses), and readers revalidating it with the ETag each server gave (304 responses).
   Requests per second and the 99th-percentile latency come from wrk's report. Each round runs
   nginx then wirewatch back to back for each scenario, and the median over ``--rounds`` rounds is
   reported, so a burst of other load on the machine cannot favour one server.

The target (issue #6): at ``--connections 100``, at least 25% of nginx's requests per second and a
p99 under 50 ms, for both scenarios. The verdict is printed; the exit status is 1 when missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bot.publish import FeedSpec, Publisher, source_feed_spec
from bot.server import FeedCatalog
from bot.store import Store
from feeds.models import Article, Match, TermHit

ARTICLES = 300
_WORDS = """
officials talks envoys ministers Kyiv Ukraine Nato Brussels Moscow Warsaw Berlin ceasefire grain
corridor energy grid winter strikes pipeline sanctions troops border drills summit parliament vote
budget aid package delegation spokesperson said would could next week on Monday on Tuesday after
before during while the a of to in and for with that
"""
VOCABULARY = tuple(_WORDS.split())
TARGET_SHARE = 0.25
TARGET_P99_MS = 50.0
FEED_PATH = "/feeds/all.atom"
SPECS = [
    FeedSpec("all", "All matches", "Every article that matched a watchlist", None),
    FeedSpec("ukraine", "Ukraine", "Articles mentioning Ukraine", "ukraine"),
    FeedSpec("nato", "Nato", "Articles mentioning Nato", "nato"),
    source_feed_spec("world", "World Desk"),
]
NGINX_CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/atom+xml atom; }}
    charset utf-8;
    charset_types application/atom+xml;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location /feeds/ {{ alias {documents}/; add_header Cache-Control "public, max-age=300"; }}
        location /sources/ {{ alias {documents}/sources/; }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Result:
    server: str
    scenario: str
    requests_per_second: float
    p99_ms: float
    errors: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="median over this many rounds")
    arguments = parser.parse_args(argv)
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: apt-get install nginx-light wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wirewatch-bench-serve-") as temporary:
        root = Path(temporary)
        documents = root / "documents"
        size = publish_documents(root, documents)
        print(f"published {size} bytes at {FEED_PATH} (and archives) into {documents}")
        results = []
        with (
            running_wirewatch(documents) as wirewatch_url,
            running_nginx(root, documents) as nginx_url,
        ):
            check_same_bytes(wirewatch_url, nginx_url)
            for _ in range(arguments.rounds):
                for scenario in ("200", "304"):
                    for server, base_url in (("nginx", nginx_url), ("wirewatch", wirewatch_url)):
                        results.append(run_wrk(server, scenario, base_url, arguments, root))
    return report(results, arguments.connections, arguments.rounds)


def publish_documents(root: Path, documents: Path) -> int:
    """Fill a store and publish every feed the way the application does; the feed's size."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    randomness = random.Random(6)
    with Store.open(f"sqlite:///{root / 'bench.sqlite3'}") as store:
        for number in range(ARTICLES):
            paragraphs = tuple(sentences(randomness, 6) for _ in range(5))
            article = Article(
                url=f"https://world.example/news/{number}",
                title=f"Story {number}: {sentences(randomness, 1)[:70]}",
                paragraphs=paragraphs,
                html="".join(f"<p>{paragraph}</p>" for paragraph in paragraphs),
                author="Staff reporter",
                published=start + timedelta(minutes=number),
            )
            found = [
                Match(name, (TermHit(term, 2, ("text",)),), paragraphs[0][:160])
                for name, term in (("ukraine", "Ukraine"), ("nato", "Nato"))
            ]
            at = start + timedelta(minutes=number)
            store.add_article_with_matches("world", f"g{number}", article, found, {}, at)
        publisher = Publisher(
            store=store,
            catalog=FeedCatalog(),
            output_dir=documents,
            public_url="http://127.0.0.1",
            max_entries=50,
            source_titles={"world": "World Desk"},
        )
        publisher.publish(SPECS)
    return (documents / "all.atom").stat().st_size


def sentences(randomness: random.Random, count: int) -> str:
    """News-like filler: distinct for every article, as real articles are (identical bodies
    would all be one story to the near-duplicate detection, and not a fair workload)."""
    return " ".join(
        " ".join(
            randomness.choice(VOCABULARY) for _ in range(randomness.randint(12, 24))
        ).capitalize()
        + "."
        for _ in range(count)
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in time")


@contextlib.contextmanager
def running_wirewatch(documents: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve.feed_server", str(documents), str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_listening(base_url + FEED_PATH, process)
        yield base_url
    finally:
        stop(process)


@contextlib.contextmanager
def running_nginx(root: Path, documents: Path) -> Iterator[str]:
    port = free_port()
    (root / "tmp").mkdir(exist_ok=True)
    config = root / "nginx.conf"
    # Started as root, nginx would read files as "nobody", who may not enter a private temporary
    # directory: its worker then stays root (loopback only, for the length of the benchmark).
    user = "user root;" if os.geteuid() == 0 else ""
    config.write_text(NGINX_CONFIG.format(user=user, root=root, port=port, documents=documents))
    process = subprocess.Popen(
        ["nginx", "-c", str(config), "-p", str(root), "-e", str(root / "nginx-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_listening(base_url + FEED_PATH, process)
        yield base_url
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_same_bytes(base_url: str, reference_url: str) -> None:
    """Both servers must answer with the same body, or the comparison means nothing."""
    ours = httpx.get(base_url + FEED_PATH).content
    theirs = httpx.get(reference_url + FEED_PATH).content
    if ours != theirs:
        raise RuntimeError("the two servers do not serve the same bytes")


def run_wrk(
    server: str, scenario: str, base_url: str, arguments: argparse.Namespace, root: Path
) -> Result:
    command = [
        "wrk",
        f"--threads={arguments.threads}",
        f"--connections={arguments.connections}",
        f"--duration={arguments.duration}s",
        "--latency",
    ]
    if scenario == "304":
        etag = httpx.get(base_url + FEED_PATH).headers["etag"]
        command.append(f"--header=If-None-Match: {etag}")
        probe = httpx.get(base_url + FEED_PATH, headers={"If-None-Match": etag})
        if probe.status_code != 304:
            raise RuntimeError(f"{server} answered {probe.status_code} to its own ETag")
    command.append(base_url + FEED_PATH)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    (root / f"wrk-{server}-{scenario}.txt").write_text(output)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    assert p99 is not None, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", output)
    return Result(
        server, scenario, rate, float(p99.group(1)) * scale, errors.group(1) if errors else ""
    )


def median_result(results: list[Result]) -> Result:
    """The median of each figure over the rounds of one server and scenario."""
    first = results[0]
    return Result(
        first.server,
        first.scenario,
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p99_ms for r in results),
        "; ".join(r.errors for r in results if r.errors),
    )


def report(all_results: list[Result], connections: int, rounds: int) -> int:
    grouped: dict[tuple[str, str], list[Result]] = {}
    for result in all_results:
        grouped.setdefault((result.server, result.scenario), []).append(result)
    by_key = {key: median_result(results) for key, results in grouped.items()}
    print(f"\n{connections} concurrent connections, wrk, loopback, median of {rounds} rounds\n")
    print("| scenario | server | requests/s | p99 ms | share of nginx | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    verdicts = []
    for scenario in ("200", "304"):
        nginx = by_key[("nginx", scenario)]
        for server in ("nginx", "wirewatch"):
            result = by_key[(server, scenario)]
            share = result.requests_per_second / nginx.requests_per_second
            print(
                f"| {scenario} | {server} | {result.requests_per_second:,.0f} | "
                f"{result.p99_ms:.1f} | {share:.0%} | {result.errors or '-'} |"
            )
        ours = by_key[("wirewatch", scenario)]
        share = ours.requests_per_second / nginx.requests_per_second
        verdicts.append(share >= TARGET_SHARE and ours.p99_ms < TARGET_P99_MS and not ours.errors)
    met = all(verdicts)
    print(
        f"\ntarget (>= {TARGET_SHARE:.0%} of nginx's requests/s, p99 < {TARGET_P99_MS:.0f} ms): "
        f"{'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
