"""One `wirewatch run` per SQLite file: a second one is refused, naming the file and the first.

SQLite is the zero-setup database for one process. Two workers on one file would each believe
every lease and every `sending` alert in it belongs to a dead process (bot.outbox_claims settles
them at start-up), and both would poll Telegram for updates (409 Conflict). So `run` (and
`run --once`) take an exclusive lock on a sidecar file next to the database, ``NAME.lock``, for
the whole life of the process, and write their pid into it for the message a second process
prints. Read-only commands (`check`, `sources`, `backtest`) take no lock.

An advisory ``flock`` rather than the mere presence of a pid file: the kernel releases it when
the process ends however it ends (SIGKILL, power loss), so a stale file never blocks a restart.
The file is left in place at exit: removing it could race with a process that just opened it.
PostgreSQL needs none of this; any number of workers share it (bot.outbox_claims, bot.leader).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .database_url import parse as parse_database_url


class AlreadyRunningError(Exception):
    """Another process holds the SQLite file; the message names the file and its pid."""


def lock_path(database: str) -> Path | None:
    """The sidecar lock file of a SQLite database URL; None for in-memory SQLite and PostgreSQL."""
    url = parse_database_url(database)
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or name in ("", ":memory:") or url.query.get("uri"):
        return None
    path = Path(name).expanduser().resolve()
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def single_process(database: str) -> Iterator[None]:
    """Hold the database's lock for the ``with`` block; AlreadyRunningError if another holds it."""
    path = lock_path(database)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(handle, 32, 0).decode("ascii", "replace").strip() or "unknown"
            database_file = path.with_name(path.name.removesuffix(".lock"))
            raise AlreadyRunningError(
                f"{database_file} is in use by another wirewatch process (pid {other}); "
                "SQLite serves one process: stop that one first, or move to PostgreSQL to run "
                "several workers"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(handle)  # releases the lock
