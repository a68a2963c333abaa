"""Admin alerts through the real Telegram sender to the fake Bot API, on a fake clock: one report
per condition per day, also across a restart, and a note when it clears."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.admin_alerts import Observation, ReportState, check, plan_reports
from bot.settings import Settings
from bot.store import Store
from bot.telegram import TelegramSender
from feeds.models import Article, ConditionalHeaders, Match, TermHit
from tests.support.fake_telegram import FakeTelegram

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ADMIN = -1001
MIB = 1024 * 1024


def settings_for(tmp_path: Path, **admin_alerts: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "output_dir": str(tmp_path / "feeds"),
            "telegram": {"admin_chat": ADMIN},
            "admin_alerts": admin_alerts,
            "sources": [{"name": "wire", "url": "https://wire.example/rss"}],
            "watchlists": [{"name": "w", "keywords": ["x"]}],
        }
    )


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """On SQLite and on PostgreSQL (tests/conftest.py)."""
    with Store.open(store_url) as opened:
        yield opened


def plenty(_: Path) -> int:
    return 10_000 * MIB


async def run_check(
    telegram: FakeTelegram,
    settings: Settings,
    store: Store,
    now: datetime,
    free: Any = plenty,
) -> list[str]:
    """One check with a fresh sender (as after a restart); the texts the admin chat received."""
    before = len(telegram.sent)
    sender = TelegramSender(telegram.token, telegram.base_url)
    await sender.start()
    try:
        await check(settings, store, sender, now, free)
    finally:
        await sender.stop()
    return [m.text for m in telegram.sent[before:] if m.chat_id == ADMIN]


async def test_a_failing_source_is_reported_once_a_day_until_it_recovers(
    telegram: FakeTelegram, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, source_failing_for="24h")
    url = "https://wire.example/rss"
    store.record_poll_success("wire", url, ConditionalHeaders(), NOW - timedelta(hours=2))
    store.record_poll_failure("wire", url, "connection reset", NOW - timedelta(hours=1))
    # Failing for an hour: not yet.
    assert await run_check(telegram, settings, store, NOW) == []
    store.record_poll_failure("wire", url, "connection reset", NOW + timedelta(hours=22))
    [report] = await run_check(telegram, settings, store, NOW + timedelta(hours=23))
    assert "wire" in report and "connection reset" in report
    # Same day, still failing, after a restart (a fresh sender; state is in the database).
    assert await run_check(telegram, settings, store, NOW + timedelta(hours=30)) == []
    assert await run_check(telegram, settings, store, NOW + timedelta(hours=46)) == []
    # The next day, still failing: one more.
    [again] = await run_check(telegram, settings, store, NOW + timedelta(hours=47))
    assert "wire" in again
    store.record_poll_success("wire", url, ConditionalHeaders(), NOW + timedelta(hours=48))
    [resolved] = await run_check(telegram, settings, store, NOW + timedelta(hours=49))
    assert resolved.startswith("⚠️ wirewatch: Resolved:") and "wire" in resolved
    assert await run_check(telegram, settings, store, NOW + timedelta(hours=50)) == []


async def test_backlog_and_full_disk_are_reported_and_resolved(
    telegram: FakeTelegram, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, outbox_backlog=3, min_free_disk_mb=100)
    for number in range(5):
        article = Article(url=f"https://w.example/{number}", title="x", paragraphs=("x",), html="")
        match = Match("w", (TermHit("x", 1, ("text",)),), "x")
        store.add_article_with_matches("wire", f"g{number}", article, [match], {"w": [7]}, NOW)
    probed: list[Path] = []

    def full(path: Path) -> int:
        probed.append(path)
        return 20 * MIB

    reports = await run_check(telegram, settings, store, NOW, full)
    assert len(reports) == 2  # the database and output_dir share the disk of tmp_path: one
    assert any("5 alerts are waiting" in text for text in reports)
    assert any("20 MiB free" in text for text in reports)
    assert probed  # the injected probe was asked, not the real disk
    assert await run_check(telegram, settings, store, NOW + timedelta(hours=1), full) == []
    resolved = await run_check(telegram, settings, store, NOW + timedelta(hours=2), plenty)
    assert len(resolved) == 1 and "Resolved" in resolved[0] and "MiB free" in resolved[0]


async def test_without_an_admin_chat_reports_are_logged(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, min_free_disk_mb=100).model_copy(
        update={"telegram": Settings.model_fields["telegram"].default}
    )
    logged = await check(settings, store, None, NOW, lambda _: 1 * MIB)
    assert len(logged) == 1 and "1 MiB free" in caplog.text
    assert await check(settings, store, None, NOW + timedelta(hours=3), lambda _: 1 * MIB) == []


async def test_a_failed_send_is_tried_again_at_the_next_check(
    telegram: FakeTelegram, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, min_free_disk_mb=100)
    telegram.fail_next("sendMessage", 500, "Internal Server Error")
    assert await run_check(telegram, settings, store, NOW, lambda _: MIB) == []
    assert len(await run_check(telegram, settings, store, NOW, lambda _: MIB)) == 1


def row(key: str, active: bool, since: datetime | None, reported: datetime | None) -> ReportState:
    return ReportState(key, active, since, reported, f"detail of {key}")


@pytest.mark.parametrize(
    ("observed", "stored", "messages"),
    [
        ([Observation("a", "A")], {}, ["A"]),
        ([Observation("a", "A", after=timedelta(hours=1))], {}, []),
        (
            [Observation("a", "A", after=timedelta(hours=1))],
            {"a": row("a", False, NOW - timedelta(hours=2), None)},
            ["A"],
        ),
        ([Observation("a", "A")], {"a": row("a", True, NOW, NOW - timedelta(hours=23))}, []),
        ([Observation("a", "A")], {"a": row("a", True, NOW, NOW - timedelta(hours=24))}, ["A"]),
        ([], {"a": row("a", True, NOW, NOW - timedelta(hours=1))}, ["Resolved: detail of a"]),
        ([], {"a": row("a", False, NOW, None)}, []),  # never reported: no resolved note
        # Resolved, then back the same day: not reported again until a day has passed.
        ([Observation("a", "A")], {"a": row("a", False, None, NOW - timedelta(hours=5))}, []),
    ],
)
def test_plan_reports(
    observed: list[Observation], stored: dict[str, ReportState], messages: list[str]
) -> None:
    assert list(plan_reports(observed, stored, NOW).messages) == messages
