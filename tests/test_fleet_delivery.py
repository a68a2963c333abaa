"""Two `wirewatch run` workers on one PostgreSQL outbox, one killed with SIGKILL mid-delivery:
after its chat leases expire the other delivers the rest, every alert exactly once.

The outbox is filled before the workers start (a backlog for several chats), so both start a
delivery round at once and contend for the chats (bot.outbox_claims). The fake Bot API answers
six messages, then takes every later one without answering (hang_after): the window in which
Telegram has a message and the worker does not know. Once every `sending` alert is one the fake
holds, the worker with alerts in flight is killed and the fake released.

The documented rule (bot/delivery.py, README "Delivery"): an alert whose outcome is
unknown is never sent again. So afterwards the killed worker's in-flight alerts are `unknown` in
the outbox and at the fake exactly once; every other alert is `sent` and at the fake exactly once;
and the killed worker's in-flight alerts became `unknown` only after its lease expired.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot.sample_site import Response, SampleSite
from bot.schema import outbox
from bot.store import Store
from feeds.models import Article, Match, TermHit
from tests.conftest import free_port
from tests.support.fake_telegram import FakeTelegram
from tests.test_delivery_crash import start, wait_for

CHATS = (21, 22, -23, 24)
STORIES = 5
LEASE_SECONDS = 2
EMPTY_FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title>'
    b"<link>http://127.0.0.1/</link><description>x</description></channel></rss>"
)


def write_config(tmp_path: Path, name: str, database: str, site: str, api: FakeTelegram) -> Path:
    lines = [
        f"database: {database}",
        f"server: {{host: 127.0.0.1, port: {free_port()}}}",
        f"output_dir: {tmp_path / name / 'feeds'}",
        f"telegram: {{token: '{api.token}', api_url: '{api.base_url}'}}",
        f"fleet: {{chat_lease: {LEASE_SECONDS}s, leader_retry: 1s}}",
        "sources:",
        f"  - {{name: quiet, url: '{site}/quiet.xml', every: 1h, full_text: never}}",
        "watchlists:",
        "  - {name: ukraine, keywords: [Ukraine], chats: [" + ", ".join(map(str, CHATS)) + "]}",
    ]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def queue_backlog(database: str) -> None:
    """Five stories for every chat, queued a minute apart (the order each chat must see)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    match = Match("ukraine", (TermHit("Ukraine", 1, ("title",)),), "Ukraine")
    with Store.open(database) as store:
        for number in range(STORIES):
            title = f"Story {number} on Ukraine"
            article = Article(
                url=f"https://news.test/{number}", title=title, paragraphs=("Ukraine.",), html=""
            )
            at = start + timedelta(minutes=number)
            store.add_article_with_matches(
                "quiet", f"story-{number}", article, [match], {"ukraine": CHATS}, at
            )


def outbox_rows(store: Store) -> list[tuple[str, str | None, datetime]]:
    """(status, claimed_by, updated_at) of every alert."""
    with store.engine.begin() as connection:
        rows = connection.execute(select(outbox.c.status, outbox.c.claimed_by, outbox.c.updated_at))
        return [(row.status, row.claimed_by, row.updated_at) for row in rows]


def statuses(store: Store) -> Counter[str]:
    return Counter(status for status, _, _ in outbox_rows(store))


def pid_of(owner: str | None) -> int:
    """The pid in a worker id (host:pid:random, bot.fleet.worker_id)."""
    assert owner is not None
    return int(owner.rsplit(":", 2)[1])


def delivered(telegram: FakeTelegram) -> Counter[tuple[int, str]]:
    pairs: Counter[tuple[int, str]] = Counter()
    for message in telegram.sent:
        title = message.text.split('">', 1)[1].split("</a>", 1)[0]
        pairs[(int(message.chat_id), title)] += 1
    return pairs


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


def test_a_worker_killed_mid_delivery_leaves_its_chats_to_the_other_exactly_once(
    tmp_path: Path, postgres_url: str
) -> None:
    expected = {(chat, f"Story {n} on Ukraine") for chat in CHATS for n in range(STORIES)}
    queue_backlog(postgres_url)
    with SampleSite() as site, FakeTelegram() as telegram, Store.open(postgres_url) as store:
        site.route(
            "/quiet.xml",
            lambda _: Response(
                200, headers={"Content-Type": "application/rss+xml"}, body=EMPTY_FEED
            ),
        )
        telegram.hang_after(7)  # answer six messages, then take every later one and hang
        workers = {
            name: start(write_config(tmp_path, name, postgres_url, site.base_url, telegram))
            for name in ("a", "b")
        }
        try:
            wait_for(telegram.hanging.is_set, "the fake to hold a message")

            def settled() -> bool:
                return statuses(store)["sending"] == telegram.held

            wait_for(settled, "the in-flight sends to reach the fake")
            time.sleep(0.3)
            wait_for(settled, "the in-flight sends to reach the fake")
            in_flight = [owner for status, owner, _ in outbox_rows(store) if status == "sending"]
            victim_pid = pid_of(in_flight[0])
            [victim] = [name for name, process in workers.items() if process.pid == victim_pid]
            lost = sum(1 for owner in in_flight if pid_of(owner) == victim_pid)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].communicate(timeout=10)
            killed_at = datetime.now(UTC)
            telegram.release()  # the survivor's held requests get their answers now
            survivor = workers["b" if victim == "a" else "a"]

            wait_for(lambda: len(telegram.sent) >= len(expected), "the rest to be delivered")
            wait_for(lambda: statuses(store)["pending"] == 0, "the outbox to settle")
            wait_for(lambda: statuses(store)["sending"] == 0, "the outbox to settle")
            time.sleep(1.5)  # room for a duplicate to show up, if there were one
            assert survivor.poll() is None
            stderr = stop(survivor)
        finally:
            for process in workers.values():
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        assert workers[victim].returncode == -signal.SIGKILL
        assert survivor.returncode == 0, stderr
        rows = outbox_rows(store)

    pairs = delivered(telegram)
    assert set(pairs) == expected  # nothing lost
    assert set(pairs.values()) == {1}  # nothing twice
    assert Counter(status for status, _, _ in rows) == Counter(
        {"sent": len(expected) - lost, "unknown": lost}
    )
    # The killed worker's in-flight alerts were settled only after its lease ran out.
    unknown = [(owner, at) for status, owner, at in rows if status == "unknown"]
    assert lost >= 1 and all(pid_of(owner) == victim_pid for owner, _ in unknown)
    assert all(at >= killed_at for _, at in unknown)
    assert "their delivery is unknown and they are not sent again" in stderr
    # The survivor reads chat commands: from the start, or taken over from the killed leader.
    assert "this process leads: it reads Telegram updates" in stderr
