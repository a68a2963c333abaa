"""Polls answered 304 are written together at the end of a round (bot.poll_batch): the state
they leave is exactly what one write per poll leaves, and nothing is written before the round
ends or lost when it does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import App
from bot.ingest import Ingestor, SourceJob
from bot.poll_batch import NotModifiedBatch, NotModifiedPoll
from bot.sample_site import SampleSite
from bot.settings import load_settings
from bot.store import Store
from feeds.fetch import FetchLimits, make_client
from feeds.match import Matcher
from feeds.models import ConditionalHeaders, Watchlist

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FEED = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title><item><guid>g</guid>"
    b"<title>Kyiv</title><description>Kyiv talks, a whole paragraph of them.</description>"
    b"</item></channel></rss>"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite3'}") as opened:
        yield opened


@pytest.fixture
async def ingestor(store: Store) -> AsyncIterator[Ingestor]:
    async with make_client("wirewatch-test", LIMITS) as client:
        yield Ingestor(
            store=store,
            client=client,
            matcher=Matcher([Watchlist("kyiv", keywords=("Kyiv",))]),
            routes={},
            limits=LIMITS,
            clock=lambda: T0,
        )


def test_a_batch_writes_what_one_write_per_poll_writes(tmp_path: Path) -> None:
    polls = [
        NotModifiedPoll(f"s{n}", f"https://h{n}.test/f", ConditionalHeaders(f'"e{n}"', None),
                        T0, None if n else "https://moved.test/f", T0 + timedelta(minutes=n))
        for n in range(3)
    ]  # fmt: skip
    with (
        Store.open(f"sqlite:///{tmp_path / 'one.sqlite3'}") as one,
        Store.open(f"sqlite:///{tmp_path / 'batch.sqlite3'}") as batched,
    ):
        for store in (one, batched):  # a first, failed poll: the 304 must clear its error
            store.record_poll_failure("s1", "https://h1.test/f", "boom", T0, kind="http")
        for poll in polls:
            one.record_poll_success(
                poll.name, poll.url, poll.validators, poll.at, not_modified=True,
                fetch_url=poll.fetch_url, next_poll_at=poll.next_poll_at,
            )  # fmt: skip
        batched.record_not_modified_polls(polls)
        batched.record_not_modified_polls([])
        assert batched.source_states() == one.source_states()
        [state] = [s for s in batched.source_states() if s.name == "s1"]
        assert (state.failure_streak, state.last_error, state.not_modified_polls) == (0, None, 1)


async def test_a_304_waits_in_the_batch_and_keeps_the_validators(
    ingestor: Ingestor, store: Store
) -> None:
    with SampleSite() as site:
        site.set_file("/f.xml", FEED, "application/rss+xml")
        job = SourceJob("s", site.url("/f.xml"), full_text="never")
        first = await ingestor.poll(job, NotModifiedBatch())  # 200: written at once
        assert first.new_articles == 1
        stored = store.source_state("s", job.url)
        batch = NotModifiedBatch()
        again = await ingestor.poll(job, batch)
        assert again.not_modified
        assert store.source_state("s", job.url) == stored  # nothing written yet
        store.record_not_modified_polls(batch.take())
        assert batch.take() == []
        state = store.source_state("s", job.url)
        assert (state.polls, state.not_modified_polls) == (2, 1)
        assert state.validators == stored.validators and state.next_poll_at == again.next_poll_at
        third = await ingestor.poll(job)  # the stored validators still earn a 304
        assert third.not_modified


async def test_a_round_of_the_app_writes_its_304s_when_it_ends(tmp_path: Path) -> None:
    with SampleSite() as site:
        for n in range(3):
            site.set_file(f"/f{n}.xml", FEED.replace(b"<guid>g", f"<guid>g{n}".encode()),
                          "application/rss+xml")  # fmt: skip
        path = tmp_path / "wirewatch.yaml"
        path.write_text(
            f"database: sqlite:///{tmp_path / 'db.sqlite3'}\n"
            f"output_dir: {tmp_path / 'feeds'}\n"
            "fetch: {host_delay: 0s}\n"
            "watchlists: [{name: kyiv, keywords: [Kyiv]}]\n"
            "sources:\n"
            + "".join(
                f"  - {{name: s{n}, url: '{site.url(f'/f{n}.xml')}', full_text: never}}\n"
                for n in range(3)
            ),
            encoding="utf-8",
        )
        async with App(load_settings(path, {})) as app:
            await app.run_once()
            second = await app.run_once()
            assert all(poll.not_modified for poll in second.polls)
            states = app.store.source_states()
        assert [(s.name, s.polls, s.not_modified_polls) for s in states] == [
            ("s0", 2, 1), ("s1", 2, 1), ("s2", 2, 1),
        ]  # fmt: skip
        assert all(s.next_poll_at is not None and s.validators.etag for s in states)
