"""Per-host limits shared by several processes through PostgreSQL (bot.fleet_gate).

Each gate here stands for one worker process (its own owner id, its own engine and pool): the
limits must hold for all of them together, as a site sees them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text

from bot import fleet_gate
from bot.fleet_gate import WAITING_SINCE, FleetHostGate
from bot.sample_site import Request, Response, SampleSite
from bot.store import Store
from feeds.fetch import fetch, make_client
from feeds.models import FetchResult

URL = "http://news.test/feed.xml"

Gate = TypeVar("Gate", bound=FleetHostGate)


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[Store]]:
    opened = [Store.open(postgres_url) for _ in range(3)]
    yield opened
    for store in opened:
        store.close()


class Site:
    """Counts what a host would see: requests in flight at once, and gaps between starts."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.starts: list[float] = []

    async def request(self, gate: FleetHostGate, seconds: float) -> None:
        async with gate.slot(URL):
            self.starts.append(time.monotonic())
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            await asyncio.sleep(seconds)
            self.in_flight -= 1


@asynccontextmanager
async def gates_of(
    kind: type[Gate], stores: list[Store], **options: object
) -> AsyncIterator[list[Gate]]:
    made = [
        kind(store.engine, f"worker-{n}", **options)  # type: ignore[arg-type]
        for n, store in enumerate(stores)
    ]
    try:
        yield made
    finally:
        for gate in made:
            await gate.aclose()


def gates(
    stores: list[Store], **options: object
) -> AbstractAsyncContextManager[list[FleetHostGate]]:
    return gates_of(FleetHostGate, stores, **options)


async def test_per_host_concurrency_holds_across_workers(stores: list[Store]) -> None:
    site = Site()
    async with gates(stores, per_host=2, min_delay=0.0) as workers:
        await asyncio.gather(*(site.request(gate, 0.15) for gate in workers for _ in range(3)))
    assert site.peak == 2  # reached, never passed, by nine requests from three workers
    assert len(site.starts) == 9


async def test_the_host_delay_spaces_starts_from_all_workers(stores: list[Store]) -> None:
    site = Site()
    async with gates(stores, per_host=3, min_delay=0.2) as workers:
        await asyncio.gather(*(site.request(gate, 0.0) for gate in workers for _ in range(2)))
    starts = sorted(site.starts)
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # Reservations are one delay apart on the database's clock; the sleeps end on ours, with
    # a few milliseconds of scheduling on either side.
    assert min(gaps) >= 0.17
    assert starts[-1] - starts[0] >= 5 * 0.2 - 0.05


async def test_a_slot_held_by_a_dead_worker_comes_back_after_its_hold(
    stores: list[Store],
) -> None:
    async with gates(stores[:2], per_host=1, min_delay=0.0, hold=timedelta(seconds=0.6)) as (
        dead,
        alive,
    ):
        holding = dead.slot(URL)
        await holding.__aenter__()  # and never leaves: the worker was killed mid-request
        started = time.monotonic()
        site = Site()
        await asyncio.wait_for(site.request(alive, 0.0), timeout=5)
        assert time.monotonic() - started >= 0.4


async def test_a_worker_waiting_for_the_database_goes_on_with_its_other_work(
    stores: list[Store],
) -> None:
    """The gate's statements do not hold the event loop: while the database keeps one waiting
    (here another session locks the host's turn row), the worker's other tasks run on."""
    async with gates(stores[:1], per_host=1, min_delay=0.05) as (gate,):
        await Site().request(gate, 0.0)  # the host's rows exist now
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        locked = threading.Event()

        def lock_the_turn_for_a_second() -> None:
            with stores[1].engine.begin() as locker:
                locker.execute(text("SELECT 1 FROM host_turns FOR UPDATE"))
                locked.set()
                time.sleep(1.0)

        locker = threading.Thread(target=lock_the_turn_for_a_second)
        locker.start()
        assert locked.wait(timeout=10)
        ticker = asyncio.create_task(tick())
        waiting = asyncio.create_task(Site().request(gate, 0.0))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # the database holds the request back...
        assert ticks >= 20  # ...and the loop went on meanwhile (a frozen loop: 0)
        await asyncio.wait_for(waiting, timeout=5)
        ticker.cancel()
        locker.join()


def test_the_fleet_gate_refuses_sqlite(tmp_path: Path) -> None:
    with (
        Store.open(f"sqlite:///{tmp_path / 'one.sqlite'}") as store,
        pytest.raises(ValueError, match="needs PostgreSQL"),
    ):
        FleetHostGate(store.engine, "w")


