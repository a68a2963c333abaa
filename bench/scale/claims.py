"""What one lease claim costs at scale: the claim as written against the claim it replaced.

    .venv/bin/python -m bench.scale.claims [--sources 10000] [--claims 200] [--limit 6]

bot.coordination.claim_sources takes any due source in the order of the index on next_poll_at,
so PostgreSQL stops after `--limit` rows. The claim it replaced (kept here as the baseline, in
`previous_claim`) sent the worker's configured names with every claim as one array parameter
(``name = ANY(...)``) and ordered never-polled sources first with the name as tie-breaker, which
made PostgreSQL read and sort every due row. Both are timed as bot.fleet runs them (BEGIN, the
claim, COMMIT), in the same run, on one fresh PostgreSQL database (tests/support/postgres.py)
holding `--sources` sources all due at the same instant (what bench.scale's rounds do). Claimed
sources are made due again after each claim, so every claim has the whole table to choose from.
No workers, no farm: the database alone, from one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Text,
    any_,
    create_engine,
    func,
    literal,
    or_,
    select,
    update,
)

from bench.scale.__main__ import percentile
from bot import coordination
from bot.schema import sources
from bot.store import Store
from tests.support.postgres import PostgresServer, find_bindir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale.claims", description=__doc__)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--limit", type=int, default=6, help="sources per claim")
    args = parser.parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        print("needs postgresql: apt-get install postgresql", file=sys.stderr)
        return 2
    names = [f"s{number:05d}" for number in range(args.sources)]
    with PostgresServer(bindir) as server:
        url = server.create_database()
        Store.open(url).close()
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                coordination.register_sources(connection, [(n, f"http://h/{n}") for n in names])
            print(f"{args.sources} due sources, {args.claims} claims of {args.limit}")
            print("| claim | p50 ms | p99 ms |")
            print("|---|---|---|")
            for label, claimer in (
                ("before: configured names sent, every due row sorted", previous_claim),
                ("as written: the due index, no names", current_claim),
            ):
                times = claim_times(engine, names, args.claims, args.limit, claimer)
                p50, p99 = percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000
                print(f"| {label} | {p50:.1f} | {p99:.1f} |")
        finally:
            engine.dispose()
    return 0


Claimer = Callable[[Connection, list[str], int], list[str]]


def current_claim(connection: Connection, names: list[str], limit: int) -> list[str]:
    return coordination.claim_sources(
        connection, "bench", now=datetime.now(UTC), lease=timedelta(seconds=30), limit=limit
    )


def previous_claim(connection: Connection, names: list[str], limit: int) -> list[str]:
    """The claim before the change, for the baseline: configured names as an array parameter,
    never-polled sources first, the name as tie-breaker."""
    candidates = (
        select(sources.c.name)
        .where(
            sources.c.name == any_(literal(names, ARRAY(Text))),
            sources.c.disabled_reason.is_(None),
            or_(sources.c.next_poll_at.is_(None), sources.c.next_poll_at <= func.now()),
            or_(sources.c.lease_owner.is_(None), sources.c.lease_expires_at <= func.now()),
        )
        .order_by(sources.c.next_poll_at.asc().nulls_first(), sources.c.name)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(sources)
        .where(sources.c.name.in_(candidates.scalar_subquery()))
        .values(lease_owner="bench", lease_expires_at=func.now() + timedelta(seconds=30))
        .returning(sources.c.name)
    )
    return list(connection.scalars(statement))


def claim_times(
    engine: Engine, names: list[str], claims: int, limit: int, claimer: Claimer
) -> list[float]:
    with engine.begin() as connection:  # every source due at one instant, as in bench.scale
        connection.execute(update(sources).values(next_poll_at=func.now()))
    times = []
    for _ in range(claims):
        start = time.perf_counter()
        with engine.begin() as connection:
            taken = claimer(connection, names, limit)
        times.append(time.perf_counter() - start)
        with engine.begin() as connection:
            connection.execute(
                update(sources)
                .where(sources.c.name.in_(taken))
                .values(lease_owner=None, lease_expires_at=None, next_poll_at=func.now())
            )
    return sorted(times)


if __name__ == "__main__":
    sys.exit(main())
