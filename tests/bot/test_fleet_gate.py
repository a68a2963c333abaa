"""Per-host limits shared by several processes through PostgreSQL (bot.fleet_gate).

Each gate here stands for one worker process (its own owner id, its own engine and pool): the
limits must hold for all of them together, as a site sees them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bot.fleet_gate import FleetHostGate
from bot.store import Store

URL = "http://news.test/feed.xml"


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


def gates(stores: list[Store], **options: object) -> list[FleetHostGate]:
    return [
        FleetHostGate(store.engine, f"worker-{n}", **options)  # type: ignore[arg-type]
        for n, store in enumerate(stores)
    ]


async def test_per_host_concurrency_holds_across_workers(stores: list[Store]) -> None:
    site = Site()
    workers = gates(stores, per_host=2, min_delay=0.0)
    await asyncio.gather(*(site.request(gate, 0.15) for gate in workers for _ in range(3)))
    assert site.peak == 2  # reached, never passed, by nine requests from three workers
    assert len(site.starts) == 9


async def test_the_host_delay_spaces_starts_from_all_workers(stores: list[Store]) -> None:
    site = Site()
    workers = gates(stores, per_host=3, min_delay=0.2)
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
    dead, alive = gates(stores[:2], per_host=1, min_delay=0.0, hold=timedelta(seconds=0.6))
    holding = dead.slot(URL)
    await holding.__aenter__()  # and never leaves: the worker was killed mid-request
    started = time.monotonic()
    site = Site()
    await asyncio.wait_for(site.request(alive, 0.0), timeout=5)
    assert time.monotonic() - started >= 0.4


def test_the_fleet_gate_refuses_sqlite(tmp_path: Path) -> None:
    with (
        Store.open(f"sqlite:///{tmp_path / 'one.sqlite'}") as store,
        pytest.raises(ValueError, match="needs PostgreSQL"),
    ):
        FleetHostGate(store.engine, "w")
