"""A source that resets, hangs, sends garbage or 5xx for an hour, then recovers.

One in-process App polls three loopback sources on a virtual clock (tests.support.faults.poll_due
rules: a source is polled when the store says it is due, as bot.scheduler does). The flaky source
fails in one way for an hour of virtual time while every source keeps publishing; then it serves
its feed again. Without a restart the bot must:

- record each failure as a clear error of the right kind, never an "unexpected" one;
- back off (fewer polls than a steady schedule would make) and still come back on its own within
  about the length of the outage (exponential back-off doubles a wait at most: the wait after
  an outage of length L is at most ~L, plus one interval);
- then hold every article of the flaky feed exactly once (they were all still in the feed);
- meanwhile store every article of the healthy sources within one polling interval.
"""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import App
from bot.ratelimit import Throttle
from bot.sample_site import Request, Response, SampleSite
from bot.settings import load_settings
from tests.support.faults import (
    NewsFeed,
    ResetProxy,
    VirtualClock,
    next_due,
    poll_due,
    stored_guids,
    write_config,
)

RSS = {"Content-Type": "application/rss+xml"}
OUTAGE_START = timedelta(minutes=30)
OUTAGE = timedelta(hours=1)
END = timedelta(hours=3)
EVERY = timedelta(minutes=10)
NEWS_EVERY = timedelta(minutes=20)


def _hang(_: bytes) -> Response:
    return Response(200, RSS, b"<rss>", delay=30)  # far past the 1 s fetch timeout


def _truncated_gzip(document: bytes) -> Response:
    packed = gzip.compress(document)
    return Response(200, {**RSS, "Content-Encoding": "gzip"}, packed[: len(packed) // 2])


def _wrong_type(document: bytes) -> Response:
    return Response(200, {"Content-Type": "image/png"}, document)


FAULTS: dict[str, tuple[Callable[[bytes], Response] | None, set[str]]] = {
    # fault → (what the flaky route answers, the error kinds the store may record)
    "reset": (None, {"connection"}),
    "hang": (_hang, {"timeout"}),
    "html": (lambda _: Response(200, {"Content-Type": "text/html"}, b"<html>Gone</html>"),
             {"parse"}),
    "binary": (lambda _: Response(200, RSS, os.urandom(4096)), {"parse"}),
    "truncated-gzip": (_truncated_gzip, {"parse", "connection"}),
    "wrong-content-type": (_wrong_type, set()),
    "http-503": (lambda _: Response(503, {"Content-Type": "text/plain"}, b"down"),
                 {"http_status"}),
    "http-500-then-empty": (lambda _: Response(500, {}, b""), {"http_status"}),
}  # fmt: skip


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_source_down_for_an_hour_recovers_without_a_restart_and_misses_nothing(
    tmp_path: Path, fault: str
) -> None:
    answer, kinds = FAULTS[fault]
    clock = VirtualClock()
    feeds = {name: NewsFeed(name) for name in ("flaky", "calm", "steady")}
    outage = {"on": False}
    with (
        SampleSite() as site,
        ResetProxy(("127.0.0.1", int(site.base_url.rsplit(":", 1)[1]))) as proxy,
    ):
        for name in ("calm", "steady"):
            site.route(f"/{name}.xml", _serve(feeds[name], site))

        def flaky(request: Request) -> Response:
            if outage["on"] and answer is not None:
                return answer(feeds["flaky"].document(site.base_url))
            return _serve(feeds["flaky"], site)(request)

        site.route("/flaky.xml", flaky)
        config = write_config(
            tmp_path,
            [("flaky", f"{proxy.base_url}/flaky.xml"),
             ("calm", site.url("/calm.xml")), ("steady", site.url("/steady.xml"))],
            every="10m",
            timeout="1s",
        )  # fmt: skip
        database = tmp_path / "wirewatch.sqlite3"
        throttle = Throttle(clock=clock.monotonic, sleep=clock.sleep)
        async with App(load_settings(config, {}), clock=clock, throttle=throttle) as app:
            app.ingestor.random = lambda: 0.5  # the back-off's jitter, fixed
            start, kinds_seen, flaky_polls = clock(), Counter[str](), 0
            outage_end = start + OUTAGE_START + OUTAGE
            next_news = start
            while clock() - start < END:
                elapsed = clock() - start
                outage["on"] = OUTAGE_START <= elapsed < OUTAGE_START + OUTAGE
                proxy.resetting.clear()
                if outage["on"] and answer is None:
                    proxy.resetting.set()
                if clock() >= next_news:
                    for feed in feeds.values():
                        feed.publish(1, clock())
                    next_news += NEWS_EVERY
                polled = await poll_due(app, clock)
                if "flaky" in polled and outage["on"]:
                    flaky_polls += 1
                    state = app.store.source_state("flaky", app.settings.sources[0].url)
                    kinds_seen[state.last_error_kind or "none"] += 1
                    if kinds:
                        assert state.last_error and "unexpected" not in state.last_error
                # The healthy sources never wait on the flaky one.
                stored = stored_guids(database)
                for name in ("calm", "steady"):
                    due = [i.guid for i in feeds[name].items if clock() - i.published > EVERY * 2]
                    assert set(due) <= set(stored.get(name, ())), (name, elapsed)
                if clock() > outage_end + OUTAGE + EVERY:
                    flaky_items = [i.guid for i in feeds["flaky"].items if i.published < outage_end]
                    assert set(flaky_items) <= set(stored.get("flaky", ())), "not recovered"
                # On to the next thing that happens: a poll falls due, news, the outage's edges.
                edges = [start + OUTAGE_START, outage_end, next_news, clock() + EVERY]
                due = next_due(app)
                if due is not None:
                    edges.append(due)
                clock.now = max(
                    clock() + timedelta(seconds=1), min(e for e in edges if e > clock())
                )
            await poll_due(app, clock)

    stored = stored_guids(database)
    for name, feed in feeds.items():
        published = [item.guid for item in feed.items if item.published < clock() - EVERY * 2]
        assert set(published) <= set(stored[name]), name  # nothing missed
        assert len(stored[name]) == len(set(stored[name])), name  # each once
        assert set(stored[name]) <= {item.guid for item in feed.items}
    if kinds:
        assert set(kinds_seen) <= kinds, kinds_seen
        if fault != "reset":
            assert proxy.resets == 0
        # Backed off: a steady schedule would have polled 6 times in the hour.
        assert 2 <= flaky_polls <= 4, flaky_polls
    else:
        assert set(kinds_seen) <= {"none"}, kinds_seen


def _serve(feed: NewsFeed, site: SampleSite) -> Callable[[Request], Response]:
    def answer(_: Request) -> Response:
        return Response(200, RSS, feed.document(site.base_url))

    return answer
