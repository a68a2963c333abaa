"""No secret reaches the output of a real `wirewatch run --once`, in either log format, even at
debug level and when errors quote URLs that carry a token.

The errors are made to carry tokens the ways they can in the field: a source configured with a
Bot API URL (its token in the path) that answers 404, a feed URL holding some other bot's
token, and Telegram answering with a description that quotes the token. The bot's token here is
deliberately not shaped like a real one, so only the settings-based redaction (bot.logs) can
catch it; the other bot's token is caught by its shape alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sample_site import Response, SampleSite
from tests.conftest import free_port, run_cli
from tests.support.fake_telegram import FakeTelegram

TOKEN = "424242:not-shaped-like-a-real-token"
OTHER_BOT = "123456789:ZZxY_wvUTsrQPonMLkjihGFedCBA-9876543"
SECRETS = (TOKEN, TOKEN.split(":")[1], TOKEN.split(":")[1].upper(), OTHER_BOT)
LOG_KEYS = {"time", "level", "logger", "message"}


def write_config(tmp_path: Path, site: SampleSite, telegram: FakeTelegram, log_format: str) -> Path:
    port = free_port()
    other = f"/feeds/bot{OTHER_BOT}/latest.xml"
    site.route(other, lambda request: Response(503, {}, b"unavailable"))
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path / 'wirewatch.sqlite3'}\n"
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"output_dir: {tmp_path / 'feeds'}\n"
        f"telegram: {{token: '{TOKEN}', api_url: '{telegram.base_url}'}}\n"
        "fetch: {timeout: 10s, host_delay: 0s}\n"
        f"logging: {{level: debug, format: {log_format}}}\n"
        "sources:\n"
        f"  - {{name: world, url: '{site.url('/feeds/world.xml')}'}}\n"
        f"  - {{name: mistaken, url: '{telegram.base_url}/bot{TOKEN}/getFeed'}}\n"
        f"  - {{name: other, url: '{site.url(other)}'}}\n"
        "watchlists:\n"
        "  - {name: nato, keywords: [Nato], chats: [1001]}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_run_once_never_prints_a_token(
    tmp_path: Path, sample_site: SampleSite, log_format: str
) -> None:
    with FakeTelegram(TOKEN) as telegram:
        telegram.fail_next(
            "sendMessage", 400, f"Bad Request: chat not found, bot{TOKEN}", times=100
        )
        config = write_config(tmp_path, sample_site, telegram, log_format)
        result = run_cli("--config", str(config), "run", "--once")
        assert telegram.calls, "the fake Telegram was never asked: nothing was tested"
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The errors did happen, and were reported, with the tokens taken out.
    assert "source mistaken: FAILED" in result.stderr
    assert f"{telegram.base_url}/bot<token>/getFeed" in result.stderr
    assert "source other: FAILED" in result.stderr
    assert "/feeds/bot<token>/latest.xml" in result.stderr
    assert "chat not found, bot<token>" in result.stderr.lower()  # PTB capitalises it
    for secret in SECRETS:
        assert secret not in output
        assert secret.lower() not in output.lower()
    events = [line for line in result.stderr.splitlines() if not line.startswith("source ")]
    assert len(events) > 10  # debug level: the libraries' records are in there too
    if log_format == "json":
        for line in events:
            event = json.loads(line)
            assert set(event) >= LOG_KEYS, line
            assert event["level"] in ("debug", "info", "warning", "error", "critical")
    else:
        for line in events:
            assert line[:4].isdigit() and " " in line, line  # each line starts an event
