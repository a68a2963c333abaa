"""The log (bot.logs): one line per event, text or JSON, and never a secret; the `logging:`
settings that choose it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.logs import (
    JsonFormatter,
    Redactor,
    TextFormatter,
    configure_logging,
    redact,
    settings_secrets,
)
from bot.settings import LoggingSettings, SettingsError, load_settings
from tests.conftest import run_cli

TOKEN = "987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX"
OTHER_BOT = "123456789:ZZxY_wvUTsrQPonMLkjihGFedCBA-9876543"
PASSWORD = "s3cr3t-pa55"
BASE_CONFIG = (
    "sources: [{name: a, url: 'http://127.0.0.1:9/f'}]\nwatchlists: [{name: w, keywords: [x]}]\n"
)


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("wirewatch.test", logging.ERROR, __file__, 1, message, args, exc_info)


def raised(message: str) -> BaseException:
    try:
        raise RuntimeError(message)
    except RuntimeError as error:
        return error


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(tokens=[TOKEN], secrets=[PASSWORD, "abc"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"POST https://api.telegram.org/bot{TOKEN}/getMe", "POST https://api.telegram.org/bot<token>/getMe"),
        # PTB capitalises descriptions, lower-casing an echoed token; and half a token is a leak.
        (f"Chat not found: bot{TOKEN.lower()}", "Chat not found: bot<token>"),
        (f"secret half {TOKEN.split(':')[1]} alone", "secret half <token> alone"),
        # Any token-shaped text goes, even a bot's we were never given.
        (f"see https://example.org/bot{OTHER_BOT}/x", "see https://example.org/bot<token>/x"),
        (f"postgresql://w:{PASSWORD}@db/w", "postgresql://w:<secret>@db/w"),
        # Too short to search for: ordinary words keep their letters.
        ("abc is kept", "abc is kept"),
        ("12:30 is a time, not a token", "12:30 is a time, not a token"),
    ],
)  # fmt: skip
def test_the_redactor_takes_out_tokens_and_secrets(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor(text) == expected


def test_text_is_one_line_per_event_without_secrets_in_message_args_or_traceback(
    redactor: Redactor,
) -> None:
    formatter = TextFormatter(redactor)
    line = formatter.format(
        record("send to %s failed:\n%s", TOKEN, PASSWORD, exc=raised(f"bot{OTHER_BOT} refused"))
    )
    assert "\n" not in line
    assert " ERROR wirewatch.test: send to <token> failed:\\n<secret>" in line
    assert "Traceback (most recent call last):\\n" in line
    assert "RuntimeError: bot<token> refused" in line
    for secret in (TOKEN, TOKEN.split(":")[1], OTHER_BOT, PASSWORD):
        assert secret not in line


def test_json_is_one_object_per_line_with_the_exception(redactor: Redactor) -> None:
    formatter = JsonFormatter(redactor)
    line = formatter.format(record("token %s\nnext", TOKEN, exc=raised(f"pw {PASSWORD}")))
    assert "\n" not in line
    event = json.loads(line)
    assert set(event) == {"time", "level", "logger", "message", "exception"}
    assert event["level"] == "error"
    assert event["logger"] == "wirewatch.test"
    assert event["message"] == "token <token>\nnext"
    assert event["time"].endswith("+00:00")
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert event["exception"].endswith("RuntimeError: pw <secret>")
    plain = json.loads(JsonFormatter(redactor).format(record("fine")))
    assert set(plain) == {"time", "level", "logger", "message"}


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    configure_logging("WARNING", stream=io.StringIO())  # drop ours; then put the rest back
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_configure_logging_replaces_its_own_handler_and_sets_the_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "text", stream=first)
    configure_logging("warning", "json", Redactor(tokens=[TOKEN]), stream=second)
    log = logging.getLogger("wirewatch.test")
    log.info("quiet")
    log.warning("token %s", TOKEN)
    assert first.getvalue() == ""
    [line] = second.getvalue().splitlines()
    assert json.loads(line)["message"] == "token <token>"
    assert redact(f"wirewatch: cannot start: {TOKEN}") == "wirewatch: cannot start: <token>"


def test_settings_secrets_finds_the_token_and_the_database_password(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        f"database: postgresql://wirewatch:{PASSWORD}@127.0.0.1/wirewatch\n"
        f"telegram: {{token: '{TOKEN}'}}\n" + BASE_CONFIG,
        encoding="utf-8",
    )
    settings = load_settings(path)
    assert settings_secrets(settings) == ([TOKEN], [PASSWORD])
    assert isinstance(settings.telegram.token, SecretStr)


def test_logging_defaults_to_text_at_info(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(BASE_CONFIG, encoding="utf-8")
    assert load_settings(path).logging == LoggingSettings(level="info", format="text")
    path.write_text("logging: {level: DEBUG, format: json}\n" + BASE_CONFIG, encoding="utf-8")
    assert load_settings(path).logging == LoggingSettings(level="debug", format="json")


def test_bad_logging_values_are_located(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "logging:\n  level: verbose\n  format: xml\n  colour: true\n" + BASE_CONFIG,
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert [str(problem) for problem in caught.value.problems] == [
        f'{path}:2:10: logging.level: expected one of debug, info, warning, error; got "verbose"',
        f'{path}:3:11: logging.format: expected one of text, json; got "xml"',
        f'{path}:4:3: logging: unknown key "colour" (known keys: level, format)',
    ]


def test_check_reports_a_bad_logging_value_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("logging: {level: loud}\n" + BASE_CONFIG, encoding="utf-8")
    result = run_cli("--config", str(path), "check")
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:1:18: logging.level: expected one of debug,")
