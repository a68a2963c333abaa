"""Admin alerts: tell a person (``telegram.admin_chat``) when something needs them.

Conditions, each with its own key:

- ``source:NAME`` a source whose polls have failed for longer than
  ``admin_alerts.source_failing_for`` (since its last success; a source that never succeeded
  counts from when this check first saw it failing), or that answered 410 Gone and was disabled;
- ``outbox`` more than ``admin_alerts.outbox_backlog`` alerts waiting to go, all chats together;
- ``disk:PATH`` less than ``admin_alerts.min_free_disk_mb`` free on the disk holding the SQLite
  database or ``output_dir`` (one report per disk, named by the first path on it).

Each condition is reported at most once per `REPEAT` (a day) while it lasts, and gets one
"resolved" note when it clears after a report. What was reported when is kept in the database
(``admin_reports``), so a restart neither repeats a report nor forgets one. Reports go through the
same Sender as alerts (never the watchlist outbox: they must not wait behind the backlog they may
be about); with no admin chat they are only logged. A failed send is tried again at the next check.

`plan_reports` is the pure decision (tested with tables); `check` reads the store, the disks and
the clock, sends, and records.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from .dialect import upsert_insert as _insert
from .schema import admin_reports
from .settings import Settings
from .store import Store
from .telegram import DeliveryError, Sender, SendOptions

log = logging.getLogger("wirewatch.admin")

REPEAT = timedelta(days=1)
"""A condition that lasts is reported again after this long."""

DiskProbe = Callable[[Path], int]
"""Free bytes on the disk holding a path (tests pass a fake)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """A condition that holds now: what to say, and since when it holds if the caller knows
    (a source's last success); None: since this check first saw it."""

    key: str
    message: str
    since: datetime | None = None
    after: timedelta = timedelta(0)
    """Reported only once it has held this long."""


@dataclass(frozen=True, slots=True)
class ReportState:
    """One row of ``admin_reports``."""

    key: str
    active: bool
    since: datetime | None
    reported_at: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class Plan:
    messages: tuple[str, ...]
    states: tuple[ReportState, ...]
    """Rows to write (only those that changed), each with the message that goes with it."""
    sent_with: tuple[int | None, ...]
    """For each state, the index of its message in `messages` (None: no message needed)."""


def plan_reports(
    observed: Sequence[Observation], stored: Mapping[str, ReportState], now: datetime
) -> Plan:
    """Decide what to tell the admin now, and the rows to store if it is told."""
    messages: list[str] = []
    states: list[ReportState] = []
    sent_with: list[int | None] = []
    holding = {observation.key for observation in observed}
    for observation in observed:
        row = stored.get(observation.key)
        since = observation.since or (row.since if row and row.since else now)
        due = now - since >= observation.after
        fresh = row is None or row.reported_at is None or now - row.reported_at >= REPEAT
        if due and fresh:
            messages.append(observation.message)
            states.append(ReportState(observation.key, True, since, now, observation.message))
            sent_with.append(len(messages) - 1)
        elif row is None or row.since != since:
            active = row.active if row else False
            reported = row.reported_at if row else None
            detail = row.detail if row else observation.message
            states.append(ReportState(observation.key, active, since, reported, detail))
            sent_with.append(None)
    for key, row in stored.items():
        if key in holding or (not row.active and row.since is None):
            continue
        if row.active:
            messages.append(f"Resolved: {row.detail}")
            sent_with.append(len(messages) - 1)
        else:
            sent_with.append(None)
        states.append(replace(row, active=False, since=None))
    return Plan(tuple(messages), tuple(states), tuple(sent_with))


