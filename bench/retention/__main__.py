"""Retention on a large store: how long a prune holds the write lock, and the file size after it.

    .venv/bin/python -m bench.retention [--articles 20000] [--days 100] [--age 30]

A SQLite store (temporary folder) gets ``--articles`` articles spread evenly over ``--days`` days,
about 2 KB of text each, each matched by one or two of five watchlists, every alert settled. It
is copied, and the copies are pruned to ``--age`` days in the same run by:

- **wirewatch**: `bot.retention.prune` (candidates, every feed's history read to keep the prune a
  prefix of each feed, archive starts stored, the names of pruned articles remembered, VACUUM
  when worth it);
- **baseline**: one plain ``DELETE FROM articles WHERE updated_at < cutoff`` with its children
  (what retention costs without any care for feeds), then the same VACUUM.

The figure that matters is the prune's time: it runs in one transaction, holding SQLite's write
lock, so polls wait that long.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from bot.retention import prune, vacuum_if_worth_it
from bot.schema import article_stories, articles, matches, outbox, story_keys
from bot.store import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
WATCHLISTS = ("ukraine", "energy", "elections", "climate", "markets")


def build(path: Path, count: int, days: int) -> None:
    step = timedelta(days=days) / count
    text = "Words of a news article about the day's events. " * 40
    with Store.open(f"sqlite:///{path}") as store, store.engine.begin() as connection:
        for start in range(0, count, 5000):
            numbers = range(start, min(start + 5000, count))
            connection.execute(
                articles.insert(),
                [
                    {
                        "id": n + 1,
                        "source": f"source-{n % 20}",
                        "guid": f"g{n}",
                        "url": f"https://news.example/{n}",
                        "title": f"Story {n}",
                        "text": text,
                        "html": f"<p>{text}</p>",
                        "fetched_at": START + n * step,
                        "updated_at": START + n * step,
                    }
                    for n in numbers
                ],
            )
            rows = [
                {
                    "article_id": n + 1,
                    "watchlist": watchlist,
                    "terms": ("term",),
                    "snippet": "a snippet",
                    "matched_at": START + n * step,
                }
                for n in numbers
                for watchlist in {WATCHLISTS[n % 5], WATCHLISTS[n % 3]}
            ]
            connection.execute(matches.insert(), rows)
            connection.execute(
                outbox.insert(),
                [
                    {
                        "chat_id": 100 + n % 10,
                        "article_id": n + 1,
                        "watchlist": WATCHLISTS[n % 5],
                        "terms": ("term",),
                        "snippet": "a snippet",
                        "status": "sent",
                        "attempts": 1,
                        "created_at": START + n * step,
                        "updated_at": START + n * step,
                    }
                    for n in numbers
                ],
            )


def baseline(path: Path, now: datetime, age: timedelta) -> tuple[float, float]:
    cutoff = now - age
    with Store.open(f"sqlite:///{path}") as store:
        began = time.perf_counter()
        with store.engine.begin() as connection:
            old = select(articles.c.id).where(articles.c.updated_at < cutoff)
            for table in (outbox, matches, story_keys, article_stories):
                connection.execute(delete(table).where(table.c.article_id.in_(old)))
            connection.execute(delete(articles).where(articles.c.updated_at < cutoff))
        elapsed = time.perf_counter() - began
        began = time.perf_counter()
        vacuum_if_worth_it(store.engine)
    return elapsed, time.perf_counter() - began


def size(path: Path) -> float:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists()) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention")
    parser.add_argument("--articles", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--age", type=int, default=30)
    args = parser.parse_args()
    now = START + timedelta(days=args.days)
    age = timedelta(days=args.age)
    with tempfile.TemporaryDirectory() as folder:
        original = Path(folder) / "original.sqlite3"
        build(original, args.articles, args.days)
        with Store.open(f"sqlite:///{original}"):
            pass  # checkpoints the WAL into the file before it is copied
        copies = {}
        for name in ("wirewatch", "baseline"):
            copies[name] = Path(folder) / f"{name}.sqlite3"
            shutil.copy(original, copies[name])
        before = size(original)
        with Store.open(f"sqlite:///{copies['wirewatch']}") as store:
            began = time.perf_counter()
            report = prune(store.engine, now, age)
            ours = time.perf_counter() - began
        theirs, vacuum = baseline(copies["baseline"], now, age)
        print(f"{args.articles:,} articles over {args.days} days, pruned to {args.age} days")
        print(f"file before: {before:.1f} MiB")
        print(
            f"wirewatch: {ours:.2f} s (prune and VACUUM), {report.articles:,} articles pruned, "
            f"vacuumed={report.vacuumed}, file after: {size(copies['wirewatch']):.1f} MiB"
        )
        print(
            f"baseline:  {theirs:.2f} s (plain DELETE), then VACUUM {vacuum:.2f} s, "
            f"file after: {size(copies['baseline']):.1f} MiB"
        )


if __name__ == "__main__":
    main()
