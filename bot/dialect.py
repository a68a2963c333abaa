"""The one place that knows how each supported database differs where the bot cares: how it
spells INSERT ... ON CONFLICT, and how a one-statement transaction is run cheapest.

A leaf module (it imports no other part of bot/), so the store and the modules the store itself
imports (coordination, outbox claims) can share it without an import cycle.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, Table
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


def single_statements(engine: Engine) -> Engine:
    """The engine to run one-statement transactions on, with ``begin()``.

    On PostgreSQL that is autocommit: a statement is its own transaction there, and the BEGIN
    and COMMIT psycopg would send around it are two more round trips, on the path of every poll
    of a fleet (bench/scale). On SQLite, the engine itself: its driver runs a statement's
    implicit transaction until the statement is finished, and closing a connection in
    autocommit could roll back an ``UPDATE ... RETURNING`` not yet finalised.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine
