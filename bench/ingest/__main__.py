"""Ingestion at scale: a loopback farm of news sites, polled by wirewatch and by rss2email.

    .venv/bin/python -m bench.ingest [--feeds 1000] [--hosts 250] [--items 3] [--changed 0.1]
                                     [--per-host 2] [--host-delay 1s] [--latency 0]
                                     [--no-rss2email]

rss2email is the Debian package (`apt-get install rss2email`, which puts `r2e` on the PATH); it is
not installed by CI, and the benchmark runs without it (`--no-rss2email`, or when `r2e` is
missing) with only wirewatch's figures.

The farm is `--hosts` sample sites on 127.0.0.2, 127.0.0.3, ... (each its own host, so per-host
limits apply per site; past 127.0.0.255 it goes on in 127.0.1.x), serving `--feeds` RSS feeds
dealt to the hosts in turn, each listing `--items` teaser-only items whose article pages the farm
serves too. `--latency` seconds delay every answer (0 by default: loopback answers at once; a real
site answers a network round trip and some server time later, typically 0.05 to 0.5 s, and a
tool that fetches one feed at a time pays that once per feed). Enough hosts matter: with a
per-host delay d, a host with n requests in a round holds the round for (n - 1) * d, so 1,000
feeds on 8 hosts could never go faster than 8 feeds/s. Each
tool gets its own copy of the farm and runs twice, as a user would run it from cron:

1. cold: every feed is new (wirewatch also fetches, cleans and matches every article page:
   rss2email fetches only feeds, so this round flatters rss2email);
2. warm: the first `--changed` of the feeds gained one new item since (one per host, as far as
   they go), the rest are unchanged and should cost one conditional request each (304).

Before them, each tool's start-up alone is timed (best of three runs of a command that only
starts it and reads its configuration), so rates can be given net of it.

Reported per round: wall time, feeds per second (and net of start-up), requests (feeds, article
pages, robots.txt), the share of feed requests answered 304, and from the servers' side: the most
requests any one host was serving at once (against `--per-host`), the shortest time between two
requests reaching one host (against `--host-delay`), the most requests one host got and the floor
that puts on the round; the tool's peak memory (max RSS of its process, from wait4); and for
wirewatch, the feeds whose last poll failed (from its database: a healthy farm should give
none, so any are the tool's own doing, such as timeouts while it was too busy to read). Both
tools run as subprocesses of this one, one after the other, on the same farm, in the same run;
wirewatch runs with the per-host limits on, and the last line says whether the servers saw them
held.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.sample_site import SampleSite
from bot.settings import parse_duration

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
    min_gap: float | None
    """The shortest time between two requests' arrivals at one host, seconds (None: no host
    got two requests)."""
    peak_rss_mb: float
    exit_code: int
    busiest: int = 0
    failed: int | None = None
    """Sources whose last poll failed, from the tool's own records (None: not known)."""
    """The most requests one host got in the round: with a per-host delay d, the round cannot
    take less than (busiest - 1) * d, however fast the tool."""

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.seconds if self.seconds else 0.0


def _rfc822(timestamp: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(timestamp))


class Farm:
    """The loopback sites and what each feed currently lists."""

    def __init__(self, hosts: int, feeds: int, items: int, latency: float = 0.0) -> None:
        self.sites = [SampleSite(host=host_address(n), latency=latency) for n in range(hosts)]
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
        """One new item in the first `share` of the feeds; returns how many feeds changed.

        Feeds are dealt to hosts in turn, so the first feeds are on as many different hosts as
        possible: news spread over sites, not piled on a few of them."""
        changed = round(self.feeds * share)
        for feed in range(changed):
            self.counts[feed] += 1
            self.publish(feed)
        return changed

    def reset_counters(self) -> None:
        for site in self.sites:
            site.clear_requests()

    def busiest(self) -> int:
        """The most requests one host got since the last reset."""
        return max(sum(site.path_counts.values()) for site in self.sites)

    def measure(self) -> tuple[int, int, int, int, int, float | None]:
        """(feed requests, page requests, robots requests, 304s, peak requests at once per host,
        shortest gap between two requests to one host) since the last reset, from the servers'
        side."""
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
        gaps = [gap for site in self.sites if (gap := site.min_start_gap) is not None]
        peak = max(s.peak_in_flight for s in self.sites)
        return feeds, pages, robots, not_modified, peak, min(gaps, default=None)