async def test_a_redirect_back_to_the_host_waits_for_its_delay(
    stores: list[Store], sample_site: SampleSite
) -> None:
    """The database spaces the fleet's turns; a second request inside one turn (a redirect hop
    back to the host) is spaced by the worker as it leaves."""
    arrivals: list[float] = []

    def record(request: Request) -> Response:
        arrivals.append(time.monotonic())
        return Response(200, {"Content-Type": "text/plain"}, b"ok")

    sample_site.route("/moved", lambda request: Response(302, {"Location": "/r"}, b""))
    sample_site.route("/r", record)
    async with (
        gates(stores[:1], per_host=2, min_delay=0.3) as (gate,),
        make_client("wirewatch-test") as client,
    ):
        started = time.monotonic()
        result = await fetch(client, sample_site.url("/moved"), gate=gate)
    assert isinstance(result, FetchResult) and result.content == b"ok"
    assert arrivals[0] - started >= 0.3 - 0.02  # without the spacing: at once


class CountedGate(FleetHostGate):
    """The gate, counting the statements it sends (to tell which requests needed one)."""

    statements = 0

    async def _execute_all(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        self.statements += 1
        return await super()._execute_all(sql, **params)


def counted(
    stores: list[Store], **options: object
) -> AbstractAsyncContextManager[list[CountedGate]]:
    return gates_of(CountedGate, stores, **options)


OTHER = "http://other.test/feed.xml"


async def test_a_request_entered_ahead_starts_without_a_statement_of_its_own(
    stores: list[Store],
) -> None:
    async with counted(stores[:1], per_host=2, min_delay=0.5) as (gate,):
        await gate.enter_ahead([URL, OTHER, URL])
        before = gate.statements
        started = time.monotonic()
        async with gate.slot(URL), gate.slot(OTHER):
            assert gate.statements == before  # both ways in were taken by enter_ahead
        assert time.monotonic() - started < 0.2  # and neither waited for its turn


async def test_a_slot_and_turn_entered_ahead_hold_for_the_other_workers(
    stores: list[Store],
) -> None:
    site = Site()
    async with gates(stores[:2], per_host=1, min_delay=0.3) as (ahead, other):
        await ahead.enter_ahead([URL])
        waiting = asyncio.create_task(site.request(other, 0.0))  # no slot free: it waits
        await asyncio.sleep(0.1)
        await site.request(ahead, 0.1)
        await asyncio.wait_for(waiting, timeout=5)
    first, second = site.starts
    assert site.peak == 1
    assert second - first >= 0.3 - 0.02


async def test_a_turn_won_ahead_and_used_late_is_moved_on_not_lost(
    stores: list[Store],
) -> None:
    """A turn is good for a moment after it was won. A request that comes later moves the
    turn's stamp to its own start with one statement (no one else could take the turn before
    a delay after it), so the fleet's next request still keeps its distance."""
    site = Site()
    async with counted(stores[:2], per_host=2, min_delay=0.3) as (ahead, other):
        await ahead.enter_ahead([URL])
        await asyncio.sleep(0.1)  # the turn's moment (TURN_MOMENT_SHARE of the delay) passes
        before = ahead.statements
        started = time.monotonic()
        await site.request(ahead, 0.0)
        assert site.starts[0] - started < 0.1  # no wait for another turn
        assert ahead.statements == before + 1  # the stamp moved on
        await site.request(other, 0.0)
    first, second = site.starts
    assert second - first >= 0.3 - 0.01  # on the old stamp: 0.2 s


async def test_a_slot_entered_ahead_and_never_used_is_freed(
    stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.fleet_gate.AHEAD_KEPT_SECONDS", 0.3)
    async with gates(stores[:2], per_host=1, min_delay=0.0) as (ahead, other):
        await ahead.enter_ahead([URL])  # and no request to the host follows
        started = time.monotonic()
        await asyncio.wait_for(Site().request(other, 0.0), timeout=5)
        assert 0.25 <= time.monotonic() - started < 2.0  # freed, long before its hold ran out


async def test_slots_finished_together_are_freed_in_one_statement(
    stores: list[Store],
) -> None:
    hosts = [f"http://site{n}.test/feed.xml" for n in range(5)]
    async with counted(stores[:2], per_host=1, min_delay=0.0) as (gate, other):
        await gate.enter_ahead(hosts)
        before = gate.statements

        async def request(url: str) -> None:
            async with gate.slot(url):
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request(url) for url in hosts))
        await asyncio.sleep(0.2)
        assert gate.statements == before + 1  # five slots, one statement
        for url in hosts:  # and every one is free for another worker
            await asyncio.wait_for(_enter_and_leave(other, url), timeout=1)


