"""Ingestion at scale: a loopback farm of news sites, polled by wirewatch and by rss2email.

    .venv/bin/python -m bench.ingest [--feeds 1000] [--hosts 8] [--items 3] [--changed 0.1]
                                     [--per-host 2] [--host-delay 0s] [--no-rss2email]

rss2email is the Debian package (`apt-get install rss2email`, which puts `r2e` on the PATH); it is
not installed by CI, and the benchmark runs without it (`--no-rss2email`, or when `r2e` is
missing) with only wirewatch's figures.

The farm is `--hosts` sample sites on 127.0.0.2, 127.0.0.3, ... (each its own host, so per-host
limits apply per site), serving `--feeds` RSS feeds spread evenly over them, each listing `--items`
teaser-only items whose article pages the farm serves too. Each tool gets its own copy of the farm
state and runs twice, as a user would run it from cron:

1. cold: every feed is new (wirewatch also fetches, cleans and matches every article page:
   rss2email fetches only feeds, so this round flatters rss2email);
2. warm: `--changed` of the feeds gained one new item since, the rest are unchanged and should
   cost one conditional request each (304).

Reported per round: wall time, feeds per second, requests (feeds, article pages, robots.txt),
the share of feed requests answered 304, the peak number of requests any one host was serving
at once (the per-host limit, checked from the server side), and the tool's peak memory (max RSS
of its process, from wait4). Both tools run as subprocesses of this one, one after the other, on
the same farm, in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.sample_site import SampleSite

ARTICLE = (
    "<html><head><title>{title}</title></head><body><header><nav><a href='/'>Home</a>"
    "<a href='/world'>World</a></nav></header><article><h1>{title}</h1>"
    "<p class='byline'>By Sample Reporter</p>{paragraphs}</article>"
    "<aside>Sign up to our newsletter</aside><footer>(c) Sample News</footer></body></html>"
)
TOPICS = ("Kyiv", "Nato", "the Baltic", "energy prices", "the election", "the budget")


@dataclass(frozen=True, slots=True)
class Round:
    tool: str
    name: str
    seconds: float
    feeds: int
    feed_requests: int
    page_requests: int
    robots_requests: int
    not_modified: int
    peak_per_host: int
    peak_rss_mb: float
    exit_code: int

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.seconds if self.seconds else 0.0


def _rfc822(timestamp: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(timestamp))


class Farm:
    """The loopback sites and what each feed currently lists."""

    def __init__(self, hosts: int, feeds: int, items: int) -> None:
        self.sites = [SampleSite(host=f"127.0.0.{2 + n}") for n in range(hosts)]
        self.feeds = feeds
        self.items = items
        self.counts = [items] * feeds

    def __enter__(self) -> Farm:
        for site in self.sites:
            site.start()
            site.keep_request_log(False)
        for feed in range(self.feeds):
            self.publish(feed)
        return self

    def __exit__(self, *_: object) -> None:
        for site in self.sites:
            site.stop()

    def site_of(self, feed: int) -> SampleSite:
        return self.sites[feed % len(self.sites)]

    def feed_url(self, feed: int) -> str:
        return self.site_of(feed).url(f"/feeds/{feed}.xml")

    def publish(self, feed: int) -> None:
        """(Re)write feed `feed` with its newest `items` items, and their article pages."""
        site = self.site_of(feed)
        newest = self.counts[feed]
        items = []
        for number in range(newest, max(newest - self.items, 0), -1):
            path = f"/articles/{feed}-{number}.html"
            topic = TOPICS[(feed + number) % len(TOPICS)]
            title = f"Story {number} of outlet {feed} on {topic}"
            paragraphs = "".join(
                f"<p>Paragraph {p} of story {number}: reporters in {topic} followed the talks "
                f"closely, and officials said more meetings would follow this week.</p>"
                for p in range(8)
            )
            site.set_file(
                path, ARTICLE.format(title=title, paragraphs=paragraphs).encode(), "text/html"
            )
            items.append(
                f"<item><guid>{site.url(path)}</guid><title>{title}</title>"
                f"<link>{site.url(path)}</link><description>A teaser about {topic}.</description>"
                f"<pubDate>{_rfc822(1.7e9 + number * 3600)}</pubDate></item>"
            )
        head = f"<title>Outlet {feed}</title><link>{site.base_url}/</link>"
        channel = f"<channel>{head}{''.join(items)}</channel>"
        body = f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'>{channel}</rss>"
        site.set_file(f"/feeds/{feed}.xml", body.encode(), "application/rss+xml")

    def add_items(self, share: float) -> int:
        """One new item in every 1/share-th feed; returns how many feeds changed."""
        step = max(1, round(1 / share)) if share > 0 else 0
        changed = 0
        for feed in range(0, self.feeds, step or self.feeds + 1):
            self.counts[feed] += 1
            self.publish(feed)
            changed += 1
        return changed

    def reset_counters(self) -> None:
        for site in self.sites:
            site.clear_requests()

    def measure(self) -> tuple[int, int, int, int, int]:
        """(feed requests, page requests, robots requests, 304s, peak requests at once per host)
        since the last reset, from the servers' side."""
        feeds = pages = robots = not_modified = 0
        for site in self.sites:
            counts = site.status_counts
            not_modified += counts.get(304, 0)
        for site in self.sites:
            for path, count in site.path_counts.items():
                if path.startswith("/feeds/"):
                    feeds += count
                elif path.startswith("/articles/"):
                    pages += count
                elif path == "/robots.txt":
                    robots += count
        return feeds, pages, robots, not_modified, max(s.peak_in_flight for s in self.sites)


