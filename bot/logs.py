"""The process's log: one event per line, as text or JSON, with every secret taken out.

One line per event is what journald, `grep` and log shippers all read correctly: a traceback
spread over twenty lines becomes twenty unrelated entries. So in the text format a message's or
traceback's line breaks are written as ``\\n``; in JSON they are escaped by JSON itself, and each
line is one object: ``{"time", "level", "logger", "message"}`` plus ``"exception"`` (the
traceback) and ``"stack"`` when the record has them.

Secrets are removed by the formatter, from the finished line: whatever a record carries (its
message, its arguments, an exception's text, a stack) and whichever library logged it, nothing
is written without passing through :class:`Redactor` first. Taken out are the Telegram token
(through bot.telegram's own redaction, which also catches its secret half and a lower-cased
copy), every other ``SecretStr`` of the settings, a password in the database URL, and anything
shaped like a Telegram bot token even when it is not ours (``123456:`` followed by 30 or more
token characters): another bot's token in a URL is a secret too.

Configured once at start-up by bot.cli (nothing happens at import time); uvicorn is told not to
install handlers of its own (bot.server), so its records come here as well.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TextIO

from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .telegram import protect_token, redact_tokens

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "BOT_TOKEN_SHAPE",
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "configure_logging",
    "configure_logging_for",
    "redact",
    "settings_secrets",
]

LogFormat = Literal["text", "json"]

BOT_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
"""What a Telegram bot token looks like: the bot's id, a colon, 35 characters today."""
MIN_SECRET_LENGTH = 4
"""Shorter secrets are not searched for: they would cut pieces out of ordinary words."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces secrets in text: ``<token>`` for bot tokens, ``<secret>`` for the rest."""

    def __init__(self, tokens: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        for token in tokens:
            if token:
                protect_token(token)  # bot.telegram's redaction, and its filters on PTB and httpx
        # Longest first, so that a secret containing another is replaced whole.
        wanted = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, wanted))) if wanted else None

    def __call__(self, text: str) -> str:
        text = BOT_TOKEN_SHAPE.sub("<token>", redact_tokens(text))
        return self._secrets.sub("<secret>", text) if self._secrets is not None else text


_active = Redactor()
"""The redactor of the handler :func:`configure_logging` installed last (the log is global)."""
_handler: logging.Handler | None = None


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, the traceback on the same line, secrets removed."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(self._redact(super().format(record)))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets removed from every value."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        if record.exc_info:
            event["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            event["exception"] = self._redact(record.exc_text)
        if record.stack_info:
            event["stack"] = self._redact(self.formatStack(record.stack_info))
        return json.dumps(event, ensure_ascii=False)


def configure_logging(
    level: str,
    format: LogFormat = "text",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr) as one line each, replacing
    the handler this function installed before (the CLI configures twice: before and after
    reading the settings that say which format and which secrets). Other handlers on the root
    logger (a test harness's) are left alone."""
    global _active, _handler
    handler = logging.StreamHandler(stream or sys.stderr)
    redactor = redactor or Redactor()
    handler.setFormatter(JsonFormatter(redactor) if format == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _active, _handler = redactor, handler


def configure_logging_for(settings: Settings, level: str | None = None) -> None:
    """Log as ``settings.logging`` says (``level``, from the command line, wins), redacting the
    secrets ``settings`` holds."""
    tokens, secrets = settings_secrets(settings)
    configure_logging(
        level or settings.logging.level, settings.logging.format, Redactor(tokens, secrets)
    )


def redact(text: str) -> str:
    """``text`` without the secrets the log is redacting now, for messages printed without the
    log (the CLI's error lines)."""
    return _active(text)


def settings_secrets(settings: BaseModel) -> tuple[list[str], list[str]]:
    """(Telegram tokens, other secrets) found in ``settings``: every ``SecretStr`` anywhere in it
    (the one named ``token`` under ``telegram`` is the bot token) and the database URL's
    password."""
    tokens: list[str] = []
    secrets: list[str] = []
    for path, secret in _secret_fields(settings, ()):
        value = secret.get_secret_value()
        (tokens if path[-2:] == ("telegram", "token") else secrets).append(value)
    database = getattr(settings, "database", None)
    if isinstance(database, str):
        try:
            password = make_url(database).password
        except (ArgumentError, ValueError):
            password = None
        if password:
            secrets.append(str(password))
    return tokens, secrets


def _secret_fields(
    value: object, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], SecretStr]]:
    if isinstance(value, SecretStr):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_fields(getattr(value, name), (*path, name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _secret_fields(item, path)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
