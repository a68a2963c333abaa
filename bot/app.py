"""The one wiring place: Settings → store, HTTP client, matcher, publisher, sender, server,
schedule.

`App.run_once()` is `wirewatch run --once`; `App.run_forever()` is `wirewatch run`. Both use the
same three steps, so what the tests prove for one holds for the other:

    poll sources (concurrently, bounded) → publish feeds that changed → deliver pending alerts
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import OperationalError

from feeds.fetch import DEFAULT_USER_AGENT, FetchLimits, make_client
from feeds.match import Matcher

from . import admin_alerts, config_edit, database_faults, retention
from .admin_alerts import DiskProbe
from .commands import ChatCommands
from .commands_keeper import CommandsKeeper
from .delivery import Deliverer, DeliveryReport, burst_rule, route_table
from .fleet import Fleet, Released, worker_id
from .fleet_gate import FleetHostGate
from .ingest import Ingestor, PollReport, SourceJob, utc_now
from .leader import Leadership
from .metrics import Metrics, metrics_route
from .outbox_bound import fold_overflow
from .outbox_claims import ChatLeases, recover_at_start
from .poll_batch import NotModifiedBatch
from .polling import job_for, polite_fetching, spread_by_host
from .publish import ALL_FEED, FeedSpec, Publisher, source_feed_spec
from .ratelimit import Throttle
from .readiness import ReadinessProbe, readiness_route
from .reload import ConfigWatcher
from .retention import PruneReport
from .row_repair import repair_unreadable_rows, repairing
from .scheduler import Schedule
from .server import FeedCatalog, FeedServer, make_app
from .settings import Settings, SourceSettings
from .store import SourceState, Store
from .telegram import DeliveryError, LoggingSender, Sender, TelegramSender
from .websub import notify_hub

log = logging.getLogger("wirewatch")

# How long a clean shutdown waits for work in flight before cancelling it. With the feed server's
# own 2 s and the closing of clients, the whole stop stays well inside the promised 10 s.
SHUTDOWN_GRACE_SECONDS = 4.0
MAINTENANCE_DELAY = timedelta(minutes=1)
"""Retention and admin checks first run this long after start (after the first polls), then on
their own periods: a bot restarted more often than `retention.every` still prunes."""


class StartupError(Exception):
    """The app cannot start as configured (e.g. Telegram rejected the token)."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    polls: tuple[PollReport, ...]
    changed_feeds: tuple[str, ...]
    delivery: DeliveryReport

    @property
    def failed_sources(self) -> tuple[PollReport, ...]:
        return tuple(p for p in self.polls if p.error)


