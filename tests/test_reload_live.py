"""A running `wirewatch run` takes a watchlist edit without a restart (SIGHUP), and keeps its
configuration when the edited file is invalid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.sample_site import SampleSite
from tests.conftest import DEMO_SITE, REPO
from tests.test_end_to_end import write_config

# Added to the JSON feed, which (unlike the RSS sample, with its ttl of 10 minutes) lets the
# next poll come at the source's 1 s interval.
NEW_ITEM = {
    "id": "wire-2022-02-08-0001",
    "url": "{base}/articles/heatwave-returns.html",
    "title": "Heatwave returns to southern Europe",
    "summary": "Temperatures climb again.",
    "date_published": "2022-02-08T09:05:00Z",
}


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not after {timeout} s")


def served(url: str, needle: str = "") -> bool:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and needle in response.text


def test_sighup_applies_a_new_watchlist_and_refuses_an_invalid_file(
    tmp_path: Path, sample_site: SampleSite
) -> None:
    config = write_config(tmp_path, sample_site, None, broken=False)
    config.write_text(config.read_text().replace("every: 1m", "every: 1s"))
    port = int(config.read_text().split("port: ")[1].split(",")[0])
    feeds = f"http://127.0.0.1:{port}/feeds"
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: served(f"{feeds}/ukraine.atom", "Macron"), 60, "first cycle")
        good = config.read_text()

        config.write_text(good + "  - {name: weather, keywrods: [heatwave]}\n")
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: "was not reloaded" in (tmp_path / "run.log").read_text(),
            20,
            "invalid file reported",
        )
        assert "keywrods" in (tmp_path / "run.log").read_text()
        assert not served(f"{feeds}/weather.atom")

        config.write_text(good + "  - {name: weather, title: Weather, keywords: [heatwave]}\n")
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: served(f"{feeds}/weather.atom"), 20, "new watchlist's feed")

        # A new article after the change is matched by the new watchlist, no restart needed.
        page = (DEMO_SITE / "articles" / "heatwave.html").read_bytes()
        sample_site.set_file(
            "/articles/heatwave-returns.html",
            page.replace(b"heatwave.html", b"heatwave-returns.html"),
            "text/html; charset=utf-8",
        )
        wire = json.loads(
            (DEMO_SITE / "feeds" / "wire.json")
            .read_text(encoding="utf-8")
            .replace("{{BASE_URL}}", sample_site.base_url)
        )
        item = {k: v.replace("{base}", sample_site.base_url) for k, v in NEW_ITEM.items()}
        wire["items"].insert(0, item)
        sample_site.set_file("/feeds/wire.json", json.dumps(wire).encode(), "application/feed+json")
        wait_until(
            lambda: served(f"{feeds}/weather.atom", "heatwave-returns"),
            30,
            "the new article in the new watchlist's feed",
        )
        assert process.poll() is None  # still the same process
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
