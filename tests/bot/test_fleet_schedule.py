"""The fleet's claim loop (bot.fleet.FleetSchedule): each source polled when due by exactly one
worker, a crashed worker's sources taken over once its leases run out, a clean stop that hands
sources back at once. The polls are stand-ins that record what they were asked; the claims are
real, on SQLite (one worker) and PostgreSQL (several)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.coordination import Release, claim_sources, register_sources
from bot.fleet import FleetSchedule, lease_of
from bot.ingest import SourceJob
from bot.schema import sources
from bot.settings import SettingsError, load_settings
from bot.store import SourceState, Store

JOBS = [SourceJob(name, f"http://127.0.0.1:9/{name}") for name in ("a", "b", "c")]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


@dataclass
class Recorder:
    """A poll that takes `seconds` and makes its source due again `every` later."""

    owner: str
    every: float
    seconds: float = 0.0
    after: float = 0.0
    """How long the poll goes on after reporting the source done (publishing, delivering)."""
    polls: list[tuple[str, str, float, float]] = field(default_factory=list)
    """(source, owner, start, end), monotonic."""
    states: list[SourceState | None] = field(default_factory=list)
    """The state each poll was handed by its claim."""

    async def __call__(
        self, job: SourceJob, polled: Callable[..., object], state: SourceState | None
    ) -> datetime:
        self.states.append(state)
        start = time.monotonic()
        await asyncio.sleep(self.seconds)
        self.polls.append((job.name, self.owner, start, time.monotonic()))
        due = datetime.now(UTC) + timedelta(seconds=self.every)
        polled(due)
        await asyncio.sleep(self.after)  # feeds and alerts: the source is free meanwhile
        return due


def schedule(store: Store, poll: Recorder, **options: object) -> FleetSchedule:
    settings: dict[str, object] = {
        "owner": poll.owner,
        "lease": timedelta(seconds=3),
        "capacity": 4,
        "claim_every": 0.05,
        **options,
    }
    return FleetSchedule(store.engine, JOBS, poll, **settings)  # type: ignore[arg-type]


async def test_each_source_is_polled_again_when_due(store: Store) -> None:
    poll = Recorder("w1", every=0.4)
    worker = schedule(store, poll)
    worker.start()
    await asyncio.sleep(1.5)
    await worker.stop(grace_seconds=1)
    for name in ("a", "b", "c"):
        starts = [start for source, _, start, _ in poll.polls if source == name]
        assert 3 <= len(starts) <= 5  # at once, then every 0.4 s for 1.5 s
        assert all(later - earlier >= 0.38 for earlier, later in pairwise(starts))


async def test_workers_on_postgresql_never_poll_one_source_at_once(postgres_url: str) -> None:
    stores = [Store.open(postgres_url) for _ in range(3)]
    polls: list[tuple[str, str, float, float]] = []
    workers = []
    for n, store in enumerate(stores):
        poll = Recorder(f"w{n}", every=0.3, seconds=0.1, polls=polls)
        # One poll at a time per worker: otherwise the first to claim may take all three sources
        # every time, and whether the work is shared would depend on timing.
        workers.append(schedule(store, poll, capacity=1))
    for worker in workers:
        worker.start()
    await asyncio.sleep(2.0)
    for worker in workers:
        await worker.stop(grace_seconds=1)
    for store in stores:
        store.close()
    for name in ("a", "b", "c"):
        runs = sorted((start, end) for source, _, start, end in polls if source == name)
        assert len(runs) >= 4
        # One at a time, and never again before it was due (0.3 s after the last poll ended).
        assert all(later[0] >= earlier[1] + 0.28 for earlier, later in pairwise(runs))
    assert len({owner for _, owner, _, _ in polls}) >= 2  # the work is shared


async def test_a_crashed_worker_s_source_is_taken_over_when_its_lease_runs_out(
    store: Store,
) -> None:
    with store.engine.begin() as connection:
        register_sources(connection, [(job.name, job.url) for job in JOBS])
        crashed = claim_sources(
            connection,
            "crashed",
            skip=["b", "c"],
            now=datetime.now(UTC),
            lease=timedelta(seconds=0.8),
            limit=1,
        )
    assert crashed == ["a"]
    started = time.monotonic()
    poll = Recorder("w2", every=60)
    worker = schedule(store, poll)
    worker.start()
    await asyncio.sleep(1.5)
    await worker.stop(grace_seconds=1)
    first = {source: start - started for source, _, start, _ in reversed(poll.polls)}
    assert first["b"] < 0.5 and first["c"] < 0.5  # free sources at once
    assert 0.7 <= first["a"] < 1.4  # "a" once the crashed worker's lease ran out


async def test_stop_cancels_a_hanging_poll_and_hands_its_source_back(store: Store) -> None:
    poll = Recorder("w1", every=60, seconds=60)
    worker = schedule(store, poll)
    worker.start()
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await worker.stop(grace_seconds=0.3)
    assert time.monotonic() - started < 2
    with store.engine.begin() as connection:
        owners = connection.scalars(select(sources.c.lease_owner)).all()
        again = claim_sources(
            connection,
            "w2",
            now=datetime.now(UTC),
            lease=timedelta(seconds=3),
            limit=5,
        )
    assert owners == [None, None, None]
    assert sorted(again) == ["a", "b", "c"]  # still due: another worker polls them at once


def test_a_lease_too_short_to_renew_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "fleet: {lease: 2s, claim_every: 1s}\n"
        "sources: [{name: a, url: 'http://127.0.0.1:9/a'}]\n"
        "watchlists: [{name: w, title: W, keywords: [x]}]\n",
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match="lease must be at least 3 × claim_every"):
        load_settings(config)
    config.write_text(config.read_text().replace("lease: 2s", "lease: 3s"), encoding="utf-8")
    settings = load_settings(config)
    assert lease_of(settings) == timedelta(seconds=3)
    default = settings.model_copy(
        update={"fleet": settings.fleet.model_copy(update={"lease": None})}
    )
    assert lease_of(default) == 3 * settings.fetch.timeout


async def test_a_source_is_handed_back_before_its_feeds_and_alerts(store: Store) -> None:
    # Each poll reports its source done, then spends a second on feeds and alerts (a delivery
    # round may wait for a chat): the source is claimable, and polled, meanwhile.
    poll = Recorder("w1", every=0.2, after=1.0)
    worker = schedule(store, poll, capacity=8)
    worker.start()
    await asyncio.sleep(1.2)
    await worker.stop(grace_seconds=0.1)
    starts = [start for source, _, start, _ in poll.polls if source == "a"]
    assert len(starts) >= 3  # held until the end of each call, it would be polled twice


async def test_a_source_only_another_worker_has_is_handed_back_to_it(store: Store) -> None:
    # "x" is configured in w2 alone. Claims take any due source (no list of names is sent),
    # so w1 may claim "x": it hands it back untouched, never polls it, and skips it after that.
    everything = [*JOBS, SourceJob("x", "http://127.0.0.1:9/x")]
    with store.engine.begin() as connection:
        register_sources(connection, [(job.name, job.url) for job in everything])
    first = Recorder("w1", every=60)
    second = Recorder("w2", every=60)
    # w1 claims first, with room for every source, so it surely meets "x".
    w1 = schedule(store, first, capacity=8)
    w1.start()
    await asyncio.sleep(0.3)
    w2 = FleetSchedule(
        store.engine, everything, second, owner="w2", lease=timedelta(seconds=3), capacity=8,
        claim_every=0.05,
    )  # fmt: skip
    w2.start()
    await asyncio.sleep(0.5)
    await w1.stop(grace_seconds=1)
    await w2.stop(grace_seconds=1)
    assert sorted(source for source, _, _, _ in first.polls) == ["a", "b", "c"]
    assert [source for source, _, _, _ in second.polls] == ["x"]


async def test_a_release_during_a_renewal_is_not_reported_as_a_lost_lease(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # The renewal runs in a thread while polls go on: a source released after the renewal took
    # its list of held sources, but before the renewal's UPDATE, is not renewed (its lease has
    # ended) and must not be reported lost.
    poll = Recorder("w1", every=60, seconds=60)
    worker = schedule(store, poll)
    worker.start()
    await asyncio.sleep(0.3)
    renew_now = worker._renew_now

    def release_first(names: list[str]) -> set[str]:
        worker._held.discard("a")  # what a poll's release does first, then it writes
        worker._release_now("a", datetime.now(UTC) + timedelta(minutes=1))
        return renew_now(names)

    worker._renew_now = release_first  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="wirewatch.fleet"):
        await worker._renew()
    assert "lease lost" not in caplog.text
    assert worker._held == {"b", "c"}
    await worker.stop(grace_seconds=0.1)


async def test_a_claim_enters_the_host_gate_for_its_feeds_before_they_are_polled(
    store: Store,
) -> None:
    poll = Recorder("w1", every=60)
    entered: list[tuple[list[str], int]] = []

    async def enter_ahead(urls: list[str]) -> None:
        entered.append((sorted(urls), len(poll.states)))

    with store.engine.begin() as connection:  # "b" polls the end of a permanent redirect
        register_sources(connection, [(job.name, job.url) for job in JOBS])
        connection.execute(
            sources.update()
            .where(sources.c.name == "b")
            .values(fetch_url="http://127.0.0.1:9/moved-b")
        )
    worker = schedule(store, poll, enter_ahead=enter_ahead)
    worker.start()
    await asyncio.sleep(0.5)
    await worker.stop(grace_seconds=1)
    urls = sorted(url for batch, _ in entered for url in batch)
    assert urls == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/c", "http://127.0.0.1:9/moved-b"]
    assert entered[0][1] == 0  # before the first poll started
    assert len(entered) < 3 or len(poll.states) == 3


async def test_polls_go_on_when_entering_the_gate_ahead_fails(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def enter_ahead(urls: list[str]) -> None:
        raise OSError("the database went away")

    poll = Recorder("w1", every=60)
    worker = schedule(store, poll, enter_ahead=enter_ahead)
    with caplog.at_level(logging.ERROR, logger="wirewatch.fleet"):
        worker.start()
        await asyncio.sleep(0.5)
        await worker.stop(grace_seconds=1)
    assert sorted(source for source, _, _, _ in poll.polls) == ["a", "b", "c"]
    assert "entering the host gate ahead" in caplog.text


async def test_a_poll_s_slot_frees_before_its_release_is_written(store: Store) -> None:
    """The next poll need not wait for the database to write the last one's release (the
    source stays leased until then); stop() still waits for every write."""
    poll = Recorder("w1", every=60)
    worker = schedule(store, poll, capacity=1)
    release_all_now = worker._release_all_now
    writing = 0.4

    def slow_release(releases: list[Release]) -> None:
        time.sleep(writing)
        release_all_now(releases)

    worker._release_all_now = slow_release  # type: ignore[method-assign]
    started = time.monotonic()
    worker.start()
    await asyncio.sleep(0.3)
    # One slot: the three polls follow each other without waiting for the releases.
    assert len(poll.polls) == 3
    await worker.stop(grace_seconds=1)
    assert time.monotonic() - started >= writing  # stop waited for the writes
    with store.engine.begin() as connection:
        rows = connection.execute(select(sources.c.lease_owner, sources.c.next_poll_at)).all()
    assert all(owner is None and due is not None for owner, due in rows)


async def test_releases_of_polls_ending_together_are_written_together(store: Store) -> None:
    poll = Recorder("w1", every=60, seconds=0.1)
    worker = schedule(store, poll, capacity=3)
    written: list[list[str]] = []
    release_all_now = worker._release_all_now

    def record(releases: list[Release]) -> None:
        written.append(sorted(release.name for release in releases))
        release_all_now(releases)

    worker._release_all_now = record  # type: ignore[method-assign]
    worker.start()
    await asyncio.sleep(0.5)
    await worker.stop(grace_seconds=1)
    assert written == [["a", "b", "c"]]  # three polls of 0.1 s, claimed at once: one write
    with store.engine.begin() as connection:
        rows = connection.execute(select(sources.c.lease_owner, sources.c.next_poll_at)).all()
    assert all(owner is None and due is not None for owner, due in rows)
