"""Scaling out: 1, 2 and 4 `wirewatch run` workers sharing one PostgreSQL, on a loopback farm.

    .venv/bin/python -m bench.scale [--feeds 10000] [--hosts 2500] [--items 3]
                                    [--workers 1,2,4] [--concurrency 8] [--timeout 600]
                                    [--rounds warm | cold,warm] [--keep]

Needs nginx and PostgreSQL's server from Debian (``apt-get install nginx postgresql``; .ci/run
installs both). The farm (bench/scale/farm.py) serves `--feeds` small RSS feeds from nginx, feed i
on host i mod `--hosts`, each host its own 127.x loopback address, so the per-host limits (left at
their defaults: 2 at once, 1 s apart, held fleet-wide by bot.fleet_gate) never bind. Each fleet
gets a PostgreSQL server of its own (tests/support/postgres.py: a throwaway cluster, fsync off,
pg_stat_statements loaded): on one server shared by the run, a fleet polled about a fifth slower
when another fleet had used the server before it.

For each worker count N in `--workers` (a count may come more than once: 1,2,1,2 interleaves
repeats): the database is migrated and every source registered but not due; N
workers start (`wirewatch run`, each with its own feed-server port and output folder, through
bench/scale/worker.py, which times their lease claims) and are left to settle (their start-up
publishes every feed once); then every source is made due at once, for each round asked for:

1. cold: no source was ever polled, so every feed answers 200 and its items are stored. Every
   such poll re-renders every feed (one per source), so this is for small farms only;
2. warm: every feed answers 304. After a cold round the sources have the validators it stored;
   without one, every source is first recorded as polled before, with the validators the farm
   really sends (one GET per feed from here): a deployment whose feeds did not change.

A round ends when every source has been polled and released (read from the sources table) or
after `--timeout` seconds. Reported per round, from the farm's request log: feed requests and how
many were answered 304, the span from the first to the last, **sources polled per second** over
that span, requests beyond one per feed (a source polled twice; must be 0) and the shortest gap
between two requests to one host (the fleet-wide delay: at least `host_delay` when politeness
holds exactly); the CPU seconds the workers, PostgreSQL and nginx used; the transactions committed
per poll; and the statements that took the database longest. Per worker count: the lease claims'
latency as the workers saw it (p50, p99; one claim is one transaction), how many sources a claim
took on average, and the start-up time. The last lines give the 2-worker / 1-worker ratio of each
round against the target (1.7x): of the median rates when a count was run more than once, since
one fleet's rate varies between runs on a shared machine by up to a third.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, bindparam, create_engine, func, select, update

from bench.scale.farm import Farm, free_port, min_host_gap, repeats
from bot.coordination import register_sources
from bot.schema import sources
from bot.store import Store
from tests.support.postgres import PostgresServer, find_bindir

TARGET_RATIO = 1.7
STATEMENT_STATISTICS = (
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.max=1000",
)
"""Where the database's time goes, per statement (a contrib module of Debian's server package)."""
SETTLE_CPU_SHARE = 0.1
"""A worker has settled when it used less than this share of a core over a second."""


@dataclass(frozen=True, slots=True)
class Round:
    workers: int
    name: str
    polled: int
    requests: int
    not_modified: int
    """Feed requests answered 304."""
    seconds: float
    repeats: int
    min_gap: float | None
    worker_cpu: float
    postgres_cpu: float
    nginx_cpu: float
    complete: bool
    transactions: int = 0
    top: tuple[tuple[str, int, float, int], ...] = ()
    """The statements that took the database longest in the round (pg_stat_statements):
    (statement, calls, total ms, shared buffers touched)."""
    """Transactions committed in the database during the round (pg_stat_database): divided
    by the polls, what one poll costs in round trips, which a worker waits for."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Claims:
    workers: int
    count: int
    p50_ms: float
    p99_ms: float
    mean_sources: float
    start_seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=2_500)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="fetch.concurrency per worker")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per round, at most")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the farm")
    parser.add_argument(
        "--rounds",
        default="warm",
        help="cold,warm or either (cold re-renders every feed per poll: small farms only)",
    )
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.workers.split(",")]
    bindir = find_bindir()
    if shutil.which("nginx") is None or bindir is None:
        print("needs nginx and postgresql: apt-get install nginx postgresql", file=sys.stderr)
        return 2
    rounds: list[Round] = []
    claims: list[Claims] = []
    root = Path(tempfile.mkdtemp(prefix="wirewatch-scale-"))
    os.chmod(root, 0o755)  # nginx's worker and PostgreSQL's owner read below it
    try:
        with Farm(root / "farm", feeds=args.feeds, hosts=args.hosts, items=args.items) as farm:
            print(
                f"farm: {args.feeds} feeds on {args.hosts} hosts, {args.items} items each; "
                f"workers {counts}, fetch.concurrency {args.concurrency}",
                flush=True,
            )
            for position, count in enumerate(counts, 1):
                folder = root / f"fleet-{position}-{count}"  # a count may be asked twice
                # A server of its own for each fleet: on a server shared with the fleet
                # before, the second of two identical 2-worker runs polled 22% fewer sources
                # per second, its claims touching 3.5 times the buffers.
                with PostgresServer(bindir, settings=STATEMENT_STATISTICS) as server:
                    found, claim = run_fleet(folder, farm, server, count, args)
                rounds += found
                claims.append(claim)
                for row in found:
                    print(
                        f"  {row.workers} worker(s), {row.name}: {row.rate:.0f} sources/s",
                        flush=True,
                    )
    finally:
        if args.keep:
            print(f"kept: {root} (farm/access.log, fleet-P-N/worker-K/worker.log)", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(rounds, claims, args.feeds)
    return 0 if all(row.complete and row.repeats == 0 for row in rounds) else 1


def run_fleet(
    folder: Path, farm: Farm, server: PostgresServer, count: int, args: argparse.Namespace
) -> tuple[list[Round], Claims]:
    folder.mkdir()
    url = server.create_database()
    Store.open(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE EXTENSION pg_stat_statements")
    names = [f"s{feed:05d}" for feed in range(farm.feeds)]
    with engine.begin() as connection:
        register_sources(connection, [(name, farm.url(feed)) for feed, name in enumerate(names)])
        # Registered but not due: nothing is polled until the workers have settled.
        connection.execute(update(sources).values(next_poll_at=func.now() + timedelta(days=1)))
    workers = []
    started = time.monotonic()
    try:
        for number in range(count):
            workers.append(start_worker(folder / f"worker-{number}", farm, url, names, args))
        for worker in workers:
            wait_ready(worker)
        settle([worker.process.pid for worker in workers])
        start_seconds = time.monotonic() - started
        postmaster = server_pid(server)
        found: list[Round] = []
        for name in args.rounds.split(","):
            if name == "warm" and not found:
                prime(engine, farm, names)
            found.append(one_round(engine, farm, workers, postmaster, count, name, args.timeout))
    finally:
        for worker in workers:
            worker.stop()
        engine.dispose()
    durations = sorted(seconds for worker in workers for seconds, _ in worker.claims())
    taken = [sources_taken for worker in workers for _, sources_taken in worker.claims()]
    claim = Claims(
        count,
        len(durations),
        percentile(durations, 0.50) * 1000,
        percentile(durations, 0.99) * 1000,
        statistics.fmean(taken) if taken else 0.0,
        start_seconds,
    )
    return found, claim


@dataclass
class Worker:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def claims(self) -> list[tuple[float, int]]:
        path = self.folder / "claims.txt"
        if not path.exists():
            return []
        rows = [line.split() for line in path.read_text(encoding="ascii").splitlines()]
        return [(float(seconds), int(taken)) for seconds, taken in rows]


def start_worker(
    folder: Path, farm: Farm, url: str, names: list[str], args: argparse.Namespace
) -> Worker:
    folder.mkdir()
    port = free_port()
    lines = [
        f"database: {url}",
        f"server: {{host: 127.0.0.1, port: {port}}}",
        f"output_dir: {folder / 'feeds'}",
        f"fetch: {{concurrency: {args.concurrency}, timeout: 10s}}",
        "watchlists:",
        "  - {name: bench, keywords: [zyzzyva]}",
        "sources:",
        *(
            f"  - {{name: {name}, url: '{farm.url(feed)}', every: 1h, full_text: never}}"
            for feed, name in enumerate(names)
        ),
    ]
    config = folder / "wirewatch.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = (folder / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.scale.worker", str(folder / "claims.txt"),
         "--config", str(config), "--log-level", "WARNING", "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    log.close()
    return Worker(folder, port, process)


def prime(engine: Engine, farm: Farm, names: list[str]) -> None:
    """Record every source as polled once before, with the validators the farm really sends
    (one GET each, from here): the state of a deployment whose sources were all polled before,
    without a cold round, whose cost at this size is feed rendering (see the module docstring)."""

    async def fetch_all() -> list[tuple[str, str | None, str | None]]:
        gate = asyncio.Semaphore(64)
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(feed: int) -> tuple[str, str | None, str | None]:
                async with gate:
                    response = await client.get(farm.url(feed))
                response.raise_for_status()
                headers = response.headers
                return names[feed], headers.get("etag"), headers.get("last-modified")

            return await asyncio.gather(*(one(feed) for feed in range(farm.feeds)))

    validators = asyncio.run(fetch_all())
    at = datetime.now(UTC)
    statement = (
        update(sources)
        .where(sources.c.name == bindparam("source"))
        .values(
            etag=bindparam("new_etag"),
            last_modified=bindparam("modified"),
            last_polled_at=at,
            last_success_at=at,
            polls=1,
            # What that poll would have kept: no article stored, so no publication rhythm.
            publish_gap_seconds=0.0,
        )
    )
    with engine.begin() as connection:
        connection.execute(
            statement,
            [{"source": n, "new_etag": e, "modified": m} for n, e, m in validators],
        )


def wait_ready(worker: Worker, timeout: float = 600) -> None:
    """Until the worker's feed server answers: it has loaded its settings and started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            log = (worker.folder / "worker.log").read_text(errors="replace")
            raise RuntimeError(f"worker exited at start-up:\n{log[-3000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"worker did not start within {timeout:.0f} s")


def settle(pids: list[int], timeout: float = 1800) -> None:
    """Until every process is nearly idle (its start-up publish done)."""
    deadline = time.monotonic() + timeout
    before = {pid: cpu_seconds([pid]) for pid in pids}
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = {pid: cpu_seconds([pid]) for pid in pids}
        if all(now[pid] - before[pid] < SETTLE_CPU_SHARE for pid in pids):
            return
        before = now


def one_round(
    engine: Engine,
    farm: Farm,
    workers: list[Worker],
    postmaster: int,
    count: int,
    name: str,
    timeout: float,
) -> Round:
    """Make every source due at once and wait until every one was polled again."""
    pids = [worker.process.pid for worker in workers]
    cpu_before = (
        cpu_seconds(pids),
        tree_cpu_seconds(postmaster),
        tree_cpu_seconds(farm.pid),
    )
    committed_before = committed(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("SELECT pg_stat_statements_reset()")
    start = time.time()
    due = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(update(sources).values(next_poll_at=func.now()))
    deadline = time.monotonic() + timeout
    polled = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with engine.begin() as connection:
            # Polled and released: a poll that stored articles publishes the feeds before it
            # releases its lease (writing the next due time), and the next round must not start
            # before that, or the release would push its source out of that round.
            done = select(func.count()).where(
                sources.c.last_polled_at >= due, sources.c.lease_owner.is_(None)
            )
            polled = connection.scalar(done) or 0
        if polled >= farm.feeds:
            break
        if any(worker.process.poll() is not None for worker in workers):
            raise RuntimeError("a worker exited during the round")
    cpu_after = (cpu_seconds(pids), tree_cpu_seconds(postmaster), tree_cpu_seconds(farm.pid))
    transactions = committed(engine) - committed_before
    top = busiest_statements(engine)
    requests = [r for r in farm.requests_since(start) if r.path.startswith("/feeds/")]
    settle(pids)
    span = requests[-1].at - requests[0].at if len(requests) > 1 else 0.0
    workers_cpu, postgres_cpu, nginx_cpu = (
        after - before for before, after in zip(cpu_before, cpu_after, strict=True)
    )
    return Round(
        count,
        name,
        polled,
        len(requests),
        sum(1 for request in requests if request.status == 304),
        span,
        repeats(requests),
        min_host_gap(requests),
        workers_cpu,
        postgres_cpu,
        nginx_cpu,
        complete=polled >= farm.feeds,
        transactions=transactions,
        top=top,
    )


def busiest_statements(
    engine: Engine, count: int = 6
) -> tuple[tuple[str, int, float, int], ...]:
    """The statements with the most execution time in this database since the last reset."""
    query = (
        "SELECT regexp_replace(left(query, 90), '\\s+', ' ', 'g'), calls, total_exec_time, "
        "shared_blks_hit + shared_blks_read "
        "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
        f"WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT {count}"
    )
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(query).all()
    return tuple(
        (str(text), int(calls), float(total), int(buffers)) for text, calls, total, buffers in rows
    )


def committed(engine: Engine) -> int:
    """Transactions committed in the benchmark's database so far, as the server counts them
    (its statistics lag by up to half a second: read after a pause)."""
    time.sleep(0.6)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        value = connection.exec_driver_sql(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).scalar()
    return int(value or 0)


def report(rounds: list[Round], claims: list[Claims], feeds: int) -> None:
    print()
    print(
        "| workers | round | polled | feed requests | 304s | span s | sources/s | repeats "
        "| min host gap s | CPU s: workers | PostgreSQL | nginx | transactions per poll |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rounds:
        gap = "-" if row.min_gap is None else f"{row.min_gap:.2f}"
        print(
            f"| {row.workers} | {row.name} | {row.polled} | {row.requests} | {row.not_modified} "
            f"| {row.seconds:.1f} "
            f"| {row.rate:.0f} | {row.repeats} | {gap} | {row.worker_cpu:.1f} "
            f"| {row.postgres_cpu:.1f} | {row.nginx_cpu:.1f} "
            f"| {row.transactions / max(row.requests, 1):.1f} |"
        )
    print()
    print("| workers | start-up s | claims | claim p50 ms | claim p99 ms | sources per claim |")
    print("|---|---|---|---|---|---|")
    for claim in claims:
        print(
            f"| {claim.workers} | {claim.start_seconds:.1f} | {claim.count} | {claim.p50_ms:.1f} "
            f"| {claim.p99_ms:.1f} | {claim.mean_sources:.1f} |"
        )
    print()
    for name in ("cold", "warm"):
        ones = [row.rate for row in rounds if row.workers == 1 and row.name == name]
        twos = [row.rate for row in rounds if row.workers == 2 and row.name == name]
        if not ones or not twos or statistics.median(ones) == 0:
            continue
        # Fleets asked for more than once (--workers 1,2,1,2,...): the median of each, since
        # one fleet's rate varies between runs on a shared machine by up to a third.
        ratio = statistics.median(twos) / statistics.median(ones)
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        fleets = f" (medians of {len(ones)} and {len(twos)} fleets)" if len(ones + twos) > 2 else ""
        print(
            f"{name}: 2 workers / 1 worker = {ratio:.2f}x{fleets} "
            f"(target >= {TARGET_RATIO}x: {verdict})"
        )
    for row in rounds:
        print(f"\ndatabase time by statement, {row.workers} worker(s), {row.name} round:")
        print("| statement | calls | total ms | ms per poll | buffers per call |")
        print("|---|---|---|---|---|")
        for statement, calls, total, buffers in row.top:
            per_poll = total / max(row.requests, 1)
            per_call = buffers / max(calls, 1)
            print(f"| `{statement}` | {calls} | {total:.0f} | {per_poll:.2f} | {per_call:.0f} |")
    incomplete = [row for row in rounds if not row.complete]
    if incomplete:
        print(f"incomplete rounds (not every one of {feeds} sources polled): {len(incomplete)}")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted `values` (0.0 when there are none)."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(share * len(values)))
    return values[min(rank, len(values)) - 1]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far (gone ones count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def server_pid(server: PostgresServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants, living or exited.

    PostgreSQL starts a backend per connection and nginx does its work in a child process:
    summing the children alive at the start and at the end of a round would lose the time of
    those that exited in between (a negative difference). A parent's ``cutime``/``cstime``
    already hold its exited, waited-for children's time, so the tree's total only grows.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_seconds(int(child)) for child in children)


if __name__ == "__main__":
    sys.exit(main())