def host_address(number: int) -> str:
    """The loopback address of the farm's `number`-th host: 127.0.0.2, 127.0.0.3, … then on into
    127.0.1.x (all of 127.0.0.0/8 is loopback on Linux)."""
    value = 2 + number
    return f"127.0.{value // 256}.{value % 256}"


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
    farm: Farm,
    tool: str,
    name: str,
    command: Sequence[str],
    env: dict[str, str],
    failed: Callable[[], int | None] = lambda: None,
) -> Round:
    farm.reset_counters()
    seconds, rss, code = run_measured(command, env)
    feeds, pages, robots, not_modified, peak, gap = farm.measure()
    return Round(
        tool,
        name,
        seconds,
        farm.feeds,
        feeds,
        pages,
        robots,
        not_modified,
        peak,
        gap,
        rss,
        code,
        farm.busiest(),
        failed(),
    )


def failed_sources(database: Path) -> int | None:
    """wirewatch's sources whose last poll failed (their failure streak is running); each
    kind of error and an example are printed, so that a failure can be told from the farm's."""
    if not database.exists():
        return None
    with contextlib.closing(sqlite3.connect(database)) as connection:
        kinds = connection.execute(
            "SELECT last_error_kind, count(*), min(last_error) FROM sources "
            "WHERE failure_streak > 0 GROUP BY last_error_kind ORDER BY 2 DESC"
        ).fetchall()
    for kind, count, example in kinds:
        print(f"wirewatch: {count} feed(s) failed with {kind}, e.g. {example}", file=sys.stderr)
    return sum(int(count) for _, count, _ in kinds)


def bench_tool(
    farm: Farm,
    tool: str,
    command: Sequence[str],
    startup_command: Sequence[str],
    env: dict[str, str],
    changed: float,
    failed: Callable[[], int | None] = lambda: None,
) -> list[Round]:
    """Start-up alone, then the cold round, then the warm round after `changed` feeds grew."""
    seconds = min(run_measured(startup_command, env)[0] for _ in range(3))
    startup = Round(tool, "start-up", seconds, 0, 0, 0, 0, 0, 0, None, 0.0, 0)
    cold = one_round(farm, tool, "cold", command, env, failed)
    farm.add_items(changed)
    warm = one_round(farm, tool, "warm", command, env, failed)
    return [startup, cold, warm]


def table(rounds: Sequence[Round], host_delay: float) -> str:
    """The rounds as a Markdown table. "feeds/s net" leaves out the tool's start-up (the best of
    three runs of a command that only starts it and reads its configuration)."""
    lines = [
        "| tool | round | wall s | feeds/s | feeds/s net | feed req | page req | robots req "
        "| 304 share | peak per host | min gap s | busiest host req | delay floor s "
        "| peak RSS MB | exit | failed feeds |",
        "| --- | --- " + "| ---: " * 14 + "|",
    ]
    startups = {r.tool: r.seconds for r in rounds if r.name == "start-up"}
    for r in rounds:
        if r.name == "start-up":
            lines.append(f"| {r.tool} | start-up | {r.seconds:.2f} |" + " |" * 13)
            continue
        share = r.not_modified / r.feed_requests if r.feed_requests else 0.0
        gap = "-" if r.min_gap is None else f"{r.min_gap:.3f}"
        lines.append(
            f"| {r.tool} | {r.name} | {r.seconds:.2f} | {r.feeds_per_second:.0f} | "
            f"{net_rate(r, startups.get(r.tool, 0.0)):.0f} | "
            f"{r.feed_requests} | {r.page_requests} | {r.robots_requests} | {share:.0%} | "
            f"{r.peak_per_host} | {gap} | {r.busiest} | {max(r.busiest - 1, 0) * host_delay:.0f} | "
            f"{r.peak_rss_mb:.0f} | {r.exit_code} | {'-' if r.failed is None else r.failed} |"
        )
    return "\n".join(lines)