def observe(
    settings: Settings, store: Store, now: datetime, free_bytes: DiskProbe
) -> list[Observation]:
    """Every condition that holds now (see the module docstring)."""
    rules = settings.admin_alerts
    found: list[Observation] = []
    states = {state.name: state for state in store.source_states()}
    for source in settings.sources:
        state = states.get(source.name)
        if state is None or state.url != source.url:
            continue
        if state.disabled_reason:
            found.append(
                Observation(
                    f"source:{source.name}",
                    f"Source {source.name} is disabled: {state.disabled_reason}. "
                    "Change its URL or remove it.",
                )
            )
        elif state.failure_streak:
            found.append(
                Observation(
                    f"source:{source.name}",
                    f"Source {source.name} has failed {state.failure_streak} polls in a row"
                    f" (last success: {_when(state.last_success_at)}): {state.last_error}",
                    since=state.last_success_at,
                    after=rules.source_failing_for,
                )
            )
    counts = store.alert_counts()
    waiting = counts.get("pending", 0) + counts.get("sending", 0)
    if waiting > rules.outbox_backlog:
        found.append(
            Observation(
                "outbox",
                f"{waiting} alerts are waiting to be sent (more than {rules.outbox_backlog}).",
            )
        )
    threshold = rules.min_free_disk_mb * 1024 * 1024
    for path in _disk_paths(settings):
        free = free_bytes(path)
        if free < threshold:
            found.append(
                Observation(
                    f"disk:{path}",
                    f"The disk of {path} has {free // (1024 * 1024)} MiB free "
                    f"(less than {rules.min_free_disk_mb} MiB).",
                )
            )
    return found


async def check(
    settings: Settings,
    store: Store,
    sender: Sender | None,
    now: datetime,
    free_bytes: DiskProbe | None = None,
) -> list[str]:
    """Observe, decide, send, record; return the messages that went out (or were logged)."""
    observed = observe(settings, store, now, free_bytes or free_disk_bytes)
    plan = plan_reports(observed, load_states(store.engine), now)
    chat = settings.telegram.admin_chat
    delivered: set[int] = set()
    for index, message in enumerate(plan.messages):
        if chat is None or sender is None:
            log.warning("admin alert: %s", message)
            delivered.add(index)
            continue
        try:
            await sender.send(
                chat, html.escape(f"⚠️ wirewatch: {message}", quote=False), SendOptions()
            )
        except DeliveryError as error:
            log.error("admin alert to chat %s not sent (%s): %s", chat, error, message)
            continue
        delivered.add(index)
    store_states(
        store.engine,
        [
            state
            for state, index in zip(plan.states, plan.sent_with, strict=True)
            if index is None or index in delivered
        ],
    )
    return [message for index, message in enumerate(plan.messages) if index in delivered]


def load_states(engine: Engine) -> dict[str, ReportState]:
    with engine.connect() as connection:
        rows = connection.execute(select(admin_reports)).all()
    return {
        row.condition: ReportState(
            row.condition, bool(row.active), row.since, row.reported_at, row.detail
        )
        for row in rows
    }


def store_states(engine: Engine, states: Sequence[ReportState]) -> None:
    if not states:
        return
    with engine.begin() as connection:
        for state in states:
            values = {
                "active": int(state.active),
                "since": state.since,
                "reported_at": state.reported_at,
                "detail": state.detail,
            }
            statement = _insert(connection, admin_reports).values(condition=state.key, **values)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[admin_reports.c.condition], set_=values
                )
            )


def free_disk_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the disk holding `path` (or its nearest existing
    parent: the output directory may not exist yet)."""
    here = path.resolve()
    while not here.exists() and here != here.parent:
        here = here.parent
    return shutil.disk_usage(here).free


def _disk_paths(settings: Settings) -> list[Path]:
    """The SQLite database's directory and output_dir, one per disk (by device number)."""
    paths: list[Path] = []
    url = make_url(settings.database)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        paths.append(Path(url.database or "").expanduser().parent)
    paths.append(settings.output_dir)
    seen: set[int] = set()
    unique: list[Path] = []
    for path in paths:
        device = _device(path)
        if device not in seen:
            seen.add(device)
            unique.append(path)
    return unique


def _device(path: Path) -> int:
    here = path.resolve()
    while not here.exists() and here != here.parent:
        here = here.parent
    return os.stat(here).st_dev


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"
