"""WebSub publishing pings, through httpx's MockTransport, and the hub setting's validation."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from bot.settings import SettingsError, load_settings
from bot.websub import notify_hub


async def test_one_form_encoded_publish_ping_per_topic() -> None:
    seen: list[tuple[str, dict[str, str], str]] = []

    def hub(request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        seen.append((str(request.url), form, request.headers["user-agent"]))
        return httpx.Response(202 if form["hub.url"].endswith("a.atom") else 400)

    failures = await notify_hub(
        "https://hub.example/",
        ["https://x.example/feeds/a.atom", "https://x.example/feeds/b.atom"],
        "wirewatch/test",
        transport=httpx.MockTransport(hub),
    )
    assert sorted(seen, key=lambda ping: ping[1]["hub.url"]) == [
        (
            "https://hub.example/",
            {"hub.mode": "publish", "hub.url": "https://x.example/feeds/a.atom"},
            "wirewatch/test",
        ),
        (
            "https://hub.example/",
            {"hub.mode": "publish", "hub.url": "https://x.example/feeds/b.atom"},
            "wirewatch/test",
        ),
    ]
    assert failures == ["https://x.example/feeds/b.atom: hub answered 400"]


async def test_no_topics_no_requests() -> None:
    def hub(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    assert (
        await notify_hub("https://hub.example/", [], "t", transport=httpx.MockTransport(hub)) == []
    )


def write(tmp_path: Path, feeds: str) -> Path:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        f"feeds: {feeds}\n"
        "sources: [{name: a, url: 'https://a.example/rss'}]\n"
        "watchlists: [{name: w, keywords: [x]}]\n",
        encoding="utf-8",
    )
    return path


def test_hub_setting_defaults_to_none_and_takes_an_http_url(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "{}"), {}).feeds.websub_hub is None
    hub = load_settings(write(tmp_path, "{websub_hub: 'https://hub.example/'}"), {})
    assert hub.feeds.websub_hub == "https://hub.example"


def test_hub_setting_refuses_what_is_not_an_http_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(write(tmp_path, "{websub_hub: 'ftp://hub.example/'}"), {})
    assert "wirewatch.yaml:1:21: feeds.websub_hub: expected an http" in str(raised.value)
