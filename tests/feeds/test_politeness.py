"""The host gate over loopback: at most `per_host` requests in flight to one host, requests to one
host started at least `min_delay` apart, other hosts not held up, and the global limit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from itertools import pairwise

import httpx
import pytest

from bot.sample_site import Request, Response, SampleSite
from feeds.fetch import FetchLimits, fetch, make_client
from feeds.models import FetchResult
from feeds.politeness import HostGate, host_of


class Recorder:
    """A route that takes `hold` seconds and records how many requests it served at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.starts: list[float] = []

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.starts.append(time.monotonic())
        time.sleep(self.hold)
        with self.lock:
            self.in_flight -= 1
        return Response(200, {"Content-Type": "text/plain"}, b"ok")


@pytest.fixture
def two_hosts() -> Iterator[tuple[SampleSite, SampleSite]]:
    with SampleSite(host="127.0.0.1") as one, SampleSite(host="127.0.0.2") as two:
        yield one, two


def test_host_of_ignores_port_and_case() -> None:
    assert host_of("http://Example.COM:8080/a") == host_of("https://example.com/b") == "example.com"


async def test_per_host_limit_holds_and_other_hosts_are_not_held_up(
    two_hosts: tuple[SampleSite, SampleSite],
) -> None:
    recorders = [Recorder(0.15), Recorder(0.15)]
    for site, recorder in zip(two_hosts, recorders, strict=True):
        site.route("/r", recorder)
    gate = HostGate(total=10, per_host=2, min_delay=0)
    urls = [site.url(f"/r?{n}") for site in two_hosts for n in range(6)]
    async with make_client("wirewatch-test") as client:
        started = time.monotonic()
        await asyncio.gather(*(fetch(client, url, gate=gate) for url in urls))
        elapsed = time.monotonic() - started
    assert all(1 <= r.most <= 2 for r in recorders)
    # Six requests two at a time take at least three rounds per host.
    assert elapsed >= 0.45
    # The hosts were served side by side, not one after the other (checked by overlap rather
    # than by a wall-clock bound, which a loaded machine could break).
    first, second = (sorted(r.starts) for r in recorders)
    assert second[0] < first[-1] and first[0] < second[-1]


async def test_requests_to_one_host_start_min_delay_apart(sample_site: SampleSite) -> None:
    recorder = Recorder(0.0)
    sample_site.route("/r", recorder)
    gate = HostGate(total=10, per_host=2, min_delay=0.2)
    async with make_client("wirewatch-test") as client:
        await asyncio.gather(
            *(fetch(client, sample_site.url(f"/r?{n}"), gate=gate) for n in range(4))
        )
    starts = sorted(recorder.starts)
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # Arrival times carry scheduling jitter at both ends of each gap, so each gap is checked
    # loosely and the whole span, where the jitter counts only once, tightly.
    assert len(gaps) == 3 and min(gaps) >= 0.1
    assert starts[-1] - starts[0] >= 3 * 0.2 - 0.05


async def test_the_global_limit_caps_all_hosts_together(
    two_hosts: tuple[SampleSite, SampleSite],
) -> None:
    recorders = [Recorder(0.15), Recorder(0.15)]
    for site, recorder in zip(two_hosts, recorders, strict=True):
        site.route("/r", recorder)
    gate = HostGate(total=1, per_host=2, min_delay=0)
    urls = [site.url(f"/r?{n}") for site in two_hosts for n in range(2)]
    async with make_client("wirewatch-test") as client:
        await asyncio.gather(*(fetch(client, url, gate=gate) for url in urls))
    assert [r.most for r in recorders] == [1, 1]
    # One at a time across both hosts: four 0.15 s requests cannot start within 0.4 s.
    starts = sorted(recorders[0].starts + recorders[1].starts)
    assert starts[-1] - starts[0] >= 3 * 0.15 - 0.05


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        HostGate(per_host=0)


async def test_a_request_that_leaves_late_still_keeps_the_next_a_delay_behind(
    sample_site: SampleSite,
) -> None:
    """The first request is granted its turn but leaves 0.25 s later (here a request hook that
    dawdles; in production an event loop busy parsing). The second, granted a delay after the
    first's grant, must still reach the host a whole delay after the first arrived."""
    recorder = Recorder(0.0)
    sample_site.route("/r", recorder)
    gate = HostGate(total=10, per_host=2, min_delay=0.3)
    dawdled = False

    async def dawdle_once(request: httpx.Request) -> None:
        nonlocal dawdled
        if not dawdled:
            dawdled = True
            await asyncio.sleep(0.25)

    async with make_client("wirewatch-test") as client:
        client.event_hooks["request"].append(dawdle_once)
        await asyncio.gather(
            *(fetch(client, sample_site.url(f"/r?{n}"), gate=gate) for n in (1, 2))
        )
    first, second = sorted(recorder.starts)
    # Without the check at sending, the two arrive 0.05 s apart.
    assert second - first >= 0.3 - 0.02


async def test_a_redirect_back_to_the_host_waits_for_its_delay(sample_site: SampleSite) -> None:
    recorder = Recorder(0.0)
    sample_site.route("/moved", lambda request: Response(302, {"Location": "/r"}, b""))
    sample_site.route("/r", recorder)
    gate = HostGate(total=10, per_host=2, min_delay=0.3)
    async with make_client("wirewatch-test") as client:
        started = time.monotonic()
        result = await fetch(client, sample_site.url("/moved"), gate=gate)
    assert result.content == b"ok"  # type: ignore[union-attr]
    # The hop to /r left at least a delay after the request to /moved (which left at once).
    assert recorder.starts[0] - started >= 0.3 - 0.02


async def test_waiting_for_the_host_does_not_count_against_the_total_timeout(
    sample_site: SampleSite,
) -> None:
    """The redirect hop waits 0.6 s for its turn, longer than the whole fetch may take: the
    timeout bounds the server's time, and a request held back by politeness is not a timeout."""
    sample_site.route("/moved", lambda request: Response(302, {"Location": "/r"}, b""))
    sample_site.route("/r", Recorder(0.0))
    gate = HostGate(total=10, per_host=2, min_delay=0.6)
    async with make_client("wirewatch-test") as client:
        result = await fetch(
            client, sample_site.url("/moved"), gate=gate, limits=FetchLimits(total_timeout=0.4)
        )
    assert isinstance(result, FetchResult) and result.content == b"ok"
