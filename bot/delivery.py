"""The outbox → Telegram (or the log): send what is pending, within Telegram's limits, and record
every outcome so that no alert is lost silently and none is sent twice.

The rules, in the order a send meets them:

- **Order**: each chat has one worker that sends its alerts oldest first; a chat whose first alert
  must wait holds the rest of its queue behind it. Chats are independent: one stuck chat never
  delays another.
- **Rate**: every send first takes a slot from the shared `Throttle` (1 message a second per chat,
  20 a minute per group, 30 a second overall), so Telegram never has to refuse us.
- **Claim**: an alert is marked `sending` before the request and `sent` (with Telegram's message
  id) after it. A crash between the two leaves `sending`, which the next start turns into
  `unknown` (Store.recover_interrupted_alerts).
- **Unknown outcomes are never resent.** When the request may have reached Telegram but no answer
  came (a read timeout, a connection dropped after sending, or the process killed mid-request),
  the alert becomes `unknown` and is logged, not retried: a duplicate message cannot be taken
  back, while a possibly-missed alert stays visible in the outbox, in `wirewatch`'s log and in
  the Atom feeds. The window is one request per chat being sent to at that moment.
- **429**: Telegram's `retry_after` is stored on the alert (`next_attempt_at`, so a restart honours
  it too) and that chat alone waits exactly that long; the others go on.
- **5xx and network errors before the request left us**: the alert goes back to `pending` and the
  chat backs off (one delivery round, then two, four... up to `backoff_cap`). The back-off lives
  in this process: `run --once` retries on its next run.
- **403** (the bot was blocked or removed): the chat is disabled in the store, its alerts end as
  `failed`, and it is reported in the log; nothing more is sent to it.
- **Group upgraded to a supergroup**: the new id is stored (`chat_states.migrated_to`), the alert
  is sent there at once, and every later alert for the old id follows it; ``on_chat_moved`` lets
  the app rewrite the id in the configuration file too.
- **Muted** (/mute): the watchlist's alerts still reach that chat, in order, but silently
  (Telegram's disable_notification) until the mute ends: muting never loses an alert.
- **Other permanent failures** (message refused even as plain text, chat not found) end that alert
  as `failed`; the chat's later alerts go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from .ratelimit import Throttle
from .settings import WatchlistSettings
from .store import AlertStateError, ChatState, PendingAlert, Store
from .telegram import DeliveryError, LinkPreview, Sender, SendOptions, format_alert

log = logging.getLogger("wirewatch.delivery")

_BATCH = 20
"""Alerts read per query for one chat (at most about 20 seconds of sending)."""
_MAX_MIGRATIONS = 3
"""Supergroup moves followed for one chat in one round (a loop would mean a broken server)."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    """Sends that did not go through (retried later, or ended if permanent)."""
    errors: tuple[str, ...] = ()
    unknown: int = 0
    """Sends whose outcome is unknown (never resent; see the module docstring)."""


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """How alerts of one watchlist look and where they land in one chat (from ChatRoute)."""

    thread_id: int | None = None
    timezone: str = "UTC"
    link_preview: LinkPreview = "off"


RouteTable = Mapping[tuple[str, int], RouteOptions]
"""(watchlist, chat id) → options."""


def route_table(watchlists: Iterable[WatchlistSettings]) -> dict[tuple[str, int], RouteOptions]:
    """The per-route options of every watchlist's chats, keyed the way outbox rows are."""
    return {
        (watchlist.name, route.chat): RouteOptions(route.thread, route.timezone, route.link_preview)
        for watchlist in watchlists
        for route in watchlist.chats
    }


@dataclass
class _Tally:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    errors: list[str] = field(default_factory=list)

    def report(self) -> DeliveryReport:
        return DeliveryReport(self.sent, self.failed, tuple(self.errors), self.unknown)


