"""The `database:` setting: which URLs wirewatch can open, with which driver, and how to show one.

Two backends are supported: SQLite (the zero-setup default, one process) and PostgreSQL (any
number of processes). For PostgreSQL we ship psycopg 3 only, while SQLAlchemy's default driver for
``postgresql://`` is psycopg2 (and it no longer knows the ``postgres://`` spelling that Heroku and
libpq-style tools hand out): so both spellings are mapped to ``postgresql+psycopg://`` here, the
one place that knows, and any other driver is refused up front with a message saying what works,
instead of an import error from deep inside SQLAlchemy at start-up.

A URL may carry a password. It is never shown: :func:`shown` renders a URL with the password as
``***`` (SQLAlchemy's own rendering), and :func:`masked` does the same for text that did not even
parse as a URL (an error message must still quote what the user wrote).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "DatabaseUrlError",
    "connect_arguments",
    "masked",
    "parse",
    "shown",
]

_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
"""Every accepted scheme and the SQLAlchemy driver name it opens with."""

_CREDENTIALS = re.compile(r"(?P<user>//[^/@\s:]*):[^/@\s]*@")


CONNECT_TIMEOUT_SECONDS = 10
"""How long connecting to PostgreSQL may take, unless the URL sets its own ``connect_timeout``."""


class DatabaseUrlError(ValueError):
    """The `database:` value is not a URL wirewatch can open; the message says what would be."""


def parse(url: str) -> URL:
    """The SQLAlchemy URL to open for a `database:` value, with the driver we ship.

    Raises DatabaseUrlError for text that is not a URL and for backends or drivers other than
    SQLite and PostgreSQL through psycopg 3; its message never contains the password.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            f"expected a database URL such as sqlite:///var/wirewatch.sqlite3 or "
            f'postgresql://user:password@host/dbname, got "{masked(url)}"'
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseUrlError(
            f'unsupported database "{parsed.drivername}" in "{shown(parsed)}": wirewatch works '
            "with sqlite:/// (one process) or postgresql:// (opened with psycopg 3)"
        )
    return parsed.set(drivername=driver)


def shown(url: URL | str) -> str:
    """The URL as it may appear in logs and messages: the password, if any, as ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return masked(url)


def masked(text: str) -> str:
    """`text` with the password of anything shaped like ``scheme://user:password@`` as ``***``,
    for text that does not parse as a URL (SQLAlchemy cannot render it then)."""
    return _CREDENTIALS.sub(r"\g<user>:***@", text)


def connect_arguments(url: URL) -> dict[str, Any]:
    """Driver arguments every PostgreSQL connection of the bot is opened with, besides the URL.

    A server that does not answer must fail the call in seconds, not hold it for the minutes a
    TCP connect can take (libpq's ``connect_timeout``; the URL may set its own).
    """
    return {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
