"""The database failing under the bot: locked by another process, the disk full, an I/O error.

These are not bugs in a poll or a send, and a traceback per failed step would bury the one line an
operator needs. So they are sorted here into a short, specific message, and the steps that meet
one (a poll, a delivery round, the batch write of 304s) log that line once and give up that step
only: the process keeps running, nothing half-written is committed (every store call is one
transaction), and the next scheduled step tries again, so work resumes by itself when the lock
is released or space returns.

Only `sqlalchemy.exc.OperationalError` is sorted: it is what SQLite and PostgreSQL drivers raise for
a database that cannot be used right now. A programming error (IntegrityError, a bad query) is
still a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError

__all__ = ["database_problem", "reported"]

log = logging.getLogger("wirewatch.database")

_SQLITE_MESSAGES = (
    ("database is locked", "the database is locked by another process"),
    ("database table is locked", "the database is locked by another process"),
    ("database or disk is full", "the disk is full (database or disk is full)"),
    ("disk i/o error", "disk I/O error (the disk may be full or failing)"),
    ("readonly database", "the database file is read-only"),
    ("unable to open database file", "the database file cannot be opened"),
)


def database_problem(error: BaseException) -> str | None:
    """A one-line description of a database that cannot be used right now, or None when
    `error` is something else (which the caller must treat as a bug)."""
    if not isinstance(error, OperationalError):
        return None
    cause = str(error.orig) if error.orig is not None else str(error)
    lowered = cause.lower()
    if getattr(error.orig, "sqlite_errorname", "") == "SQLITE_IOERR_WRITE":
        # What SQLite reports when a write stops at a size limit (EFBIG: a quota, a file size
        # limit) rather than at ENOSPC (which is SQLITE_FULL): to the operator, a full disk.
        return (
            "database unavailable: the disk is full or the file may not grow "
            f"({cause}: SQLITE_IOERR_WRITE); retried on the next turn"
        )
    for needle, meaning in _SQLITE_MESSAGES:
        if needle in lowered:
            return f"database unavailable: {meaning}; retried on the next turn"
    first_line = cause.strip().splitlines()[0] if cause.strip() else type(error).__name__
    return f"database unavailable: {first_line}; retried on the next turn"


@contextmanager
def reported(step: str) -> Iterator[None]:
    """Run a store step that may be skipped: a database problem is logged as one line (naming
    `step`) and swallowed; anything else propagates."""
    try:
        yield
    except OperationalError as error:
        problem = database_problem(error)
        if problem is None:  # pragma: no cover - every OperationalError is sorted
            raise
        log.error("%s skipped: %s", step, problem)