async def _enter_and_leave(gate: FleetHostGate, url: str) -> None:
    async with gate.slot(url):
        pass


async def test_a_turn_won_ahead_spaces_the_fleet_from_its_latest_start(
    stores: list[Store],
) -> None:
    """A turn won ahead may be used for a moment after it was won; the fleet's next turn is
    a delay after the end of that moment, so a late start still keeps its distance."""
    site = Site()
    async with gates(stores[:2], per_host=2, min_delay=0.3) as (ahead, other):
        await ahead.enter_ahead([URL])
        await asyncio.sleep(0.025)  # late, but within the turn's moment (0.1 of 0.3 s)
        await asyncio.gather(site.request(ahead, 0.0), site.request(other, 0.0))
    first, second = site.starts
    assert second - first >= 0.3 - 0.01  # without the margin: 0.275


async def test_a_turn_spaces_the_fleet_from_the_last_moment_its_request_may_start(
    stores: list[Store],
) -> None:
    site = Site()
    async with gates(stores[:2], per_host=2, min_delay=0.3) as (first, second):
        await site.request(first, 0.0)
        await site.request(second, 0.0)
    earlier, later = site.starts
    assert later - earlier >= 0.3 + 0.03 - 0.01  # the delay after the turn's moment


class SlowAnswers(FleetHostGate):
    """A gate whose database answers arrive late (a busy event loop, a slow server)."""

    async def _execute_all(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        rows = await super()._execute_all(sql, **params)
        await asyncio.sleep(0.05)
        return rows


async def test_a_turn_known_too_late_is_moved_on_before_the_request_starts(
    stores: list[Store],
) -> None:
    """Won, but known only after its moment had passed: starting then could reach the site
    less than a delay before the fleet's next request. The request moves its turn's stamp on,
    with a moment long enough for answers this slow (or it would never start)."""
    site = Site()
    slow = SlowAnswers(stores[0].engine, "slow", per_host=2, min_delay=0.3)
    async with gates(stores[1:2], per_host=2, min_delay=0.3) as (other,):
        try:
            async with asyncio.timeout(5):
                await site.request(slow, 0.0)
                await site.request(other, 0.0)
        finally:
            await slow.aclose()
    first, second = site.starts
    assert second - first >= 0.3 - 0.01  # started on the late answer: about 0.2 s


async def test_requests_waiting_for_a_busy_host_start_in_the_order_they_asked(
    stores: list[Store],
) -> None:
    """Eight requests from three workers wait for a host's one slot. Without a line, the first
    to ask again after the slot frees would win: an order close to random, in which one feed can
    lose for as long as its site stays busy (tests/test_fleet.py saw 17 s)."""
    started: list[int] = []

    async def request(number: int, gate: FleetHostGate) -> None:
        async with gate.slot(URL):
            started.append(number)
            await asyncio.sleep(0.05)

    async with gates(stores, per_host=1, min_delay=0.0) as workers:
        holding = workers[0].slot(URL)
        await holding.__aenter__()
        waiting = []
        for number in range(8):
            waiting.append(asyncio.create_task(request(number, workers[(number * 2) % 3])))
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.3)  # every one of them has asked again by now
        await holding.__aexit__(None, None, None)
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
    assert started == list(range(8))
    with stores[0].engine.begin() as connection:  # every one left the line as it started
        assert connection.scalar(text("SELECT count(*) FROM host_waiters")) == 0


async def test_the_turn_goes_to_the_request_that_asked_first(stores: list[Store]) -> None:
    """Two slots, so requests that asked later hold one while they wait for the turn: the
    turn still goes in the order of asking, not to whoever asks again first."""
    started: list[int] = []

    async def request(number: int, gate: FleetHostGate) -> None:
        async with gate.slot(URL):
            started.append(number)

    async with gates(stores, per_host=2, min_delay=0.15) as workers:
        waiting = []
        for number in range(6):
            waiting.append(asyncio.create_task(request(number, workers[number % 3])))
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
    assert started == list(range(6))


