"""Alembic environment for wirewatch, driven from code (bot.store.Store.open), not from alembic.ini.

Store.open hands over its own open connection in `config.attributes["connection"]`, so migrations
run on a connection that already has the SQLite pragmas and transaction handling of the store, and
inside the caller's transaction. For ad-hoc use (`alembic revision --autogenerate` with a config
that sets `sqlalchemy.url`), an engine is built from that URL instead.

Logging is deliberately left alone: the application configures it once, at start-up.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from bot.schema import metadata


def _run(connection: Connection) -> None:
    # Batch mode lets later revisions alter tables on SQLite, which has little ALTER TABLE.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = create_engine(url)
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