def net_rate(r: Round, startup: float) -> float:
    """Feeds per second of the round once the tool has started."""
    return r.feeds / max(r.seconds - startup, 1e-3)


def limits_held(rounds: Sequence[Round], per_host: int, host_delay: float) -> list[str]:
    """What the farm saw that breaks the per-host limits (empty: they held)."""
    broken = []
    for r in rounds:
        if r.tool != "wirewatch" or r.name == "start-up":
            continue
        if r.peak_per_host > per_host:
            broken.append(f"{r.name}: {r.peak_per_host} requests at once on one host")
        # The gate spaces the starts of requests; arrivals at the server may drift by a few
        # milliseconds of scheduling, which is reported as is, never rounded away.
        if r.min_gap is not None and r.min_gap < host_delay:
            broken.append(f"{r.name}: two requests {r.min_gap:.3f} s apart on one host")
    return broken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=250)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--per-host", type=int, default=2)
    parser.add_argument("--host-delay", default="1s")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--no-rss2email", action="store_true")
    args = parser.parse_args(argv)
    r2e = None if args.no_rss2email else shutil.which("r2e")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as temporary:
        folder = Path(temporary)
        with Farm(args.hosts, args.feeds, args.items, args.latency) as farm:
            config = wirewatch_config(farm, folder, args.per_host, args.host_delay)
            wirewatch = [sys.executable, "-m", "bot", "--config", str(config)]
            command = [*wirewatch, "--log-level", "ERROR", "run", "--once"]
            startup = [*wirewatch, "--log-level", "ERROR", "check"]
            database = folder / "wirewatch.sqlite3"
            rounds += bench_tool(
                farm,
                "wirewatch",
                command,
                startup,
                env,
                args.changed,
                lambda: failed_sources(database),
            )
        if r2e:
            with Farm(args.hosts, args.feeds, args.items, args.latency) as farm:
                r2e_config = rss2email_config(farm, folder)
                base = [r2e, "-c", str(r2e_config), "-d", str(folder / "rss2email.json")]
                command = [*base, "run", "--no-send"]
                rounds += bench_tool(farm, "rss2email", command, [*base, "list"], env, args.changed)
    print(
        f"{args.feeds} feeds on {args.hosts} hosts, {args.items} items each, "
        f"{args.changed:.0%} changed before the warm round; wirewatch per_host={args.per_host}, "
        f"host_delay={args.host_delay}; every answer {args.latency:g} s late"
    )
    delay = parse_duration(args.host_delay).total_seconds()
    print(table(rounds, delay))
    by = {(r.tool, r.name): r for r in rounds}
    startups = {r.tool: r.seconds for r in rounds if r.name == "start-up"}
    for name in ("cold", "warm"):
        ours, theirs = by.get(("wirewatch", name)), by.get(("rss2email", name))
        if ours and theirs and theirs.feeds_per_second:
            ratio = ours.feeds_per_second / theirs.feeds_per_second
            net = net_rate(ours, startups["wirewatch"]) / net_rate(theirs, startups["rss2email"])
            print(
                f"{name}: wirewatch {ratio:.1f}x rss2email's feeds/s ({net:.1f}x net of start-up)"
            )
    broken = limits_held(rounds, args.per_host, delay)
    print("per-host limits: " + ("; ".join(broken) if broken else "held on every host"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