async def test_a_place_left_by_a_request_that_went_away_lapses(
    stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.fleet_gate.PLACE_KEPT_SECONDS", 0.3)
    async with gates(stores[:2], per_host=1, min_delay=0.0) as (first, second):
        holding = first.slot(URL)
        await holding.__aenter__()
        gone = asyncio.create_task(_enter_and_leave(first, URL))  # stands in the line...
        await asyncio.sleep(0.1)
        gone.cancel()  # ...until its poll is cancelled, and never says so
        await holding.__aexit__(None, None, None)
        # Behind the place that lapses, not forever.
        await asyncio.wait_for(_enter_and_leave(second, URL), timeout=2)


async def test_a_request_for_a_source_due_earlier_goes_before_those_that_asked_earlier(
    stores: list[Store],
) -> None:
    """A source's poll waits in its host's line from the source's due time (bot.fleet sets it):
    one whose worker died while it waited, taken over when its lease ran out, is not sent to
    the back of the line."""
    started: list[str] = []

    async def request(name: str, gate: FleetHostGate, due: datetime | None) -> None:
        WAITING_SINCE.set(due)
        async with gate.slot(URL):
            started.append(name)

    async with gates(stores[:2], per_host=1, min_delay=0.0) as (first, second):
        holding = first.slot(URL)
        await holding.__aenter__()
        asked = asyncio.create_task(request("asked first", first, None))
        await asyncio.sleep(0.1)
        overdue = datetime.now(UTC) - timedelta(seconds=30)
        taken_over = asyncio.create_task(request("due earlier", second, overdue))
        await asyncio.sleep(0.3)
        await holding.__aexit__(None, None, None)
        await asyncio.wait_for(asyncio.gather(asked, taken_over), timeout=5)
    assert started == ["due earlier", "asked first"]


async def test_a_slot_held_by_a_later_request_goes_to_an_earlier_one_waiting_for_it(
    stores: list[Store],
) -> None:
    """A request holding the host's only slot waits for the turn; then a source due long ago
    asks. Each would wait for the other (the slot; the place in line) if the holder kept the
    slot: it hands it back instead."""
    started: list[str] = []

    async def request(name: str, gate: FleetHostGate, due: datetime | None) -> None:
        WAITING_SINCE.set(due)
        async with gate.slot(URL):
            started.append(name)

    async with gates(stores, per_host=1, min_delay=0.4) as (first, second, third):
        await _enter_and_leave(first, URL)  # the turn is taken for 0.4 s and more
        later = asyncio.create_task(request("took the slot", second, None))
        await asyncio.sleep(0.1)  # it holds the slot and waits for the turn
        overdue = datetime.now(UTC) - timedelta(seconds=30)
        earlier = asyncio.create_task(request("due long ago", third, overdue))
        await asyncio.wait_for(asyncio.gather(later, earlier), timeout=5)
    assert started == ["due long ago", "took the slot"]


async def test_the_gate_plans_its_statements_once_per_connection(
    stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One connection, so that every statement below meets the plans of the ones before it.
    monkeypatch.setattr(fleet_gate, "POOL_SIZE", 1)
    async with counted(stores[:1], per_host=2, min_delay=0.0) as (gate,):
        for index in range(12):  # new hosts each time: entry ahead, slots made, entry again
            await gate.enter_ahead([f"http://h{index}-{n}.test/feed" for n in range(3)])
        [(custom, generic)] = await gate._execute_all(
            "SELECT sum(custom_plans), sum(generic_plans) FROM pg_prepared_statements"
        )
    # Left to choose, PostgreSQL plans a statement anew for each of its first five runs at
    # least, and the entry ahead on every run (docs/benchmarks.md).
    assert custom == 0
    assert generic >= 1


async def test_the_gate_s_plans_are_index_lookups_whatever_the_tables_hold(
    stores: list[Store],
) -> None:
    # Empty and analysed: left to choose, PostgreSQL would read such tables in full, and a
    # plan kept for the connection's life would go on reading them once they fill.
    with stores[0].engine.begin() as connection:
        connection.execute(text("ANALYZE host_slots; ANALYZE host_turns; ANALYZE host_waiters"))
    async with counted(stores[:1], per_host=2, min_delay=1.0) as (gate,):
        plan = await gate._execute_all(
            "EXPLAIN " + fleet_gate._ENTER_AHEAD_SPACED,
            hosts=["a.test", "b.test"],
            fresh=timedelta(seconds=0.1),
        )
    lines = "\n".join(line for (line,) in plan)
    assert not re.search(r"Seq Scan|(Hash|Merge) (\w+ )?Join", lines), lines
    assert "Index Scan using pk_host_slots" in lines, lines


def test_the_gate_keeps_the_database_url_s_own_options(postgres_url: str) -> None:
    url = f"{postgres_url}?options=-c%20statement_timeout%3D12345"
    with Store.open(url) as store:

        async def show() -> object:
            async with counted([store], per_host=2, min_delay=0.0) as (gate,):
                [(timeout,)] = await gate._execute_all("SHOW statement_timeout")
                [(plans,)] = await gate._execute_all("SHOW plan_cache_mode")
                return timeout, plans

        assert asyncio.run(show()) == ("12345ms", "force_generic_plan")
