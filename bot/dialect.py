"""The one place that knows how each supported database spells INSERT ... ON CONFLICT.

A leaf module (it imports no other part of bot/), so the store and the modules the store itself
imports (coordination, outbox claims) can share it without an import cycle.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(connection: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT support, in the dialect of the connection.

    Both dialects spell the clause the same way, so callers stay portable.
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no ON CONFLICT support for the {dialect} dialect")
