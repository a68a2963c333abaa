"""A throwaway PostgreSQL server for the tests, started from Debian's postgresql binaries.

The tests need a real server (leases, SKIP LOCKED and advisory locks are what is under test, and
no fake has them), and the brief wants no setup beyond `.ci/run`: so the session starts its own
cluster in a temporary folder, on a free loopback port, with durability switched off (a test
database is thrown away; fsync would only make the suite slower), and stops it at the end.

PostgreSQL refuses to run as root. Under root (CI containers), the cluster belongs to the
`postgres` account that Debian's package creates, and its commands run through `runuser`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import psycopg

SUPERUSER = "wirewatch"


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian keeps them out of PATH, one folder per
    major version; the newest wins. PATH is the fallback (other distributions, Homebrew)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One cluster, many databases: each test asks for a fresh database by name."""

    def __init__(self, bindir: Path, settings: Sequence[str] = ()) -> None:
        """`settings`: more ``name=value`` server settings (bench/scale loads
        pg_stat_statements this way)."""
        self.bindir = bindir
        self.settings = tuple(settings)
        # Not under pytest's tmp folder: that one is private to root, and under root the cluster
        # belongs to `postgres`, who must be able to reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="wirewatch-postgres-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            ["-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"],
        )
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                *(f"-c {setting}" for setting in self.settings),
            ]
        )
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ],
        )

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if (self.data / "postmaster.pid").exists():
            self._run(
                "pg_ctl", ["-D", str(self.data), "-m", "immediate", "-w", "stop"], check=False
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(
        self, template: str | None = None, *, icu_locale: str | None = None, timezone: str = ""
    ) -> str:
        """A new database, empty or a copy of `template` (a database nobody is connected to);
        returns its SQLAlchemy URL.

        The cluster sorts text by bytes (locale C), as SQLite does; `icu_locale` (PostgreSQL
        15+) gives an empty database the collation of a typical production server instead, and
        `timezone` its sessions' time zone, to prove results do not depend on either."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        if icu_locale is not None:
            self.execute(
                f"CREATE DATABASE {name} TEMPLATE template0 LOCALE 'C' "
                f"LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
            )
        elif template is None:
            self.execute(f"CREATE DATABASE {name}")
        else:
            # FILE_COPY copies the template's files at once: a few milliseconds for a small
            # database, where the default (WAL_LOG, PostgreSQL 15+) logs every block.
            strategy = " STRATEGY FILE_COPY" if self._admin().info.server_version >= 150000 else ""
            self.execute(f"CREATE DATABASE {name} TEMPLATE {template}{strategy}")
        if timezone:
            self.execute(f"ALTER DATABASE {name} SET timezone TO '{timezone}'")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, closing whatever connections a test left
        open to it (FORCE, PostgreSQL 13+), so a forgotten store cannot fail the next test."""
        name = url.rsplit("/", 1)[1]
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def execute(self, statement: str) -> None:
        """Run one statement on the `postgres` database, outside any transaction (CREATE and DROP
        DATABASE refuse to run inside one). One kept connection: starting psql for each test's
        database would cost more than creating the database itself."""
        self._admin().execute(statement.encode())

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
            )
        return self._connection

    def _run(self, tool: str, args: Sequence[str], *, check: bool = True) -> None:
        path = self.bindir / tool
        command = [str(path) if path.exists() else tool, *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )
