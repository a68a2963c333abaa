"""Routes end to end through `wirewatch run --once`: a forum topic with its time zone and link
preview, a group that Telegram upgrades to a supergroup (followed, and written back to the
configuration), and a chat that blocked the bot (disabled, reported, never retried)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from bot.sample_site import Response, SampleSite
from tests.conftest import free_port, run_cli
from tests.support.fake_telegram import FakeTelegram
from tests.test_delivery_crash import TEXTS, backlog_feed


def write_config(tmp_path: Path, site: SampleSite, telegram: FakeTelegram) -> Path:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path / 'wirewatch.sqlite3'}\n"
        f"server: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"output_dir: {tmp_path / 'feeds'}\n"
        f"telegram: {{token: '{telegram.token}', api_url: '{telegram.base_url}'}}\n"
        "sources:\n"
        f"  - {{name: wire, url: '{site.base_url}/wire.xml', full_text: never}}\n"
        "watchlists:\n"
        "  - name: ukraine\n"
        "    keywords: [Ukraine]\n"
        "    chats:\n"
        "      - {chat: -100, thread: 12, timezone: Europe/Kyiv, link_preview: above}\n"
        "      - -5    # the old group\n"
        "      - 7\n",
        encoding="utf-8",
    )
    return path


def test_topics_supergroup_moves_and_blocked_chats(tmp_path: Path) -> None:
    with SampleSite() as site, FakeTelegram() as telegram:
        feed = backlog_feed(site.base_url)
        site.route(
            "/wire.xml",
            lambda _: Response(200, headers={"Content-Type": "application/rss+xml"}, body=feed),
        )
        telegram.forums[-100] = {12}
        telegram.migrated_chats[-5] = -1005
        telegram.blocked_chats.add(7)
        config = write_config(tmp_path, site, telegram)

        first = run_cli("--config", str(config), "run", "--once", env={"PTB_TIMEDELTA": "1"})
        assert first.returncode == 0, first.stderr
        sent = telegram.sent
        again = run_cli("--config", str(config), "run", "--once", env={"PTB_TIMEDELTA": "1"})
        assert again.returncode == 0, again.stderr
        assert telegram.sent == sent  # nothing new, nothing twice

    stories = len(TEXTS)
    assert Counter(int(m.chat_id) for m in sent) == {-100: stories, -1005: stories}
    topic = [m for m in sent if m.chat_id == -100]
    assert all(m.params["message_thread_id"] == 12 for m in topic)
    assert all(" EET\n" in m.text for m in topic)  # 1 March in Kyiv: winter time
    assert all(m.params["link_preview_options"]["show_above_text"] is True for m in topic)
    assert "chat 7 refuses the bot" in first.stderr

    text = config.read_text(encoding="utf-8")
    assert "      - -1005 # the old group\n" in text  # moved in the file, comment kept
    with sqlite3.connect(tmp_path / "wirewatch.sqlite3") as connection:
        failed = connection.execute(
            "SELECT chat_id, count(*) FROM outbox WHERE status = 'failed' GROUP BY chat_id"
        ).fetchall()
        moved = connection.execute("SELECT migrated_to FROM chat_states WHERE chat_id = -5")
        assert moved.fetchone() == (-1005,)
    assert failed == [(7, stories)]  # one 403, then not even tried
