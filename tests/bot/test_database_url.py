"""The `database:` setting on both backends: which URLs open with which driver, a PostgreSQL
database migrated from empty, and a password that never shows in an error, a log or the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from bot.database_url import DatabaseUrlError, masked, parse, shown
from bot.schema import metadata
from bot.settings import SettingsError, load_settings
from bot.store import DatabaseUnavailableError, Store
from tests.conftest import run_cli
from tests.support.postgres import PostgresServer

SECRET = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///var/w.sqlite3", "sqlite"),
        ("sqlite://", "sqlite"),
        ("sqlite+pysqlite:///w.db", "sqlite"),
        ("postgresql://u:p@db.example/w", "postgresql+psycopg"),
        ("postgres://u:p@db.example:6432/w", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/w", "postgresql+psycopg"),
    ],
)
def test_supported_urls_open_with_the_driver_we_ship(url: str, driver: str) -> None:
    assert parse(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"mysql://root:{SECRET}@db/w", 'unsupported database "mysql"'),
        (f"postgresql+psycopg2://u:{SECRET}@db/w", 'unsupported database "postgresql+psycopg2"'),
        (f"postgresql://u:{SECRET}@db:port/w", "expected a database URL"),
        (f"postgresql//u:{SECRET}@db/w", "expected a database URL"),
    ],
)
def test_bad_urls_are_refused_without_the_password(url: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        parse(url)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "u:***@" in str(caught.value) or "root:***@" in str(caught.value)


def test_shown_and_masked_hide_only_the_password() -> None:
    assert shown(f"postgresql://bob:{SECRET}@db:5432/w") == "postgresql://bob:***@db:5432/w"
    assert shown("postgresql://bob@db/w") == "postgresql://bob@db/w"
    assert shown("sqlite:///var/w.sqlite3") == "sqlite:///var/w.sqlite3"
    assert masked(f"x postgres://a:{SECRET}@h:bad/d y") == "x postgres://a:***@h:bad/d y"


def test_settings_accept_postgresql_and_keep_the_password_out_of_problems(
    tmp_path: Path,
) -> None:
    config = tmp_path / "w.yaml"
    body = (
        "sources: [{name: a, url: 'https://e.example/f'}]\nwatchlists: [{name: w, keywords: [x]}]\n"
    )
    config.write_text(f"database: postgres://bob:${{PGPASS}}@db/w\n{body}", encoding="utf-8")
    assert load_settings(config, {"PGPASS": SECRET}).database == f"postgres://bob:{SECRET}@db/w"
    config.write_text(f"database: mysql://bob:{SECRET}@db/w\n{body}", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, {})
    [problem] = caught.value.problems
    assert problem.line == 1 and 'unsupported database "mysql"' in problem.message
    assert SECRET not in str(caught.value)


def test_a_postgresql_url_migrates_an_empty_database_to_the_schema(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """From empty, through every revision, with the plain `postgresql://` spelling (mapped to
    psycopg 3) and a password (the test server trusts loopback, so any password is fine)."""
    database = postgres_url.rsplit("/", 1)[1]
    plain = f"postgresql://wirewatch:{SECRET}@127.0.0.1:{postgres_server.port}/{database}"
    with Store.open(plain) as store:
        assert store.known_guids("a", ["g"]) == set()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://wirewatch:{SECRET}@127.0.0.1:{postgres_server.port}/no_such_database"
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseUnavailableError) as caught:
        Store.open(url)
    message = str(caught.value)
    assert message.startswith("cannot open the database postgresql://wirewatch:***@127.0.0.1:")
    assert 'database "no_such_database" does not exist' in message
    assert SECRET not in message + caplog.text


def test_the_command_line_says_so_in_one_line(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    config = tmp_path / "w.yaml"
    url = f"postgresql://wirewatch:{SECRET}@127.0.0.1:{postgres_server.port}/no_such_database"
    config.write_text(
        f"database: {url}\nsources: [{{name: a, url: 'http://127.0.0.1:9/f'}}]\n"
        "watchlists: [{name: w, keywords: [x]}]\n",
        encoding="utf-8",
    )
    for command in (["run", "--once"], ["sources"]):
        result = run_cli("--config", str(config), *command)
        assert result.returncode == 1
        assert result.stderr.startswith("wirewatch: cannot open the database postgresql://"), (
            result.stderr
        )
        assert "Traceback" not in result.stderr
        assert SECRET not in result.stdout + result.stderr