@dataclass
class App:
    settings: Settings
    sender: Sender | None = None
    """Overrides the sender chosen from settings (the demo prints alerts instead)."""
    clock: Callable[[], datetime] = utc_now
    disk_probe: DiskProbe | None = None
    """Free bytes on a path's disk, for admin alerts; None: the real disk (shutil.disk_usage)."""
    throttle: Throttle | None = None
    """Telegram's rate limits on their own clock; None: real time (tests of a simulated day pass
    one on virtual time, bot.ratelimit)."""
    store: Store = field(init=False)
    catalog: FeedCatalog = field(init=False)
    publisher: Publisher = field(init=False)
    ingestor: Ingestor = field(init=False)
    _delivery_lock: asyncio.Lock = field(init=False)
    _deliverer: Deliverer | None = field(init=False, default=None)
    _resources: AsyncExitStack = field(init=False)
    _stopping: bool = field(init=False, default=False)
    worker: str = field(init=False, default_factory=worker_id)
    """This process's id in the fleet (host:pid:random): who holds its leases (bot.fleet)."""
    metrics: Metrics = field(init=False, default_factory=Metrics)
    """This app's counters, served at /metrics (a registry of its own: bot.metrics)."""
    _schedule: Schedule | None = field(init=False, default=None)

    async def __aenter__(self) -> App:
        # Everything opened here is closed by the stack, also when a later step fails.
        self._resources = AsyncExitStack()
        try:
            await self._open(self._resources)
        except BaseException:
            await self._resources.aclose()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._resources.aclose()

    async def _open(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        self.store = stack.enter_context(Store.open(settings.database))
        self.metrics.track_backlog(lambda: self.store.alert_counts().get("pending", 0))
        recovered = recover_at_start(self.store, self.clock())  # SQLite; fleets: leases
        if recovered:
            log.warning(
                "%d alert(s) were being sent when the last run stopped; their delivery is "
                "unknown and they are not sent again",
                recovered,
            )
        # A value the store cannot read would stop every step that meets it (bot.row_repair).
        repair_unreadable_rows(self.store.engine, self.clock())
        limits = FetchLimits(
            total_timeout=settings.fetch.timeout.total_seconds(),
            max_bytes=settings.fetch.max_bytes,
        )
        client = await stack.enter_async_context(
            make_client(
                settings.fetch.user_agent or DEFAULT_USER_AGENT,
                limits,
                connections=max(settings.fetch.concurrency, 100),
            )
        )
        gate, robots = polite_fetching(settings, client, limits, self.store.engine, self.worker)
        if isinstance(gate, FleetHostGate):  # its own connections (bot.fleet_gate)
            stack.push_async_callback(gate.aclose)
        self.ingestor = Ingestor(
            store=self.store,
            client=client,
            matcher=Matcher([w.to_watchlist() for w in settings.watchlists]),
            routes={w.name: tuple(route.chat for route in w.chats) for w in settings.watchlists},
            limits=limits,
            clock=self.clock,
            gate=gate,
            robots=robots,
            metrics=self.metrics,
            max_entries=settings.fetch.max_entries_per_poll,
            max_article_chars=settings.fetch.max_article_chars,
        )
        self.catalog = FeedCatalog()
        self.publisher = Publisher(
            store=self.store,
            catalog=self.catalog,
            output_dir=settings.output_dir,
            public_url=settings.server.public_url,
            max_entries=settings.feeds.max_entries,
            source_titles={s.name: s.title for s in settings.sources},
            hub_url=settings.feeds.websub_hub,
            source_feed_urls={s.name: s.url for s in settings.sources},
        )
        self._delivery_lock = asyncio.Lock()
        self.sender = await stack.enter_async_context(self._started_sender())
        await self.publish()

    @asynccontextmanager
    async def _started_sender(self) -> AsyncIterator[Sender]:
        token = self.settings.telegram.token.get_secret_value()
        sender = self.sender or (
            TelegramSender(token, self.settings.telegram.api_url) if token else LoggingSender()
        )
        try:
            await sender.start()
        except DeliveryError as error:
            if error.permanent:
                raise StartupError(str(error)) from None
            # Telegram unreachable: feeds still work, alerts wait in the outbox, sends retry.
            log.error("Telegram is unreachable (%s); alerts are queued until it answers", error)
        try:
            yield sender
        finally:
            await sender.stop()

    @property
    def alert_outcome(self) -> str:
        return "logged" if isinstance(self.sender, LoggingSender) else "sent"

    def feed_specs(self) -> list[FeedSpec]:
        specs = [FeedSpec(ALL_FEED, "All matches", "Every article that matched a watchlist", None)]
        for watchlist in self.settings.watchlists:
            specs.append(
                FeedSpec(watchlist.name, watchlist.title, watchlist.describe(), watchlist.name)
            )
        specs += [source_feed_spec(s.name, s.title) for s in self.settings.sources]
        return specs

    def feed_urls(self) -> list[str]:
        return [self.publisher.url_of(spec.path) for spec in self.feed_specs()]

    async def publish(self) -> list[str]:
        """Render feeds in a worker thread: rendering is CPU work the server must not wait on.

        Returns the paths of the feeds that changed, after telling the WebSub hub about them.
        """
        changed = await repairing(
            lambda: asyncio.to_thread(self.publisher.publish, self.feed_specs()),
            self.store.engine,
            self.clock(),
        )
        hub = self.settings.feeds.websub_hub
        if hub and changed:
            user_agent = self.settings.fetch.user_agent or DEFAULT_USER_AGENT
            await notify_hub(hub, [self.publisher.url_of(path) for path in changed], user_agent)
        return changed

    async def poll_sources(
        self,
        jobs: list[SourceJob],
        *,
        batch: NotModifiedBatch | None = None,
        states: Mapping[str, SourceState] | None = None,
    ) -> list[PollReport]:
        """Poll sources concurrently, at most `fetch.concurrency` at once; reports in job order.

        Polls start host by host in turn (see `spread_by_host`), so that ten feeds of one site
        listed together do not take every slot while they wait for that site's turn.

        Polls answered 304 are written together at the end (bot.poll_batch), or left in
        `batch` when the caller gives one and writes it itself. `states`: sources' stored
        states the caller has just read, by name (the others are read by their polls).
        """
        gate = asyncio.Semaphore(self.settings.fetch.concurrency)
        own_batch = batch is None
        answered_304 = NotModifiedBatch() if batch is None else batch
        known = states or {}

        async def one(job: SourceJob) -> PollReport:
            async with gate:
                return await self.ingestor.poll(job, answered_304, known.get(job.name))

        order = spread_by_host(jobs)
        try:
            done = await asyncio.gather(*(one(jobs[index]) for index in order))
        finally:
            if own_batch:
                with database_faults.reported("recording polls answered 304"):
                    self.store.record_not_modified_polls(answered_304.take())
        reports = dict(zip(order, done, strict=True))
        if any(report.new_alerts for report in done):  # bound each chat's queue (bot.outbox_bound)
            cap = self.settings.telegram.max_pending_per_chat
            await asyncio.to_thread(fold_overflow, self.store.engine, cap, self.clock())
        return [reports[index] for index in range(len(jobs))]

    async def deliver(self) -> DeliveryReport:
        assert self.sender is not None
        async with self._delivery_lock:
            if self._deliverer is None:  # one per run: rate limits and back-off span rounds
                self._deliverer = Deliverer(
                    self.store,
                    self.sender,
                    self.alert_outcome,
                    watchlist_titles={w.name: w.title for w in self.settings.watchlists},
                    source_titles={s.name: s.title for s in self.settings.sources},
                    routes=route_table(self.settings.watchlists),
                    clock=self.clock,
                    on_chat_moved=self.move_chat,
                    burst=burst_rule(self.settings.telegram),
                    metrics=self.metrics,
                    throttle=self.throttle,
                    leases=ChatLeases(
                        self.store.engine,
                        owner=self.worker,
                        seconds=self.settings.fleet.chat_lease.total_seconds(),
                    ),
                )
            try:
                deliverer = self._deliverer
                return await repairing(
                    lambda: deliverer.deliver(should_stop=lambda: self._stopping),
                    self.store.engine,
                    self.clock(),
                )
            except OperationalError as error:  # locked, disk full: bot.database_faults
                problem = database_faults.database_problem(error) or str(error)
                log.error("delivery round stopped: %s", problem)
                return DeliveryReport(errors=(problem,))

    async def run_once(self) -> CycleReport:
        polls = await self.poll_sources([self.job(s) for s in self.settings.sources])
        changed = await self.publish()
        delivery = await self.deliver()
        await self.prune()
        await self.check_admin()
        return CycleReport(tuple(polls), tuple(changed), delivery)

    async def prune(self) -> PruneReport | None:
        """Retention (bot.retention), then a publish when archive pages lost entries."""
        age = self.settings.retention.articles
        if age is None:
            return None
        with database_faults.reported("pruning old articles"):
            report = await asyncio.to_thread(retention.prune, self.store.engine, self.clock(), age)
            if report.articles:
                await self.publish()
            return report
        return None

    async def check_admin(self) -> list[str]:
        """Admin alerts (bot.admin_alerts): what went to telegram.admin_chat (or the log)."""
        with database_faults.reported("checking admin alerts"):
            return await admin_alerts.check(
                self.settings, self.store, self.sender, self.clock(), self.disk_probe
            )
        return []

    def job(self, source: SourceSettings) -> SourceJob:
        """The slice of a source's settings (and the fetch settings) that a poll needs."""
        return job_for(
            source, self.settings.fetch.backoff_cap, self.settings.fetch.allow_private_addresses
        )

    async def poll_one(
        self,
        job: SourceJob,
        polled: Released | None = None,
        state: SourceState | None = None,
    ) -> datetime | None:
        """A scheduled poll: the source, then feeds and alerts if it brought anything new.

        Returns when the source is due again (None: disabled), for the schedule. `polled` is
        told that as soon as the source is done, before feeds and alerts, with the poll's 304
        record if it was one: the fleet hands the source back then and writes the record with
        the release (bot.fleet), not after a delivery round that may wait for a chat. `state`:
        the source's state as the fleet's claim just read it.
        """
        if polled is None:
            [report] = await self.poll_sources([job])
        else:
            batch = NotModifiedBatch()
            states = {job.name: state} if state is not None else None
            [report] = await self.poll_sources([job], batch=batch, states=states)
            polled(report.next_poll_at, batch.take())
        # Feeds and alerts side by side: an alert never waits for feed rendering or a WebSub
        # ping, and feeds never wait for a rate-limited delivery round.
        work: list[Awaitable[object]] = []
        if report.new_articles or report.new_matches or report.updated_articles:
            work.append(self.publish())
        if report.new_alerts:
            work.append(self.deliver())
        await asyncio.gather(*work)
        return report.next_poll_at

    def readiness_probe(self) -> ReadinessProbe:
        """/readyz: the database answers and the schedule runs (only while run_forever runs)."""
        return ReadinessProbe(
            self.store.ping, lambda: self._schedule is not None and self._schedule.running
        )

    async def serve(self) -> FeedServer:
        server = FeedServer(
            make_app(
                self.catalog,
                public_url=self.settings.server.public_url,
                hub_url=self.settings.feeds.websub_hub,
                routes=[readiness_route(self.readiness_probe()), metrics_route(self.metrics)],
            ),
            self.settings.server.host,
            self.settings.server.port,
        )
        await server.start()
        return server

    async def start_commands(self) -> ChatCommands | None:
        """Answer chat commands while running, when alerts really go to Telegram."""
        if not isinstance(self.sender, TelegramSender):
            return None
        commands = ChatCommands(
            self.settings.telegram.token.get_secret_value(),
            self.settings.telegram.api_url,
            settings=lambda: self.settings,
            store=self.store,
            clock=self.clock,
            on_change=self.apply_watchlists,
        )
        return commands if await commands.start() else None

    async def move_chat(self, old_chat: int, new_chat: int) -> None:
        """A group became a supergroup: write its new id into the configuration file (comments
        kept, validated, atomic) and route to it from now on."""
        path = self.settings.path
        moved = await asyncio.to_thread(config_edit.move_chat, path, old_chat, new_chat)
        if moved is not None:
            log.warning("chat %s is now %s in %s", old_chat, new_chat, self.settings.path)
            await self.apply_watchlists(moved)

    async def apply_watchlists(self, settings: Settings) -> None:
        """Take watchlist changes made from chat without a restart: terms (the matcher), routes
        (new alerts and their delivery options) and feed titles. Everything else in the file is
        read at start-up only."""
        self.settings = self.settings.model_copy(update={"watchlists": settings.watchlists})
        watchlists = self.settings.watchlists
        self.ingestor.matcher = Matcher([w.to_watchlist() for w in watchlists])
        self.ingestor.routes = {w.name: tuple(route.chat for route in w.chats) for w in watchlists}
        if self._deliverer is not None:
            self._deliverer.routes = route_table(watchlists)
            self._deliverer.watchlist_titles = {w.name: w.title for w in watchlists}
        await self.publish()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Serve feeds, poll on schedule and deliver, until `stop` is set."""
        server = await self.serve()
        schedule = Schedule(self.poll_one, self.deliver)
        # PostgreSQL: the fleet's claim loop polls instead of per-source jobs (bot.fleet).
        fleet = Fleet.start_if_shared(
            self.store.engine,
            self.settings,
            [self.job(source) for source in self.settings.sources],
            self.poll_one,
            self.publish,
            owner=self.worker,
            clock=self.clock,
            gate=self.ingestor.gate,
        )
        for source in self.settings.sources if fleet is None else ():
            state = self.store.source_state(source.name, source.url)
            schedule.add_source(self.job(source), source.every, first_run=state.next_poll_at)
        # Chat commands, retention and admin alerts in the one process holding the leader lock
        # (bot.leader): with several workers, each would otherwise prune at once and send the
        # same admin alert once per worker. On SQLite the one process always leads.
        commands = CommandsKeeper(self.start_commands)  # tries again if Telegram is down
        leading = asyncio.Event()

        async def lead() -> None:
            leading.set()
            if isinstance(self.sender, TelegramSender):
                commands.lead()

        async def follow() -> None:
            leading.clear()
            await commands.follow()

        def if_leading(work: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
            async def maybe() -> None:
                if leading.is_set():
                    await work()

            return maybe

        soon = datetime.now(UTC) + MAINTENANCE_DELAY
        retention_every = self.settings.retention.every
        schedule.add_periodic("retention", retention_every, if_leading(self.prune), soon)
        schedule.add_periodic(
            "admin-alerts", self.settings.admin_alerts.every, if_leading(self.check_admin), soon
        )
        schedule.start()
        self._schedule = schedule

        retry = self.settings.fleet.leader_retry.total_seconds()
        leadership = Leadership(self.settings.database, retry=retry, lead=lead, follow=follow)
        leadership.start(stop)
        watcher = ConfigWatcher(
            self.settings, self.apply_watchlists, running=lambda: self.settings
        )
        watching = asyncio.create_task(watcher.run(stop))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, watcher.request)
        log.info(
            "wirewatch running: %d sources, feeds at %s/",
            len(self.settings.sources),
            self.settings.server.public_url,
        )
        try:
            await stop.wait()
        finally:
            self._stopping = True
            loop.remove_signal_handler(signal.SIGHUP)
            watching.cancel()
            await leadership.finish(SHUTDOWN_GRACE_SECONDS)
            if fleet is not None:
                await fleet.stop(SHUTDOWN_GRACE_SECONDS)
            await schedule.stop(SHUTDOWN_GRACE_SECONDS)
            await server.stop()


class stop_on_signals:  # lower case: it is used as a context manager and reads like one
    """SIGINT and SIGTERM set `stop`, so shutdown runs the same clean path whatever the cause."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)

    def __exit__(self, *_: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)
