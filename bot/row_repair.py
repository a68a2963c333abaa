"""Find and repair rows whose values cannot be read back, so one bad row never stops the bot.

SQLite stores whatever it is given, whatever the column's declared type: a hand edit, a tool
writing to the file, or a bug of an older version can leave an unparsable instant in a datetime
column, text that is not JSON in a terms column, or a number where a date belongs. SQLAlchemy
then fails on the whole query that meets the row, and with it every step that reads that table:
feeds stop publishing (and the app cannot even start, it publishes at start-up), the outbox
wedges. PostgreSQL enforces column types, so this is SQLite's problem only.

The check reads each typed column (`UTCDateTime`, `JSONTerms`) raw and runs the very result
processor queries use on it, so "readable" means exactly what the store needs. A value that fails
is repaired in place, with a warning naming table, row, column and value:

- a nullable column is cleared (an article without a publication date is still an article);
- a required instant becomes the repair time (the row stays and sorts as new);
- required terms become an empty list (the match and its alert stay, without highlighted terms).

The app runs it at start-up, and again when publishing or delivering fails on a value it cannot
read (`repairing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Column, Engine
from sqlalchemy.engine import Dialect

from .schema import JSONTerms, UTCDateTime, metadata

__all__ = ["Repair", "repair_unreadable_rows", "repairing"]

T = TypeVar("T")

log = logging.getLogger("wirewatch.database")

_CHECKED = (UTCDateTime, JSONTerms)


@dataclass(frozen=True, slots=True)
class Repair:
    table: str
    rowid: int
    column: str
    value: Any
    replacement: Any
    error: str

    def describe(self) -> str:
        return (
            f"corrupt row repaired: {self.table} row {self.rowid}, column {self.column}: "
            f"{self.value!r} cannot be read ({self.error}); now {self.replacement!r}"
        )


def repair_unreadable_rows(engine: Engine, now: datetime) -> list[Repair]:
    """Repair every unreadable value in the typed columns (SQLite only; [] elsewhere)."""
    if engine.dialect.name != "sqlite":
        return []
    repairs: list[Repair] = []
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, _CHECKED):
                    continue
                # The dialect's own variant of the type: what a query really runs on the value.
                read = column.type.dialect_impl(engine.dialect).result_processor(
                    engine.dialect, None
                )
                rows = connection.exec_driver_sql(
                    f'SELECT rowid, "{column.name}" FROM "{table.name}" '
                    f'WHERE "{column.name}" IS NOT NULL'
                ).all()
                for rowid, value in rows:
                    try:
                        if read is not None:
                            read(value)
                    except Exception as error:  # whatever the processor refuses is unreadable
                        replacement = _replacement(column, now, engine.dialect)
                        connection.exec_driver_sql(
                            f'UPDATE "{table.name}" SET "{column.name}" = ? WHERE rowid = ?',
                            (replacement, rowid),
                        )
                        repair = Repair(
                            table.name, rowid, column.name, value, replacement, str(error)
                        )
                        log.warning("%s", repair.describe())
                        repairs.append(repair)
    return repairs


def _replacement(column: Column[Any], now: datetime, dialect: Dialect) -> Any:
    if column.nullable:
        return None
    if isinstance(column.type, JSONTerms):
        return "[]"
    store = column.type.dialect_impl(dialect).bind_processor(dialect)  # as inserts store it
    return store(now) if store is not None else now


async def repairing(step: Callable[[], Awaitable[T]], engine: Engine, now: datetime) -> T:
    """Run `step`; if it fails on a value it cannot read (ValueError, TypeError) and the check
    finds and repairs unreadable rows, run it once more. A row corrupted while the bot runs then
    costs one failed attempt, not every step from then on until a restart."""
    try:
        return await step()
    except (ValueError, TypeError):
        if not await asyncio.to_thread(repair_unreadable_rows, engine, now):
            raise
    return await step()
