"""Shared fixtures: the loopback sample site, the fake Telegram Bot API, config files, the CLI.

Tests never reach the internet: every server here listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.sample_site import SampleSite
from bot.store import Store
from tests.support.fake_telegram import FakeTelegram
from tests.support.postgres import PostgresServer, find_bindir

REPO = Path(__file__).resolve().parent.parent
DEMO_SITE = REPO / "config" / "demo-site"
SHARED = REPO.parent / "shared"


def require_tool(name: str) -> str:
    """The path of a system tool a test needs; skip without it, but fail under CI (CI=true),
    where .ci/run installs every such tool, so a skip there would hide a missing install step."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (Debian package or PyPI; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require_postgres() -> Path:
    """Debian's PostgreSQL server binaries; skip without them, fail under CI (like require_tool)."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    reason = "PostgreSQL server is not installed (Debian package postgresql; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session, on a free loopback port."""
    with PostgresServer(require_postgres()) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def postgres_migrated(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a database with every migration applied, built once per session from empty:
    `store_url` copies it, which costs a fraction of migrating a fresh database for each test."""
    url = postgres_server.create_database()
    Store.open(url).close()
    yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh store database, once on SQLite and once on PostgreSQL: the store and
    pipeline tests take it so that everything SQLite does is proven on PostgreSQL too.

    SQLite: a file in a nested folder that does not exist yet (Store.open must create it).
    PostgreSQL: a copy of `postgres_migrated` on the session's server, dropped afterwards.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'wirewatch.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template = urlsplit(request.getfixturevalue("postgres_migrated")).path.lstrip("/")
    url = server.create_database(template=template)
    yield url
    server.drop_database(url)


@pytest.fixture
def sample_site() -> Iterator[SampleSite]:
    with SampleSite(DEMO_SITE) as site:
        yield site


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as api:
        yield api


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` for real, as a user would run `wirewatch ARGS`."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env={**os.environ, **(env or {})},
    )
