"""The outbox → Telegram (or the log): send what is pending, within Telegram's limits, and record
every outcome so that no alert is lost silently and none is sent twice.

The rules, in the order a send meets them:

- **Order**: each chat has one worker that sends its alerts oldest first; a chat whose first alert
  must wait holds the rest of its queue behind it. Chats are independent: one stuck chat never
  delays another.
- **Rate**: every send first takes a slot from the shared `Throttle` (1 message a second per chat,
  20 a minute per group, 30 a second overall), so Telegram never has to refuse us.
- **Claim**: an alert is marked `sending` before the request and `sent` (with Telegram's message
  id) after it. A crash between the two leaves `sending`, which becomes `unknown` once the
  process is known to be gone: at the next start on SQLite (one process), or when its lease on
  the chat expires when several workers share PostgreSQL (bot.outbox_claims).
- **One worker per chat**: a round first leases the chat (bot.outbox_claims) and skips a chat
  another worker holds, waiting for it within ``max_wait`` when that worker's lease runs out
  (it died). Every claim checks the lease is still ours, and renews it.
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
- **Muted** (/mute, or the buttons; see bot.mutes): alerts of a muted watchlist or from a muted
  source still reach that chat, in order, but silently (Telegram's disable_notification) until
  the mute ends: muting never loses or holds back an alert. A digest is silent when every alert
  in it is muted.
- **Other permanent failures** (message refused even as plain text, chat not found) end that alert
  as `failed`; the chat's later alerts go on.
- **Rhythm** (bot.rhythm, bot.digest): a route in digest mode, an alert queued in quiet hours, or a
  chat in a burst holds alerts back; when they are due they go as a digest. A digest message
  follows every rule above, for all the alerts it carries at once: they are claimed together
  (`sending`) right before the request and settled together after it, so each alert is in one
  digest message only, never also sent singly, and a crash mid-request leaves them `unknown`
  like a single alert. A digest split into several messages claims and settles each message's
  alerts separately: a crash between two messages leaves the rest pending for the next round.
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

from .digest import (
    BURST_OVER,
    BurstRule,
    ChatPlan,
    burst_note,
    compose_digest,
    digest_items,
    plan_chat,
)
from .metrics import Metrics
from .mutes import Mutes
from .outbox_bound import clear_folded, folded_alerts, folded_note
from .outbox_claims import ChatLease, ChatLeases, LeasedElsewhere, LeaseLost
from .ratelimit import Throttle
from .rhythm import Rhythm, parse_quiet_hours, parse_schedule
from .settings import ChatRoute, TelegramSettings, WatchlistSettings
from .store import AlertStateError, ChatState, PendingAlert, Store
from .telegram import DeliveryError, LinkPreview, Sender, SendOptions, format_alert

log = logging.getLogger("wirewatch.delivery")

_BATCH = 20
"""Single alerts sent per plan of one chat (at most about 20 seconds of sending)."""
_PLAN_LIMIT = 5000
"""Pending alerts of one chat read to plan its round (a daily digest can hold many)."""
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
    rhythm: Rhythm = field(default_factory=Rhythm)
    """Instant or digest, and quiet hours (bot.rhythm)."""


def route_options(route: ChatRoute) -> RouteOptions:
    """A validated route as delivery needs it (settings checked the texts already)."""
    quiet = parse_quiet_hours(route.quiet_hours) if route.quiet_hours else None
    rhythm = Rhythm(parse_schedule(route.schedule), quiet, route.timezone)
    return RouteOptions(route.thread, route.timezone, route.link_preview, rhythm)


def burst_rule(telegram: TelegramSettings) -> BurstRule | None:
    """The configured burst rule (telegram.burst_threshold / burst_every); None when off."""
    if telegram.burst_threshold <= 0:
        return None
    return BurstRule(telegram.burst_threshold, telegram.burst_every)


RouteTable = Mapping[tuple[str, int], RouteOptions]
"""(watchlist, chat id) → options."""


def route_table(watchlists: Iterable[WatchlistSettings]) -> dict[tuple[str, int], RouteOptions]:
    """The per-route options of every watchlist's chats, keyed the way outbox rows are."""
    return {
        (watchlist.name, route.chat): route_options(route)
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


@dataclass
class _ChatRound:
    """One chat's setbacks in one round, against ``max_failures`` and ``_MAX_MIGRATIONS``."""

    failures: int = 0
    migrations: int = 0


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
        burst: BurstRule | None = None,
        metrics: Metrics | None = None,
        leases: ChatLeases | None = None,
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
        self.burst = burst
        """When a chat's backlog counts as a burst of news (see bot.digest); None: never (the
        app passes the configured rule)."""
        """Told (old id, new id) when a group became a supergroup, to update the configuration;
        the store's record of the move already covers every alert meanwhile."""
        self._backoff: dict[int, tuple[int, float]] = {}
        """chat → (failures in a row, throttle-clock time before which it is not tried)."""
        self.metrics = metrics or Metrics()
        """Where settled alerts and delivery latency are counted (bot.metrics)."""
        self.leases = leases or ChatLeases(store.engine)
        """This process's leases on chats (bot.outbox_claims); one owner id per Deliverer."""
        self._leases: dict[int, ChatLease] = {}
        """The chats this round holds, by outbox chat id."""

    async def deliver(self, should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
        """One round: send every pending alert that may go now or within ``max_wait``."""
        tally = _Tally()
        running: dict[int, asyncio.Task[bool]] = {}
        held: set[int] = set()
        busy: dict[int, datetime] = {}
        """Chats another worker holds → when to try again (its lease's expiry)."""
        started = self.clock()
        await self._recover_abandoned()
        heartbeat = asyncio.create_task(self._keep_leases())
        try:
            while True:
                if not should_stop():
                    pending = await self._blocking(self.store.pending_chats)
                    waiting = {chat_id for chat_id, _ in pending}
                    busy = {chat: at for chat, at in busy.items() if chat in waiting}
                    for chat_id, due in pending:
                        if chat_id in running or chat_id in held:
                            continue
                        if busy.get(chat_id, started) > self.clock():
                            continue
                        if self._backing_off(chat_id) or self._wait(due) > self.max_wait:
                            continue
                        taken = await self._lease(chat_id)
                        if isinstance(taken, LeasedElsewhere):
                            until = taken.until or self.clock() + timedelta(seconds=0.5)
                            if (until - started).total_seconds() > self.max_wait:
                                held.add(chat_id)  # a live worker has it: theirs to send
                            else:
                                busy[chat_id] = until  # may be a dead worker's: try again then
                            continue
                        worker = self._deliver_leased(taken, tally, should_stop)
                        running[chat_id] = asyncio.create_task(worker)
                if not running:
                    if should_stop() or not busy:
                        break
                    await self.throttle.sleep(0.5)
                    continue
                await asyncio.wait(
                    running.values(), timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                for chat_id, task in list(running.items()):
                    if task.done():
                        del running[chat_id]
                        if task.result():  # the chat must wait: not again this round
                            held.add(chat_id)
        finally:
            heartbeat.cancel()
            for task in running.values():
                task.cancel()
            await asyncio.wait([heartbeat, *running.values()])
        return tally.report()

    async def _recover_abandoned(self) -> None:
        """Settle what workers that died mid-send left `sending` (bot.outbox_claims)."""
        call = functools.partial(self.leases.recover_abandoned, self.clock())
        recovered = await self._blocking(call)
        if recovered:
            self.metrics.count_alerts("unknown", recovered)
            log.warning(
                "%d alert(s) were being sent by a worker that stopped (its lease expired); "
                "their delivery is unknown and they are not sent again",
                recovered,
            )

    async def _lease(self, chat_id: int) -> ChatLease | LeasedElsewhere:
        call = functools.partial(self.leases.acquire, chat_id, self.clock())
        taken: ChatLease | LeasedElsewhere = await self._blocking(call)
        if isinstance(taken, ChatLease) and taken.recovered:
            self.metrics.count_alerts("unknown", taken.recovered)
            log.warning(
                "chat %s: %d alert(s) were being sent by a worker that stopped (its lease "
                "expired); their delivery is unknown and they are not sent again",
                chat_id,
                taken.recovered,
            )
        return taken

    async def _keep_leases(self) -> None:
        """Renew this worker's leases while the round runs, well before they expire: an
        expired lease must mean a dead worker, never a slow send or a long rate-limit wait."""
        while True:
            await asyncio.sleep(self.leases.seconds / 3)
            try:
                await self._blocking(functools.partial(self.leases.renew, self.clock()))
            except Exception:  # the database is away: the claims will say if a lease was lost
                log.exception("could not renew this worker's chat leases")

    async def _deliver_leased(
        self, lease: ChatLease, tally: _Tally, should_stop: Callable[[], bool]
    ) -> bool:
        """``_deliver_chat`` under ``lease``, released afterwards so any worker may take the
        chat at once (its recent sends stay with the lease, for the rate limits)."""
        self._leases[lease.chat_id] = lease
        try:
            return await self._deliver_chat(lease.chat_id, tally, should_stop)
        finally:
            del self._leases[lease.chat_id]
            try:
                call = functools.partial(self.leases.release, lease.chat_id, self.clock())
                await self._blocking(call)
            except Exception:  # it expires on its own
                log.exception("could not release the lease on chat %s", lease.chat_id)

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
        """Send one chat's due digests and single alerts in order; True if the chat was left
        waiting (held), including when all it has left is held back for a later digest."""
        counts = _ChatRound()
        seeded = False
        while not should_stop():
            pending = await self._blocking(
                functools.partial(self.store.pending_alerts, limit=_PLAN_LIMIT, chat_id=chat_id)
            )
            if not pending:
                return False
            states = await self._blocking(self.store.chat_states)
            muted = await self._blocking(functools.partial(self.store.mutes, self.clock()))
            target = _resolve(chat_id, states)
            if not seeded:
                self._seed(chat_id, target)
                seeded = True
            refused = states.get(target)
            if refused is not None and refused.disabled_reason is not None:
                self._end_refused(pending[:_BATCH], refused.disabled_reason, tally)
                continue
            own = states.get(chat_id)
            burst_since = own.burst_since if own is not None else None
            rhythm = functools.partial(self._rhythm, target)
            plan = plan_chat(pending, rhythm, burst_since, self.burst, self.clock())
            if plan.digest or plan.burst != "none":
                outcome = await self._deliver_digest(
                    chat_id, target, plan, muted, tally, counts, should_stop
                )
                if outcome is not None:
                    return outcome
                continue
            batch = plan.singles[:_BATCH]
            if not batch:
                return True  # only alerts held for a later digest
            others = await self._blocking(
                functools.partial(self.store.other_reports, [alert.article.id for alert in batch])
            )
            for alert in batch:
                wait = self._wait(alert.next_attempt_at)
                if wait > self.max_wait or self._backing_off(chat_id):
                    return True
                if wait > 0:
                    await self.throttle.sleep(wait)
                await self.throttle.acquire(target)
                if should_stop():
                    return False
                claimed = await self._claim(chat_id, [alert.id])
                if claimed is None:
                    return True  # another worker took the chat over
                if not claimed:
                    continue
                text, options = self._render(
                    alert,
                    target,
                    muted.silences(chat_id, alert.watchlist, alert.article.source),
                    others.get(alert.article.id, ()),
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
                    await self._note_sent(chat_id)
                    self._backoff.pop(chat_id, None)
                    tally.sent += 1
                    self._count_sent([alert])
                    continue
                step = self._settle([alert.id], chat_id, target, failure, tally)
                held = await self._after_failure(target, failure, step, counts)
                if held is not None:
                    return held
                if step != "next":
                    break
        return False

    async def _after_failure(
        self, target: int, failure: DeliveryError, step: _Next, counts: _ChatRound
    ) -> bool | None:
        """Count a failed send against this round's allowances; True: leave the chat for a
        later round; None: go on."""
        if failure.migrate_to is not None:
            await self._chat_moved(target, failure.migrate_to)
            counts.migrations += 1
            if counts.migrations > _MAX_MIGRATIONS:
                return True
        elif not failure.permanent and not failure.uncertain:
            counts.failures += 1
            if step == "hold" or counts.failures >= self.max_failures:
                return True
        return None

    def _route(self, watchlist: str, chat_id: int, target: int) -> RouteOptions:
        """The options of ``watchlist``'s route for alerts queued under ``chat_id`` and going to
        ``target`` (``_resolve``: the chat after any supergroup upgrade). Every lookup goes
        through here because, once App.move_chat has rewritten the configuration, the table is
        keyed by the new id while older alerts still carry the old one; before that rewrite (or
        if it failed) only the old id is configured."""
        route = self.routes.get((watchlist, target))
        if route is None and target != chat_id:
            route = self.routes.get((watchlist, chat_id))
        return route or RouteOptions()

    def _rhythm(self, target: int, alert: PendingAlert) -> Rhythm:
        return self._route(alert.watchlist, alert.chat_id, target).rhythm

    async def _deliver_digest(
        self,
        chat_id: int,
        target: int,
        plan: ChatPlan,
        muted: Mutes,
        tally: _Tally,
        counts: _ChatRound,
        should_stop: Callable[[], bool],
    ) -> bool | None:
        """Send the digest the plan says is due (and switch the burst state around it).

        A new burst interval is stored before its digest goes (a crash then still sends that
        digest after the restart); the end of a burst is stored after its last digest went.
        Returns None when everything due went (plan again), else what ``_deliver_chat`` returns.
        """
        if plan.burst in ("start", "continue"):
            states = await self._blocking(self.store.chat_states)
            own = states.get(chat_id)
            if plan.burst == "continue" or own is None or own.burst_since is None:
                since = self.clock()
                await self._blocking(
                    functools.partial(self.store.set_chat_burst, chat_id, since, since)
                )
                log.warning("chat %s: burst of news, alerts now go as digests", chat_id)
        if plan.digest:
            wait = max(self._wait(alert.next_attempt_at) for alert in plan.digest)
            if wait > self.max_wait or self._backing_off(chat_id):
                return True
            if wait > 0:
                await self.throttle.sleep(wait)
            others = await self._blocking(
                functools.partial(
                    self.store.other_reports, [alert.article.id for alert in plan.digest]
                )
            )
            groups: dict[int | None, list[PendingAlert]] = {}
            for alert in plan.digest:
                route = self._route(alert.watchlist, chat_id, target)
                groups.setdefault(route.thread_id, []).append(alert)
            note = burst_note(self.burst or BurstRule()) if plan.burst != "none" else ""
            folded = await self._blocking(
                functools.partial(folded_alerts, self.store.engine, chat_id)
            )  # alerts folded out of an overflowing queue (bot.outbox_bound): said once
            for number, (thread, alerts) in enumerate(groups.items(), start=1):
                footer = BURST_OVER if plan.burst == "end" and number == len(groups) else ""
                said = f"{folded_note(folded)} {note}".strip() if folded else note
                outcome = await self._send_digest(
                    chat_id, target, thread, alerts, (said, footer), muted, others, tally,
                    counts, should_stop,
                )  # fmt: skip
                if outcome is not None:
                    return outcome
                if folded:
                    await self._blocking(
                        functools.partial(clear_folded, self.store.engine, chat_id, folded)
                    )
                    folded = 0
        if plan.burst == "end":
            await self._blocking(
                functools.partial(self.store.set_chat_burst, chat_id, None, self.clock())
            )
            log.info("chat %s: the burst is over, single alerts again", chat_id)
        return None

    async def _send_digest(
        self,
        chat_id: int,
        target: int,
        thread: int | None,
        alerts: list[PendingAlert],
        lines: tuple[str, str],
        muted: Mutes,
        others: Mapping[int, Sequence[str]],
        tally: _Tally,
        counts: _ChatRound,
        should_stop: Callable[[], bool],
    ) -> bool | None:
        """Send one topic's digest, message by message; see ``_deliver_digest`` for the result."""
        route = self._route(alerts[0].watchlist, chat_id, target)
        items = digest_items(alerts, self.watchlist_titles, self.source_titles, others)
        by_id = {item.alert.id: item for item in items}
        note, footer = lines
        for part in compose_digest(items, route.timezone, note=note, footer=footer):
            await self.throttle.acquire(target)
            if should_stop():
                return False
            claimed = await self._claim(chat_id, list(part.alert_ids))
            if claimed is None:
                return True  # another worker took the chat over
            if not claimed:
                continue
            text = part.html
            if len(claimed) < len(part.alert_ids):  # another process took some: not ours
                text = compose_digest(
                    [by_id[alert_id] for alert_id in claimed],
                    route.timezone,
                    note=note,
                    footer=footer,
                )[0].html
            options = SendOptions(
                thread_id=thread,
                silent=all(
                    muted.silences(chat_id, by_id[i].alert.watchlist, by_id[i].alert.article.source)
                    for i in claimed
                ),
            )
            self.throttle.leaving(target)
            try:
                message_id = await self.sender.send(target, text, options)
            except DeliveryError as failure:
                step = self._settle(claimed, chat_id, target, failure, tally)
                held = await self._after_failure(target, failure, step, counts)
                if held is not None:
                    return held
                if step == "next":
                    continue
                return None  # plan again (moved chat, flood control waited in place)
            await self._blocking(
                functools.partial(
                    self.store.settle_alerts,
                    claimed,
                    self.clock(),
                    self.outcome,
                    message_id=message_id,
                )
            )
            await self._note_sent(chat_id)
            self._backoff.pop(chat_id, None)
            tally.sent += len(claimed)
            self._count_sent([by_id[alert_id].alert for alert_id in claimed])
        return None

    async def _chat_moved(self, old_chat: int, new_chat: int) -> None:
        if self.on_chat_moved is None:
            return
        try:
            await self.on_chat_moved(old_chat, new_chat)
        except Exception:  # the move is stored; a config that cannot be rewritten is only logged
            log.exception("could not write chat %s's new id %s to the config", old_chat, new_chat)

    async def _note_sent(self, chat_id: int) -> None:
        """Tell the chat's lease when Telegram took the message (for the next holder's limits;
        a failure only costs that precision, so it is logged, not raised)."""
        try:
            await self._blocking(
                functools.partial(self.leases.note_sent, chat_id, self.clock())
            )
        except Exception:
            log.exception("could not note a send to chat %s on its lease", chat_id)

    def _seed(self, chat_id: int, target: int) -> None:
        """Count the chat's sends by other workers in the last minute (bot.outbox_claims)."""
        lease = self._leases.get(chat_id)
        if lease is not None and lease.others_sends:
            now = self.clock()
            self.throttle.seed(
                target, [(now - moment).total_seconds() for moment in lease.others_sends]
            )

    async def _claim(self, chat_id: int, alert_ids: list[int]) -> list[int] | None:
        """Mark the alerts `sending`, the step before the request; returns those claimed (an
        alert another process took meanwhile is left out: theirs to send), or None when
        another worker took over the chat's lease (bot.outbox_claims).

        Runs in a thread like the other hot-path writes (see `blocking`). If this task is
        cancelled meanwhile (shutdown), the claim still completes in its thread; it is then
        handed back (`pending`), because nothing was sent, instead of being left to become
        `unknown` at the next start.
        """
        lease = self._leases.get(chat_id)
        call = functools.partial(self.store.claim_alerts, alert_ids, self.clock(), lease=lease)
        claim: asyncio.Future[list[int]] = asyncio.ensure_future(self._blocking(call))
        try:
            return await asyncio.shield(claim)
        except LeaseLost as lost:
            log.warning("%s; this worker leaves it", lost)
            return None
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                taken = await asyncio.wait_for(asyncio.shield(claim), timeout=10)
                self.store.settle_alerts(
                    taken, self.clock(), "pending", error="stopped before sending"
                )
            raise

    def _render(
        self, alert: PendingAlert, target: int, silent: bool, other_sources: Sequence[str]
    ) -> tuple[str, SendOptions]:
        route = self._route(alert.watchlist, alert.chat_id, target)
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
            mute_source=article.source,
            source_title=self.source_titles.get(article.source, article.source),
        )
        return text, options

    def _settle(
        self, alert_ids: list[int], chat_id: int, target: int, error: DeliveryError, tally: _Tally
    ) -> _Next:
        """Record a failed send of one message (a single alert, or a digest's alerts); say
        whether to go on with the next message, re-read the queue, or leave this chat for a
        later round. Counts are per alert."""
        now = self.clock()
        message = str(error)
        count = len(alert_ids)
        settle = functools.partial(self.store.settle_alerts, alert_ids, now, error=message)
        if error.uncertain:
            settle("unknown")
            tally.unknown += count
            self.metrics.count_alerts("unknown", count)
            tally.errors.append(f"chat {chat_id}: outcome unknown, not resent: {message}")
            log.warning(
                "alert(s) %s to chat %s: outcome unknown (%s); not sent again, to avoid a "
                "duplicate",
                alert_ids,
                target,
                message,
            )
            return "next"
        if error.migrate_to is not None:
            self.store.record_chat_migration(target, error.migrate_to, now)
            if target != chat_id:
                self.store.record_chat_migration(chat_id, error.migrate_to, now)
            settle("pending")
            log.warning("chat %s became supergroup %s; alerts go there", target, error.migrate_to)
            return "refetch"
        tally.failed += count
        tally.errors.append(f"chat {chat_id}: {message}")
        ended = error.permanent or error.chat_refused
        self.metrics.count_alerts("failed" if ended else "retry", count)
        if error.chat_refused:
            self.store.set_chat_disabled(target, message, now)
            settle("failed")
            log.error("chat %s refuses the bot (%s): alerts to it are disabled", target, message)
            return "refetch"
        if error.permanent:
            settle("failed")
            log.warning("alert(s) %s to chat %s given up: %s", alert_ids, target, message)
            return "next"
        if error.retry_after is not None:
            settle("pending", retry_at=now + timedelta(seconds=error.retry_after))
            self.throttle.hold(target, error.retry_after)
            log.warning("chat %s: flood control, waiting %gs", target, error.retry_after)
            return "refetch"
        streak = self._backoff.get(chat_id, (0, 0.0))[0] + 1
        delay = min(self.backoff_base * 2 ** (streak - 1), self.backoff_cap)
        self._backoff[chat_id] = (streak, self.throttle.now() + delay)
        settle("pending")
        log.warning("alert(s) %s to chat %s not sent, will retry: %s", alert_ids, target, message)
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
            self.metrics.count_alerts("failed")

    def _count_sent(self, alerts: Sequence[PendingAlert]) -> None:
        now = self.clock()
        self.metrics.count_alerts(self.outcome, len(alerts))
        for alert in alerts:
            self.metrics.observe_delivered(alert.created_at, now)


def _resolve(chat_id: int, states: Mapping[int, ChatState]) -> int:
    """The chat alerts for ``chat_id`` go to now (following supergroup upgrades)."""
    seen = {chat_id}
    state = states.get(chat_id)
    while state is not None and state.migrated_to is not None and state.migrated_to not in seen:
        chat_id = state.migrated_to
        seen.add(chat_id)
        state = states.get(chat_id)
    return chat_id
