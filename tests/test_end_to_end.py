"""The whole product over loopback, driven through the real `wirewatch` command.

A sample news site (the bundled demo site, built around the seed article with its boilerplate)
serves RSS, Atom and JSON feeds and article pages; a fake Telegram Bot API records what
python-telegram-bot sends through its real HTTP stack; the store is a real SQLite file (and, for
the first test, a real PostgreSQL database too: `store_url` in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import feedparser
import httpx
import pytest

from bot.sample_site import Response, SampleSite
from tests.conftest import DEMO_SITE, REPO, free_port, run_cli
from tests.support.fake_telegram import FakeTelegram

SEED = REPO / "tests" / "fixtures" / "seed-article" / "expected.json"

# Which sample articles each watchlist must hold (by the slug in their URL), from config/demo-site.
EXPECTED_FEEDS = {
    "ukraine": {"macron-putin-talks", "sullivan-warning", "nato-baltic-deployment", "nord-stream"},
    "nato": {"macron-putin-talks", "sullivan-warning", "nato-baltic-deployment"},
    "energy": {"nord-stream"},
}
# chat → the articles it is alerted about: one alert per article per chat, even when two of the
# chat's watchlists match the same article (ukraine and energy both go to 1001).
EXPECTED_ALERTS = {
    1001: {"macron-putin-talks", "sullivan-warning", "nato-baltic-deployment", "nord-stream"},
    1002: {"macron-putin-talks", "sullivan-warning", "nato-baltic-deployment"},
}


def write_config(
    tmp_path: Path,
    site: SampleSite,
    telegram: FakeTelegram | None,
    *,
    broken: bool = True,
    database: str | None = None,
) -> Path:
    port = free_port()
    sources = [
        ("sample-world", "The Sample Independent", f"{site.base_url}/feeds/world.xml"),
        ("sample-wire", "Sample Wire", f"{site.base_url}/feeds/wire.json"),
        ("sample-europe", "Sample Europe Desk", f"{site.base_url}/feeds/europe.atom"),
    ]
    if broken:
        sources.insert(1, ("broken", "Broken Outlet", f"{site.base_url}/feeds/broken.xml"))
    token = telegram.token if telegram else ""
    api_url = telegram.base_url if telegram else "https://api.telegram.org"
    database = database or f"sqlite:///{tmp_path / 'state' / 'wirewatch.sqlite3'}"
    lines = [
        f"database: {database}",
        f"server: {{host: 127.0.0.1, port: {port}, public_url: 'http://127.0.0.1:{port}'}}",
        f"output_dir: {tmp_path / 'feeds'}",
        f"telegram: {{token: '{token}', api_url: '{api_url}'}}",
        # One loopback host serves every feed and page: no per-host spacing, or each run waits
        # a second per request (the spacing itself is tested in tests/feeds/test_politeness.py).
        "fetch: {timeout: 10s, host_delay: 0s}",
        "sources:",
        *(f"  - {{name: {n}, title: {t}, url: '{u}', every: 1m}}" for n, t, u in sources),
        "watchlists:",
        "  - {name: ukraine, title: Ukraine crisis, keywords: [Ukraine, Kyiv, Nato, Jake Sullivan],"
        " exclude: [football], chats: [1001]}",
        "  - {name: nato, title: Nato, keywords: [Nato], chats: [1002]}",
        "  - {name: energy, title: Energy, keywords: [Nord Stream, gas pipeline], chats: [1001]}",
    ]
    path = tmp_path / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Every sample article has a page, except Nord Stream, whose feed carries the whole article.
SAMPLE_SLUGS = [path.stem for path in (DEMO_SITE / "articles").glob("*.html")] + ["nord-stream"]


def slug_of(link: str) -> str:
    """Which sample article a link points at (the seed page's canonical URL is the outlet's own,
    which holds the sample slug too)."""
    [slug] = [slug for slug in SAMPLE_SLUGS if slug in link]
    return slug


def slugs(feed_path: Path) -> list[str]:
    parsed = feedparser.parse(feed_path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [slug_of(entry.link) for entry in parsed.entries]


def alerts_by_chat(telegram: FakeTelegram) -> dict[int, list[str]]:
    chats: dict[int, list[str]] = {}
    for message in telegram.sent:
        chats.setdefault(int(message.chat_id), []).append(message.text)
    return chats


def slug_of_alert(text: str) -> str:
    return slug_of(text.split('href="', 1)[1].split('"', 1)[0])


@pytest.fixture
def broken_site(sample_site: SampleSite) -> SampleSite:
    sample_site.route("/feeds/broken.xml", lambda request: Response(500, {}, b"oops"))
    return sample_site


def test_run_once_twice_puts_each_article_in_the_right_feeds_and_alerts_once(
    tmp_path: Path, broken_site: SampleSite, telegram: FakeTelegram, store_url: str
) -> None:
    config = write_config(tmp_path, broken_site, telegram, database=store_url)

    first = run_cli("--config", str(config), "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "source broken: FAILED" in first.stderr  # reported, and not fatal for the others
    second = run_cli("--config", str(config), "run", "--once")
    assert second.returncode == 0, second.stderr

    feeds = tmp_path / "feeds"
    for name, expected in EXPECTED_FEEDS.items():
        found = slugs(feeds / f"{name}.atom")
        assert sorted(found) == sorted(expected), name  # each expected article exactly once
    every = slugs(feeds / "all.atom")
    assert sorted(every) == sorted(set().union(*EXPECTED_FEEDS.values()))

    chats = alerts_by_chat(telegram)
    assert set(chats) == set(EXPECTED_ALERTS)
    for chat, expected in EXPECTED_ALERTS.items():
        assert sorted(slug_of_alert(text) for text in chats[chat]) == sorted(expected), chat
    assert all(m.parse_mode == "HTML" for m in telegram.sent)


def test_second_poll_is_conditional_and_fetches_no_article_page_again(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    assert run_cli("--config", str(config), "run", "--once").returncode == 0
    first = sample_site.requests
    assert any(r.path.startswith("/articles/") for r in first)
    assert all("wirewatch/" in r.headers.get("user-agent", "") for r in first)
    sample_site.clear_requests()

    assert run_cli("--config", str(config), "run", "--once").returncode == 0
    second = sample_site.requests
    assert sorted(r.path for r in second) == [
        "/feeds/europe.atom",
        "/feeds/wire.json",
        "/feeds/world.xml",
    ]
    assert all("if-none-match" in r.headers for r in second)  # every re-poll is conditional


def test_without_a_token_alerts_are_logged_once_and_feeds_still_work(
    tmp_path: Path, sample_site: SampleSite
) -> None:
    config = write_config(tmp_path, sample_site, None, broken=False)
    first = run_cli("--config", str(config), "run", "--once")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("wirewatch.alerts") == sum(len(v) for v in EXPECTED_ALERTS.values())
    assert "Macron tells Putin" in first.stderr
    assert slugs(tmp_path / "feeds" / "energy.atom") == ["nord-stream"]
    second = run_cli("--config", str(config), "run", "--once")
    assert second.returncode == 0 and "wirewatch.alerts" not in second.stderr


def test_excluded_term_suppresses_and_unrelated_news_stays_out(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    assert run_cli("--config", str(config), "run", "--once").returncode == 0
    all_feed = (tmp_path / "feeds" / "all.atom").read_text(encoding="utf-8")
    # The play-off report mentions Ukraine but is about football: excluded.
    assert "world-cup-playoff" not in all_feed
    assert "heatwave" not in all_feed
    assert not any("world-cup-playoff" in m.text for m in telegram.sent)


def test_seed_article_is_clean_everywhere(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    assert run_cli("--config", str(config), "run", "--once").returncode == 0
    seed = json.loads(SEED.read_text(encoding="utf-8"))

    parsed = feedparser.parse((tmp_path / "feeds" / "ukraine.atom").read_bytes())
    [entry] = [e for e in parsed.entries if "macron-putin-talks" in e.link]
    assert entry.title == seed["title"]
    content = entry.content[0].value
    for paragraph in seed["body_paragraphs"]:
        assert paragraph.replace("'", "&#x27;") in content or _escaped(paragraph) in content

    outputs = [p.read_text(encoding="utf-8") for p in (tmp_path / "feeds").glob("*.atom")]
    outputs += [m.text for m in telegram.sent]
    for line in seed["boilerplate_lines"]:
        for output in outputs:
            assert line not in output and _escaped(line) not in output, line
    assert not any("logged inPlease" in output for output in outputs)


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_a_failed_send_stays_queued_and_is_sent_on_the_next_run(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    telegram.fail_next("sendMessage", 502, "Bad Gateway")
    first = run_cli("--config", str(config), "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "1 not sent" in first.stdout
    sent_first = len(telegram.sent)

    second = run_cli("--config", str(config), "run", "--once")
    assert second.returncode == 0, second.stderr
    chats = alerts_by_chat(telegram)
    total = sum(len(v) for v in EXPECTED_ALERTS.values())
    # The failed chat's later alerts wait too, so that a chat's alerts never arrive out of order.
    assert 0 < sent_first < total
    assert sum(len(texts) for texts in chats.values()) == total  # every alert, exactly once
    for chat, expected in EXPECTED_ALERTS.items():
        assert sorted(slug_of_alert(text) for text in chats[chat]) == sorted(expected)


def test_run_serves_feeds_sends_alerts_and_stops_cleanly_on_sigterm(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    port = int(config.read_text().split("port: ")[1].split(",")[0])
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        total = sum(len(v) for v in EXPECTED_ALERTS.values())
        feed = _wait_for(
            lambda: _get(
                f"http://127.0.0.1:{port}/feeds/ukraine.atom", lambda r: len(telegram.sent) >= total
            ),
            timeout=60,
        )
        assert feed.headers["content-type"].startswith("application/atom+xml")
        again = httpx.get(
            f"http://127.0.0.1:{port}/feeds/ukraine.atom",
            headers={"If-None-Match": feed.headers["etag"]},
        )
        assert again.status_code == 304
        index = httpx.get(f"http://127.0.0.1:{port}/")
        assert 'type="application/atom+xml"' in index.text
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "run.log").read_text()
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
    assert len(telegram.sent) == total


def _get(url: str, ready: object) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    check = ready  # a callable deciding whether the app has finished its first cycle
    if response.status_code == 200 and callable(check) and check(response):
        return response
    return None


def _wait_for(probe: object, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert callable(probe)
        result = probe()
        if isinstance(result, httpx.Response):
            return result
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout} s")


def test_demo_runs_offline_prints_alerts_and_feed_urls_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    demo = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")
    demo = demo.replace("port: 8099", f"port: {port}").replace(":8099", f":{port}")
    (tmp_path / "demo.yaml").write_text(demo, encoding="utf-8")
    (tmp_path / "demo-site").symlink_to(DEMO_SITE)
    env = {k: v for k, v in os.environ.items() if k != "WIREWATCH_DEMO_SITE"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(tmp_path / "demo.yaml"), "demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        output = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output.append(line)
            if "Ctrl-C" in line or not line:
                break
        text = "".join(output)
        assert "--- alert to chat 1001 ---" in text
        assert f"http://127.0.0.1:{port}/feeds/ukraine.atom" in text
        feed = httpx.get(f"http://127.0.0.1:{port}/feeds/ukraine.atom", timeout=5)
        assert feed.status_code == 200 and b"Macron" in feed.content
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=10)
        assert process.returncode == 0, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_telegram_down_at_start_queues_alerts_and_the_next_run_sends_them(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    live = write_config(tmp_path, sample_site, telegram, broken=False).read_text()
    down = live.replace(telegram.base_url, f"http://127.0.0.1:{free_port()}")
    config = tmp_path / "wirewatch.yaml"
    config.write_text(down)
    first = run_cli("--config", str(config), "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "Telegram is unreachable" in first.stderr
    assert slugs(tmp_path / "feeds" / "energy.atom") == ["nord-stream"]  # feeds still work

    config.write_text(live)
    second = run_cli("--config", str(config), "run", "--once")
    assert second.returncode == 0, second.stderr
    chats = alerts_by_chat(telegram)
    for chat, expected in EXPECTED_ALERTS.items():
        assert sorted(slug_of_alert(text) for text in chats[chat]) == sorted(expected)


def test_a_rejected_token_stops_the_start_with_a_clear_message(
    tmp_path: Path, sample_site: SampleSite, telegram: FakeTelegram
) -> None:
    config = write_config(tmp_path, sample_site, telegram, broken=False)
    config.write_text(config.read_text().replace(telegram.token, "999:WRONG"))
    result = run_cli("--config", str(config), "run", "--once")
    assert result.returncode == 1
    assert "cannot start: Telegram rejected the bot token" in result.stderr
    assert "999:WRONG" not in result.stderr and "WRONG" not in result.stderr
