"""`wirewatch stats` through the real command line: sizes, rows, outbox states, article span."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.stats import human_bytes
from bot.store import Store
from feeds.models import Article, Match, TermHit
from tests.conftest import run_cli

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "wirewatch.yaml"
    config.write_text(
        f"""
database: sqlite:///{tmp_path / "db.sqlite3"}
output_dir: {tmp_path / "feeds"}
retention:
  articles: 30d
sources:
  - name: wire
    url: https://wire.example/rss
watchlists:
  - name: w
    keywords: [Kyiv]
""",
        encoding="utf-8",
    )
    return config


def populate(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as store:
        for number in range(3):
            article = Article(
                url=f"https://wire.example/{number}",
                title=f"Story {number}",
                paragraphs=("Kyiv said so.",),
                html="<p>Kyiv said so.</p>",
            )
            match = Match("w", (TermHit("Kyiv", 1, ("text",)),), "Kyiv said so.")
            store.add_article_with_matches(
                "wire", f"g{number}", article, [match], {"w": [5]}, START + timedelta(days=number)
            )
        [first, *_] = store.pending_alerts(limit=10)
        store.mark_alert_sending(first.id, START)
        store.mark_alert_sent(first.id, START, "sent", 1)
    feeds = tmp_path / "feeds" / "archive"
    feeds.mkdir(parents=True)
    (tmp_path / "feeds" / "w.atom").write_bytes(b"x" * 1000)
    (feeds / "1.atom").write_bytes(b"y" * 500)


def test_stats_json(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    populate(tmp_path)
    result = run_cli("--config", str(config), "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["backend"] == "sqlite"
    database = tmp_path / "db.sqlite3"
    on_disk = sum(os.path.getsize(p) for p in (database, Path(f"{database}-wal")) if p.exists())
    assert stats["database_bytes"] >= on_disk > 0
    assert stats["rows"]["articles"] == 3
    assert stats["rows"]["matches"] == 3
    assert stats["rows"]["outbox"] == 3
    assert stats["outbox"] == {"pending": 2, "sent": 1}
    assert stats["oldest_article"] == START.isoformat()
    assert stats["newest_article"] == (START + timedelta(days=2)).isoformat()
    assert (stats["output_files"], stats["output_bytes"]) == (2, 1500)
    assert stats["retention"] == "30 days"


def test_stats_text(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    populate(tmp_path)
    result = run_cli("--config", str(config), "stats")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("database (sqlite): ") and lines[0].endswith("KiB")
    assert "articles: 2026-05-01 12:00 UTC .. 2026-05-03 12:00 UTC" in lines
    assert any(line.split() == ["articles", "3"] for line in lines)
    assert any(line.split() == ["pending", "2"] for line in lines)
    assert lines[-1] == f"feeds in {tmp_path / 'feeds'}: 2 files, 1.5 KiB"


def test_stats_on_an_empty_database(tmp_path: Path) -> None:
    result = run_cli("--config", str(write_config(tmp_path)), "stats")
    assert result.returncode == 0, result.stderr
    assert "articles: none stored" in result.stdout
    assert "outbox: empty" in result.stdout
    assert f"feeds in {tmp_path / 'feeds'}: 0 files, 0 B" in result.stdout


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 1024**3, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 GiB",
        "3072.0 GiB",
    ]


def test_stats_on_each_backend(store_url: str, tmp_path: Path) -> None:
    """The same figures from SQLite and PostgreSQL (pg_database_size there)."""
    config = write_config(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            f"sqlite:///{tmp_path / 'db.sqlite3'}", store_url
        ),
        encoding="utf-8",
    )
    with Store.open(store_url) as store:
        article = Article(url="https://wire.example/1", title="t", paragraphs=("x",), html="")
        store.add_article_with_matches("wire", "g", article, [], {}, START)
    result = run_cli("--config", str(config), "stats", "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["backend"] == store_url.split(":")[0].split("+")[0]
    assert stats["database_bytes"] > 0
    assert stats["rows"]["articles"] == 1 and stats["outbox"] == {}
    assert stats["oldest_article"] == stats["newest_article"] == START.isoformat()
