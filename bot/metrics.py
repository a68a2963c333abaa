"""What the bot has been doing, as Prometheus metrics: one :class:`Metrics` per running app.

Each Metrics owns its own ``CollectorRegistry`` rather than the process-wide default one, so that
several apps in one process (the test suite) never share or collide on counters, and the feed
server's ``/metrics`` shows exactly one app's figures.

The metrics, all prefixed ``wirewatch_``:

- ``polls_total{outcome}``: polls that made a request: ``fetched`` (200), ``not_modified`` (304)
  or ``failed``. The 304 share is ``polls_total{outcome="not_modified"} / sum(polls_total)``.
  A disabled source is not polled, so it is not counted.
- ``poll_errors_total{kind}``: failed polls by kind (feeds.errors.FetchErrorKind, ``parse``,
  ``unexpected``, or ``database``: the store could not be used, bot.database_faults); they add
  up to ``polls_total{outcome="failed"}``.
- ``articles_stored_total{change}``: ``new`` articles and ``updated`` ones (an edited entry).
- ``matches_total``, ``alerts_queued_total``: new matches, and alerts put in the outbox.
- ``alerts_total{outcome}``: every alert the outbox settled: ``sent`` (or ``logged`` without a
  token), ``retry`` (a temporary failure: the alert is pending again), ``failed`` (given up)
  and ``unknown`` (the request may have reached Telegram; never resent). Counted per alert, so a
  digest of five counts five.
- ``outbox_backlog``: alerts pending now, read from the database at each scrape.
- ``delivery_latency_seconds``: from an alert entering the outbox to Telegram accepting it
  (quiet hours and digests hold alerts back on purpose, and show up here too).
- ``extraction_seconds``: cleaning one article page (HTML → article text), in its worker thread.

Beside them, prometheus-client's standard ``process_*`` metrics (resident memory, CPU seconds,
open files) on Linux.

The hooks are one call each at the place the event happens (bot.ingest, bot.delivery); a
component built without a Metrics (most tests) gets a private one that nobody reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .ingest import PollReport

__all__ = ["CONTENT_TYPE", "Metrics", "metrics_route"]

log = logging.getLogger("wirewatch.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of :meth:`Metrics.render`'s output (the Prometheus text format)."""

P = ParamSpec("P")
T = TypeVar("T")

# Delivery waits on rate limits (1 message a second per chat), flood control and back-off, and on
# digests and quiet hours for hours: the buckets run from well under a second to a day.
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
# Cleaning a page takes a few milliseconds (bench/clean); slow pages are the ones worth seeing.
_EXTRACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The app's counters and histograms, and the backlog gauge read at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.polls = Counter(
            "wirewatch_polls", "Source polls that made a request, by outcome.", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.poll_errors = Counter(
            "wirewatch_poll_errors", "Failed polls, by kind of error.", ["kind"], registry=registry
        )
        self.articles = Counter(
            "wirewatch_articles_stored", "Articles stored: new ones and updated ones.", ["change"],
            registry=registry,
        )  # fmt: skip
        self.matches = Counter(
            "wirewatch_matches", "New matches of an article with a watchlist.", registry=registry
        )
        self.alerts_queued = Counter(
            "wirewatch_alerts_queued", "Alerts put in the outbox.", registry=registry
        )
        self.alerts = Counter(
            "wirewatch_alerts", "Alerts settled by delivery, by outcome.", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self.delivery_latency = Histogram(
            "wirewatch_delivery_latency_seconds",
            "Time from an alert entering the outbox to its message being accepted.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.extraction = Histogram(
            "wirewatch_extraction_seconds",
            "Time to clean one article page.",
            buckets=_EXTRACTION_BUCKETS,
            registry=registry,
        )
        # Label values known in advance are shown at 0 from the start, so a rate() over a fresh
        # process works and a dashboard shows "none yet" rather than "no data".
        for outcome in ("fetched", "not_modified", "failed"):
            self.polls.labels(outcome)
        for change in ("new", "updated"):
            self.articles.labels(change)
        self._backlog = _BacklogCollector()
        registry.register(self._backlog)
        # The standard process_* metrics (memory, CPU, open files) where /proc has them.
        ProcessCollector(registry=registry)

    def track_backlog(self, pending: Callable[[], int]) -> None:
        """Read the outbox backlog with ``pending`` at every scrape (it runs in the scrape's
        thread, off the event loop: see :meth:`render`)."""
        self._backlog.pending = pending

    # -- hooks -------------------------------------------------------------------------------

    def count_poll(self, report: PollReport) -> None:
        """A poll that got an answer: 304, or a feed whose entries were stored."""
        if report.not_modified:
            self.polls.labels("not_modified").inc()
            return
        self.polls.labels("fetched").inc()
        self.articles.labels("new").inc(report.new_articles)
        self.articles.labels("updated").inc(report.updated_articles)
        self.matches.inc(report.new_matches)
        self.alerts_queued.inc(report.new_alerts)

    def count_failed_poll(self, kind: str) -> None:
        self.polls.labels("failed").inc()
        self.poll_errors.labels(kind).inc()

    def count_alerts(self, outcome: str, count: int = 1) -> None:
        """``count`` alerts settled as ``outcome`` (see the module docstring for the values)."""
        self.alerts.labels(outcome).inc(count)

    def observe_delivered(self, queued_at: datetime | None, sent_at: datetime) -> None:
        """One alert accepted at ``sent_at``, queued at ``queued_at`` (None: not known)."""
        if queued_at is None:
            return
        # Never negative: a clock set back (or a test's fake clock) must not break the histogram.
        self.delivery_latency.observe(max((sent_at - queued_at).total_seconds(), 0.0))

    def time_extraction(self, clean: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``clean(*args, **kwargs)`` and record how long it took; call it inside the worker
        thread, so that waiting for a free thread is not counted as cleaning."""
        started = time.perf_counter()
        try:
            return clean(*args, **kwargs)
        finally:
            self.extraction.observe(time.perf_counter() - started)

    # -- exposition --------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition of every metric. Blocking (the backlog is a database query):
        the server calls it in a worker thread."""
        return generate_latest(self.registry)


def metrics_route(metrics: Metrics) -> Route:
    """``GET /metrics``, rendered in a worker thread (the backlog gauge queries the database)."""

    async def scrape(request: Request) -> Response:
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return Route("/metrics", scrape, methods=["GET"])


class _BacklogCollector(Collector):
    """``wirewatch_outbox_backlog``, read when scraped so it is never stale; left out of a
    scrape (with a warning logged) when the database does not answer, rather than failing the
    whole scrape or showing a made-up value."""

    def __init__(self) -> None:
        self.pending: Callable[[], int] | None = None

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        if self.pending is None:
            return
        try:
            value = self.pending()
        except Exception as error:
            log.warning("outbox backlog not readable for /metrics: %s", error)
            return
        family = self._family()
        family.add_metric([], value)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("wirewatch_outbox_backlog", "Alerts pending in the outbox.")
