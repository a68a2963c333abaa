"""Source leases and the feed change counter (bot.coordination), on SQLite and on PostgreSQL.

A claim takes only due, enabled, unleased (or expired) sources; a release writes the next due time
and ends the lease in one statement, and only for the lease's holder; concurrent claimers on
PostgreSQL never get the same source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from bot.coordination import (
    Release,
    bump_counter,
    claim_sources,
    read_counter,
    register_sources,
    release_source,
    release_sources,
    renew_leases,
)
from bot.poll_batch import NotModifiedPoll
from bot.schema import sources
from bot.store import Store, not_modified_update
from feeds.models import Article, ConditionalHeaders

LEASE = timedelta(minutes=5)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    store = Store.open(store_url)
    yield store.engine
    store.close()


def now() -> datetime:
    return datetime.now(UTC)


def claim(engine: Engine, owner: str, **options: object) -> list[str]:
    params: dict[str, object] = {"now": now(), "lease": LEASE, "limit": 100, **options}
    with engine.begin() as connection:
        return claim_sources(connection, owner, **params)  # type: ignore[arg-type]


def register(engine: Engine, *names: str) -> list[str]:
    with engine.begin() as connection:
        register_sources(connection, [(name, f"http://127.0.0.1:9/{name}") for name in names])
    return list(names)


def row(engine: Engine, name: str) -> dict[str, object]:
    with engine.begin() as connection:
        return dict(
            connection.execute(select(sources).where(sources.c.name == name)).one()._mapping
        )


def test_registered_sources_are_due_at_once_and_claimed_once(engine: Engine) -> None:
    register(engine, "a", "b", "c")
    assert sorted(claim(engine, "w1")) == ["a", "b", "c"]
    assert claim(engine, "w2") == []  # leased by w1
    assert row(engine, "a")["lease_owner"] == "w1"


def test_a_claim_takes_at_most_its_limit_most_overdue_first(engine: Engine) -> None:
    register(engine, "a", "b", "c")
    with engine.begin() as connection:
        for name, minutes in (("a", 1), ("b", 10), ("c", 5)):
            release_source(connection, name, "nobody", None)
            connection.execute(
                sources.update()
                .where(sources.c.name == name)
                .values(next_poll_at=now() - timedelta(minutes=minutes))
            )
    assert claim(engine, "w1", limit=2) == ["b", "c"]


def test_never_polled_sources_come_after_the_overdue_ones(engine: Engine) -> None:
    register(engine, "new1", "late", "new2", "later")
    with engine.begin() as connection:
        for name, minutes in (("late", 1), ("later", 30)):
            connection.execute(
                sources.update()
                .where(sources.c.name == name)
                .values(next_poll_at=now() - timedelta(minutes=minutes))
            )
    assert claim(engine, "w1", limit=3)[:2] == ["later", "late"]
    assert len(claim(engine, "w1", limit=3)) == 1  # the other never-polled one
    assert claim(engine, "w1") == []


def test_only_due_enabled_and_not_skipped_sources_are_claimed(engine: Engine) -> None:
    register(engine, "due", "later", "gone", "elsewhere")
    with engine.begin() as connection:
        connection.execute(
            sources.update()
            .where(sources.c.name == "later")
            .values(next_poll_at=now() + timedelta(minutes=10))
        )
        connection.execute(
            sources.update().where(sources.c.name == "gone").values(disabled_reason="410")
        )
    assert claim(engine, "w1", skip=["elsewhere"]) == ["due"]


def test_release_writes_the_next_due_time_and_ends_the_lease(engine: Engine) -> None:
    register(engine, "a")
    claim(engine, "w1")
    due = now() + timedelta(minutes=15)
    with engine.begin() as connection:
        assert not release_source(connection, "a", "w2", due)  # not the holder: nothing written
    assert row(engine, "a")["lease_owner"] == "w1"
    assert row(engine, "a")["next_poll_at"] is None
    with engine.begin() as connection:
        assert release_source(connection, "a", "w1", due)
    released = row(engine, "a")
    assert released["lease_owner"] is None and released["lease_expires_at"] is None
    assert released["next_poll_at"] == due
    assert claim(engine, "w2") == []  # not due before the written time


def test_releases_written_together_end_each_held_lease_with_its_own_values(
    engine: Engine,
) -> None:
    register(engine, "a", "b", "c", "d")
    assert sorted(claim(engine, "w1", limit=3)) == ["a", "b", "c"]
    assert claim(engine, "w2") == ["d"]
    later, much_later = now() + timedelta(minutes=15), now() + timedelta(hours=2)

    def answered_304(name: str, etag: str) -> NotModifiedPoll:
        return NotModifiedPoll(
            name, f"http://127.0.0.1:9/{name}", ConditionalHeaders(etag, None), now(), None, None
        )

    releases = [
        Release("a", later, not_modified_update(answered_304("a", '"a1"'))),
        Release("b", much_later),
        Release("c", later, not_modified_update(answered_304("c", '"c1"'))),
        Release("d", later),  # w2's lease: left as it is
    ]
    with engine.begin() as connection:
        assert release_sources(connection, "w1", releases) == 3
    a, b, c, d = (row(engine, name) for name in "abcd")
    assert (a["next_poll_at"], b["next_poll_at"], c["next_poll_at"]) == (later, much_later, later)
    assert (a["etag"], b["etag"], c["etag"]) == ('"a1"', None, '"c1"')
    assert (a["not_modified_polls"], b["not_modified_polls"], c["not_modified_polls"]) == (1, 0, 1)
    assert all(held["lease_owner"] is None for held in (a, b, c))
    assert d["lease_owner"] == "w2" and d["next_poll_at"] is None


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_release_it(
    engine: Engine,
) -> None:
    register(engine, "a")
    assert claim(engine, "crashed", lease=timedelta(seconds=0.3)) == ["a"]
    assert claim(engine, "w2") == []
    time.sleep(0.5)
    assert claim(engine, "w2") == ["a"]
    with engine.begin() as connection:
        assert not release_source(connection, "a", "crashed", now() + timedelta(hours=1))
        assert renew_leases(connection, ["a"], "crashed", now=now(), lease=LEASE) == set()
    assert row(engine, "a")["lease_owner"] == "w2"


def test_renewal_keeps_a_long_poll_s_source(engine: Engine) -> None:
    names = register(engine, "a")
    claim(engine, "w1", lease=timedelta(seconds=0.4))
    time.sleep(0.25)
    with engine.begin() as connection:
        held = renew_leases(connection, names, "w1", now=now(), lease=timedelta(seconds=0.4))
    assert held == {"a"}
    time.sleep(0.25)  # past the first expiry, within the renewed one
    assert claim(engine, "w2") == []


def test_registering_a_moved_source_forgets_what_belonged_to_its_old_url(
    engine: Engine, store_url: str
) -> None:
    with Store.open(store_url) as store:
        store.record_poll_success(
            "a",
            "http://127.0.0.1:9/old",
            ConditionalHeaders('"v1"', None),
            now(),
            next_poll_at=now() + timedelta(hours=1),
        )
    with engine.begin() as connection:
        register_sources(connection, [("a", "http://127.0.0.1:9/old")])
    assert claim(engine, "w1") == []  # same URL: its due time stands
    with engine.begin() as connection:
        register_sources(connection, [("a", "http://127.0.0.1:9/new")])
    moved = row(engine, "a")
    assert moved["url"] == "http://127.0.0.1:9/new"
    assert moved["etag"] is None and moved["next_poll_at"] is None
    assert claim(engine, "w1") == ["a"]


def test_the_feed_counter_moves_with_every_stored_article(engine: Engine, store_url: str) -> None:
    with engine.begin() as connection:
        assert read_counter(connection) == 0
        bump_counter(connection)
        assert read_counter(connection) == 1
    article = Article(url="https://news.test/a", title="A", paragraphs=("Text.",), html="")
    with Store.open(store_url) as store:
        store.add_article_with_matches("wire", "g1", article, [], {}, now())
        store.add_article_with_matches("wire", "g1", article, [], {}, now())  # a duplicate
    with engine.begin() as connection:
        assert read_counter(connection) == 2


def test_concurrent_claimers_on_postgresql_never_share_a_source(postgres_url: str) -> None:
    with Store.open(postgres_url) as store:
        register(store.engine, *(f"s{index}" for index in range(60)))
        claimed: dict[str, list[str]] = {}
        start = threading.Barrier(4)

        def worker(owner: str) -> None:
            start.wait()
            got: list[str] = []
            for _ in range(10):
                got += claim(store.engine, owner, limit=3)
            claimed[owner] = got

        threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    everything = [name for got in claimed.values() for name in got]
    assert len(everything) == len(set(everything)) == 60


def test_a_claim_in_progress_is_skipped_not_waited_for(postgres_url: str) -> None:
    with Store.open(postgres_url) as store:
        names = register(store.engine, "a", "b", "c")
        with store.engine.connect() as first, first.begin():
            taken = claim_sources(first, "w1", now=now(), lease=LEASE, limit=2)
            # w1 has not committed yet: its rows are locked. w2 would hit the lock timeout if
            # it waited for them; it gets the free row at once.
            with store.engine.connect() as second, second.begin():
                second.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                other = claim_sources(second, "w2", now=now(), lease=LEASE, limit=10)
    assert len(taken) == 2
    assert other == sorted(set(names) - set(taken))


def test_workers_starting_together_on_an_empty_database_all_start(postgres_url: str) -> None:
    # Each Store.open migrates; without taking turns, all but one would fail creating tables.
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            Store.open(postgres_url).close()
        except BaseException as error:
            failures.append(error)

    # Daemon threads with a bounded wait: without turns the migrations may deadlock instead.
    threads = [threading.Thread(target=open_store, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


@pytest.mark.parametrize("statistics", ["taken while due", "taken while none was due"])
def test_a_claim_reads_the_due_index_instead_of_sorting_every_source(
    postgres_url: str, statistics: str
) -> None:
    # 2,000 sources due at the same instant: the claim must walk the next_poll_at index and stop
    # after its limit, not read and sort every due row. Whatever the planner believes: statistics
    # gathered while nothing was due (as after an outage, or when a fleet starts) once made it
    # pick a bitmap scan of every due row and a sort, on every claim of the backlog.
    limit = 8
    with Store.open(postgres_url) as store:
        register(store.engine, *(f"s{index:04d}" for index in range(2000)))
        with store.engine.begin() as connection:
            if statistics == "taken while none was due":
                connection.execute(sources.update().values(next_poll_at=now() + LEASE))
                connection.exec_driver_sql("ANALYZE sources")
            connection.execute(sources.update().values(next_poll_at=now()))
            if statistics == "taken while due":
                connection.exec_driver_sql("ANALYZE sources")
        statements: list[tuple[str, object]] = []

        def capture(*args: object) -> None:
            statements.append((str(args[2]), args[3]))

        event.listen(store.engine, "before_cursor_execute", capture)
        assert len(claim(store.engine, "w1", limit=limit)) == limit
        event.remove(store.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = [s for s in statements if "FOR UPDATE" in s[0]]
        with store.engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            [[[plan]]] = cursor.fetchall()
            connection.rollback()
    nodes = list(plan_nodes(plan["Plan"]))
    scans = [
        node
        for node in nodes
        if node.get("Relation Name") == "sources"
        and node["Node Type"].endswith("Scan")
        and node["Actual Loops"] > 0  # the never polled are not looked for: the limit is full
    ]
    assert {node["Node Type"] for node in scans} == {"Index Scan"}, scans
    assert "ix_sources_next_poll_at" in {node["Index Name"] for node in scans}, scans
    # No scan reads more than the claim above leased and the limit, however many are due.
    assert all(
        node["Actual Rows"] + node.get("Rows Removed by Filter", 0) <= 2 * limit for node in scans
    ), scans


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A JSON plan's node and every node below it."""
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)