_Next = Literal["next", "refetch", "hold"]
Blocking = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call and awaits its result (asyncio.to_thread by default)."""


class Deliverer:
    """Sends the outbox; keep one per process so that rate limits and back-off span rounds.

    ``max_wait``: the longest a round waits in place for a chat (Telegram's retry_after, or an
    alert stored with a later ``next_attempt_at``); a chat that must wait longer is left for a
    later round. ``max_failures``: temporary failures one chat may have in a round before it is
    left for a later round.

    ``blocking`` runs the hot-path database calls (claim, record, read the queue); by default in
    a worker thread, because a SQLite commit waits for the disk (fsync), and on the event loop
    those waits would delay every other chat's send and slow the whole pace. Tests with virtual
    time pass a direct call, which keeps the order of events deterministic.
    """

    def __init__(
        self,
        store: Store,
        sender: Sender,
        outcome: str,
        *,
        watchlist_titles: Mapping[str, str],
        source_titles: Mapping[str, str],
        routes: RouteTable | None = None,
        clock: Callable[[], datetime],
        throttle: Throttle | None = None,
        max_wait: float = 30.0,
        max_failures: int = 3,
        backoff_base: float = 30.0,
        backoff_cap: float = 900.0,
        blocking: Blocking | None = None,
        on_chat_moved: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.outcome = outcome
        self.watchlist_titles = watchlist_titles
        self.source_titles = source_titles
        self.routes: RouteTable = routes or {}
        self.clock = clock
        self.throttle = throttle or Throttle()
        self.max_wait = max_wait
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._blocking: Blocking = blocking or asyncio.to_thread
        self.on_chat_moved = on_chat_moved
        """Told (old id, new id) when a group became a supergroup, to update the configuration;
        the store's record of the move already covers every alert meanwhile."""
        self._backoff: dict[int, tuple[int, float]] = {}
        """chat → (failures in a row, throttle-clock time before which it is not tried)."""

    async def deliver(self, should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
        """One round: send every pending alert that may go now or within ``max_wait``."""
        tally = _Tally()
        running: dict[int, asyncio.Task[bool]] = {}
        held: set[int] = set()
        try:
            while True:
                if not should_stop():
                    for chat_id, due in await self._blocking(self.store.pending_chats):
                        if chat_id in running or chat_id in held:
                            continue
                        if self._backing_off(chat_id) or self._wait(due) > self.max_wait:
                            continue
                        worker = self._deliver_chat(chat_id, tally, should_stop)
                        running[chat_id] = asyncio.create_task(worker)
                if not running:
                    break
                await asyncio.wait(
                    running.values(), timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                for chat_id, task in list(running.items()):
                    if task.done():
                        del running[chat_id]
                        if task.result():  # the chat must wait: not again this round
                            held.add(chat_id)
        finally:
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.wait(running.values())
        return tally.report()

    def _wait(self, due: datetime | None) -> float:
        """Seconds before an alert stored with ``due`` as its next attempt may be tried."""
        return 0.0 if due is None else (due - self.clock()).total_seconds()

    def _backing_off(self, chat_id: int) -> bool:
        """Whether the chat is waiting after an error; never waited out in place, because a
        round that sleeps holds up the alerts of chats that are fine."""
        backoff = self._backoff.get(chat_id)
        return backoff is not None and backoff[1] > self.throttle.now()

    async def _deliver_chat(
        self, chat_id: int, tally: _Tally, should_stop: Callable[[], bool]
    ) -> bool:
        """Send one chat's queue in order; True if the chat was left waiting (held)."""
        failures = migrations = 0
        while not should_stop():
            batch = await self._blocking(
                functools.partial(self.store.pending_alerts, limit=_BATCH, chat_id=chat_id)
            )
            if not batch:
                return False
            states = await self._blocking(self.store.chat_states)
            muted = await self._blocking(functools.partial(self.store.muted, self.clock()))
            others = await self._blocking(
                functools.partial(self.store.other_reports, [alert.article.id for alert in batch])
            )
            target = _resolve(chat_id, states)
            refused = states.get(target)
            if refused is not None and refused.disabled_reason is not None:
                self._end_refused(batch, refused.disabled_reason, tally)
                continue
            for alert in batch:
                wait = self._wait(alert.next_attempt_at)
                if wait > self.max_wait or self._backing_off(chat_id):
                    return True
                if wait > 0:
                    await self.throttle.sleep(wait)
                await self.throttle.acquire(target)
                if should_stop():
                    return False
                try:
                    await self._claim(alert)
                except AlertStateError:  # another process took it meanwhile: theirs to send
                    continue
                text, options = self._render(
                    alert, (chat_id, alert.watchlist) in muted, others.get(alert.article.id, ())
                )
                self.throttle.leaving(target)
                failure: DeliveryError | None = None
                try:
                    message_id = await self.sender.send(target, text, options)
                except DeliveryError as error:
                    failure = error
                if failure is None:
                    await self._blocking(
                        functools.partial(
                            self.store.mark_alert_sent,
                            alert.id,
                            self.clock(),
                            self.outcome,
                            message_id,
                        )
                    )
                    self._backoff.pop(chat_id, None)
                    tally.sent += 1
                    continue
                step = self._settle(alert, chat_id, target, failure, tally)
                if failure.migrate_to is not None:
                    await self._chat_moved(target, failure.migrate_to)
                    migrations += 1
                    if migrations > _MAX_MIGRATIONS:
                        return True
                elif not failure.permanent and not failure.uncertain:
                    failures += 1
                    if step == "hold" or failures >= self.max_failures:
                        return True
                if step != "next":
                    break
        return False

    async def _chat_moved(self, old_chat: int, new_chat: int) -> None:
        if self.on_chat_moved is None:
            return
        try:
            await self.on_chat_moved(old_chat, new_chat)
        except Exception:  # the move is stored; a config that cannot be rewritten is only logged
            log.exception("could not write chat %s's new id %s to the config", old_chat, new_chat)

    async def _claim(self, alert: PendingAlert) -> None:
        """Mark the alert `sending`, the step before the request.

        Runs in a thread like the other hot-path writes (see `blocking`). If this task is
        cancelled meanwhile (shutdown), the claim still completes in its thread; it is then
        handed back (`pending`), because nothing was sent, instead of being left to become
        `unknown` at the next start.
        """
        claim = asyncio.ensure_future(
            self._blocking(functools.partial(self.store.mark_alert_sending, alert.id, self.clock()))
        )
        try:
            await asyncio.shield(claim)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(claim), timeout=10)
                self.store.mark_alert_failed(alert.id, "stopped before sending", self.clock())
            raise

    def _render(
        self, alert: PendingAlert, silent: bool, other_sources: Sequence[str]
    ) -> tuple[str, SendOptions]:
        route = self.routes.get((alert.watchlist, alert.chat_id), RouteOptions())
        article = alert.article
        text = format_alert(
            alert,
            self.watchlist_titles.get(alert.watchlist, alert.watchlist),
            self.source_titles.get(article.source, article.source),
            timezone=route.timezone,
            also_reported_by=[self.source_titles.get(name, name) for name in other_sources],
        )
        options = SendOptions(
            thread_id=route.thread_id,
            link_preview=route.link_preview,
            preview_url=article.url or None,
            button_url=article.url or None,
            silent=silent,
            mute_watchlist=alert.watchlist,
        )
        return text, options

    def _settle(
        self, alert: PendingAlert, chat_id: int, target: int, error: DeliveryError, tally: _Tally
    ) -> _Next:
        """Record a failed send; say whether to go on with the next alert, re-read the queue, or
        leave this chat for a later round."""
        now = self.clock()
        message = str(error)
        if error.uncertain:
            self.store.mark_alert_unknown(alert.id, message, now)
            tally.unknown += 1
            tally.errors.append(f"chat {chat_id}: outcome unknown, not resent: {message}")
            log.warning(
                "alert %s to chat %s: outcome unknown (%s); not sent again, to avoid a duplicate",
                alert.id,
                target,
                message,
            )
            return "next"
        if error.migrate_to is not None:
            self.store.record_chat_migration(target, error.migrate_to, now)
            if target != chat_id:
                self.store.record_chat_migration(chat_id, error.migrate_to, now)
            self.store.mark_alert_failed(alert.id, message, now)
            log.warning("chat %s became supergroup %s; alerts go there", target, error.migrate_to)
            return "refetch"
        tally.failed += 1
        tally.errors.append(f"chat {chat_id}: {message}")
        if error.chat_refused:
            self.store.set_chat_disabled(target, message, now)
            self.store.mark_alert_failed(alert.id, message, now, permanent=True)
            log.error("chat %s refuses the bot (%s): alerts to it are disabled", target, message)
            return "refetch"
        if error.permanent:
            self.store.mark_alert_failed(alert.id, message, now, permanent=True)
            log.warning("alert %s to chat %s given up: %s", alert.id, target, message)
            return "next"
        if error.retry_after is not None:
            retry_at = now + timedelta(seconds=error.retry_after)
            self.store.mark_alert_failed(alert.id, message, now, retry_at=retry_at)
            self.throttle.hold(target, error.retry_after)
            log.warning("chat %s: flood control, waiting %gs", target, error.retry_after)
            return "refetch"
        streak = self._backoff.get(chat_id, (0, 0.0))[0] + 1
        delay = min(self.backoff_base * 2 ** (streak - 1), self.backoff_cap)
        self._backoff[chat_id] = (streak, self.throttle.now() + delay)
        self.store.mark_alert_failed(alert.id, message, now)
        log.warning("alert %s to chat %s not sent, will retry: %s", alert.id, target, message)
        return "hold"

    def _end_refused(self, batch: list[PendingAlert], reason: str, tally: _Tally) -> None:
        """A disabled chat's alerts end as failed without a request (Telegram would refuse)."""
        for alert in batch:
            now = self.clock()
            try:
                self.store.mark_alert_sending(alert.id, now)
            except AlertStateError:
                continue
            self.store.mark_alert_failed(
                alert.id, f"chat disabled: {reason}", now, permanent=True
            )
            tally.failed += 1


def _resolve(chat_id: int, states: Mapping[int, ChatState]) -> int:
    """The chat alerts for ``chat_id`` go to now (following supergroup upgrades)."""
    seen = {chat_id}
    state = states.get(chat_id)
    while state is not None and state.migrated_to is not None and state.migrated_to not in seen:
        chat_id = state.migrated_to
        seen.add(chat_id)
        state = states.get(chat_id)
    return chat_id