def run_measured(command: Sequence[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run `command`; return (seconds, peak RSS in MB, exit code)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, process.returncode


def wirewatch_config(farm: Farm, folder: Path, per_host: int, host_delay: str) -> Path:
    lines = [
        f"database: sqlite:///{folder / 'wirewatch.sqlite3'}",
        f"output_dir: {folder / 'feeds'}",
        "fetch:",
        f"  concurrency: {per_host * len(farm.sites)}",
        f"  per_host: {per_host}",
        f"  host_delay: {host_delay}",
        "sources:",
        *(
            f"  - {{name: outlet-{feed}, url: '{farm.feed_url(feed)}', every: 10m}}"
            for feed in range(farm.feeds)
        ),
        "watchlists:",
        "  - {name: kyiv, keywords: [Kyiv, Nato]}",
    ]
    path = folder / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rss2email_config(farm: Farm, folder: Path) -> Path:
    lines = ["[DEFAULT]", "to = bench@example.invalid", "feed-timeout = 60", ""]
    for feed in range(farm.feeds):
        lines += [f"[feed.outlet-{feed}]", f"url = {farm.feed_url(feed)}", ""]
    path = folder / "rss2email.cfg"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def one_round(
    farm: Farm, tool: str, name: str, command: Sequence[str], env: dict[str, str]
) -> Round:
    farm.reset_counters()
    seconds, rss, code = run_measured(command, env)
    feeds, pages, robots, not_modified, peak = farm.measure()
    return Round(
        tool, name, seconds, farm.feeds, feeds, pages, robots, not_modified, peak, rss, code
    )


def bench_tool(
    farm: Farm, tool: str, command: Sequence[str], env: dict[str, str], changed: float
) -> list[Round]:
    cold = one_round(farm, tool, "cold", command, env)
    farm.add_items(changed)
    warm = one_round(farm, tool, "warm", command, env)
    return [cold, warm]


def table(rounds: Sequence[Round]) -> str:
    lines = [
        "| tool | round | wall s | feeds/s | feed req | page req | robots req | 304 share "
        "| peak per host | peak RSS MB | exit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rounds:
        share = r.not_modified / r.feed_requests if r.feed_requests else 0.0
        lines.append(
            f"| {r.tool} | {r.name} | {r.seconds:.1f} | {r.feeds_per_second:.0f} | "
            f"{r.feed_requests} | {r.page_requests} | {r.robots_requests} | {share:.0%} | "
            f"{r.peak_per_host} | {r.peak_rss_mb:.0f} | {r.exit_code} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--per-host", type=int, default=2)
    parser.add_argument("--host-delay", default="0s")
    parser.add_argument("--no-rss2email", action="store_true")
    args = parser.parse_args(argv)
    r2e = None if args.no_rss2email else shutil.which("r2e")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as temporary:
        folder = Path(temporary)
        with Farm(args.hosts, args.feeds, args.items) as farm:
            config = wirewatch_config(farm, folder, args.per_host, args.host_delay)
            command = [
                sys.executable,
                "-m",
                "bot",
                "--config",
                str(config),
                "--log-level",
                "ERROR",
                "run",
                "--once",
            ]
            rounds += bench_tool(farm, "wirewatch", command, env, args.changed)
        if r2e:
            with Farm(args.hosts, args.feeds, args.items) as farm:
                r2e_config = rss2email_config(farm, folder)
                command = [
                    r2e,
                    "-c",
                    str(r2e_config),
                    "-d",
                    str(folder / "rss2email.json"),
                    "run",
                    "--no-send",
                ]
                rounds += bench_tool(farm, "rss2email", command, env, args.changed)
    print(
        f"{args.feeds} feeds on {args.hosts} hosts, {args.items} items each, "
        f"{args.changed:.0%} changed before the warm round; wirewatch per_host={args.per_host}, "
        f"host_delay={args.host_delay}"
    )
    print(table(rounds))
    by = {(r.tool, r.name): r for r in rounds}
    for name in ("cold", "warm"):
        ours, theirs = by.get(("wirewatch", name)), by.get(("rss2email", name))
        if ours and theirs and theirs.feeds_per_second:
            ratio = ours.feeds_per_second / theirs.feeds_per_second
            print(f"{name}: wirewatch {ratio:.1f}x rss2email's feeds/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
