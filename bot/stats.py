"""`wirewatch stats`: how big everything is, to see that retention keeps the database bounded.

Sizes: the database (SQLite: the file with its write-ahead log; PostgreSQL: pg_database_size),
rows per main table, the outbox by state, the oldest and newest stored article, and the files
under output_dir. `collect` reads them (one read-only pass), `render_text` and `as_json` show them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, Table, func, select, text

from .schema import (
    article_stories,
    articles,
    chat_states,
    matches,
    outbox,
    pruned_articles,
    site_blocks,
    sources,
    story_keys,
)
from .settings import Settings
from .store import Store, _aware

MAIN_TABLES: tuple[Table, ...] = (
    sources,
    articles,
    matches,
    outbox,
    article_stories,
    story_keys,
    pruned_articles,
    chat_states,
    site_blocks,
)


@dataclass(frozen=True, slots=True)
class Stats:
    backend: str
    database_bytes: int | None
    """None when the database cannot say (an in-memory SQLite database)."""
    rows: dict[str, int]
    outbox: dict[str, int]
    oldest_article: datetime | None
    newest_article: datetime | None
    output_dir: str
    output_files: int
    output_bytes: int
    retention: str
    """The configured article retention ("90 days", or "forever")."""


def collect(settings: Settings, store: Store) -> Stats:
    engine = store.engine
    with engine.connect() as connection:
        rows = {
            table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in MAIN_TABLES
        }
        oldest, newest = connection.execute(
            select(func.min(articles.c.fetched_at), func.max(articles.c.fetched_at))
        ).one()
    files, size = _directory_size(settings.output_dir)
    age = settings.retention.articles
    return Stats(
        backend=engine.dialect.name,
        database_bytes=_database_bytes(engine),
        rows=rows,
        outbox=dict(sorted(store.alert_counts().items())),
        oldest_article=_instant(oldest),
        newest_article=_instant(newest),
        output_dir=str(settings.output_dir),
        output_files=files,
        output_bytes=size,
        retention=f"{age.days} days" if age and not age.seconds else str(age or "forever"),
    )


def as_json(stats: Stats) -> dict[str, Any]:
    data = asdict(stats)
    for key in ("oldest_article", "newest_article"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def render_text(stats: Stats) -> str:
    lines = [
        f"database ({stats.backend}): "
        + (human_bytes(stats.database_bytes) if stats.database_bytes is not None else "unknown"),
        f"retention: {stats.retention}",
        "articles: "
        + (
            f"{_day(stats.oldest_article)} .. {_day(stats.newest_article)}"
            if stats.oldest_article and stats.newest_article
            else "none stored"
        ),
        "rows:",
        *(f"  {name:<16} {count:>12,}" for name, count in stats.rows.items()),
        "outbox:" + ("" if stats.outbox else " empty"),
        *(f"  {state:<16} {count:>12,}" for state, count in stats.outbox.items()),
        f"feeds in {stats.output_dir}: {stats.output_files:,} files, "
        f"{human_bytes(stats.output_bytes)}",
    ]
    return "\n".join(lines)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _database_bytes(engine: Engine) -> int | None:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return int(connection.scalar(text("SELECT pg_database_size(current_database())")))
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    path = Path(database or "").expanduser()
    return sum(
        os.path.getsize(part)
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if part.exists()
    )


def _directory_size(directory: Path) -> tuple[int, int]:
    files = size = 0
    if not directory.is_dir():
        return 0, 0
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:  # replaced by a publish meanwhile
                continue
            files += 1
    return files, size


def _instant(value: Any) -> datetime | None:
    """Aggregates come back untyped (SQLite: text); see bot.store._aware."""
    return _aware(value)


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def stats_command(settings: Settings, as_json_output: bool, out: TextIO) -> int:
    """`wirewatch stats [--json]`."""
    with Store.open(settings.database) as store:
        stats = collect(settings, store)
    if as_json_output:
        print(json.dumps(as_json(stats), indent=2), file=out)
    else:
        print(render_text(stats), file=out)
    return 0
