"""Chat leases on the outbox (bot.outbox_claims), on SQLite and on a real PostgreSQL: one worker
per chat, fenced claims, a dead worker's chats taken over once its lease expired, its in-flight
alerts left `unknown` only then, and the rate limits carried across a hand-over."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.delivery import Deliverer, route_table
from bot.outbox_claims import ChatLease, ChatLeases, LeasedElsewhere, LeaseLost, recover_at_start
from bot.ratelimit import Limits
from bot.schema import chat_leases, outbox
from bot.settings import WatchlistSettings
from bot.store import Store
from bot.telegram import SendOptions
from feeds.models import Article, Match, TermHit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = 30.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


def queue(store: Store, title: str, chats: list[int], at: datetime = T0) -> None:
    article = Article(url=f"https://news.test/{title}", title=title, paragraphs=("x",), html="")
    match = Match("w", (TermHit("x", 1, ("body",)),), "x")
    store.add_article_with_matches("src", title, article, [match], {"w": chats}, at)


def alert_ids(store: Store, chat: int) -> list[int]:
    return [alert.id for alert in store.pending_alerts(chat_id=chat)]


def status_of(store: Store) -> dict[int, tuple[str, str | None]]:
    with store.engine.begin() as connection:
        rows = connection.execute(select(outbox.c.id, outbox.c.status, outbox.c.claimed_by))
        return {row.id: (row.status, row.claimed_by) for row in rows}


def workers(store: Store) -> tuple[ChatLeases, ChatLeases]:
    return (
        ChatLeases(store.engine, owner="a", seconds=LEASE),
        ChatLeases(store.engine, owner="b", seconds=LEASE),
    )


def test_one_worker_holds_a_chat_until_its_lease_expires(store: Store) -> None:
    queue(store, "one", [5])
    a, b = workers(store)
    lease = a.acquire(5, T0)
    assert isinstance(lease, ChatLease) and lease.owner == "a"
    assert b.acquire(5, T0 + timedelta(seconds=1)) == LeasedElsewhere(
        5, T0 + timedelta(seconds=LEASE)
    )
    assert isinstance(a.acquire(5, T0 + timedelta(seconds=2)), ChatLease)  # ours: take again
    taken = b.acquire(5, T0 + timedelta(seconds=2 + LEASE))
    assert isinstance(taken, ChatLease) and taken.owner == "b"


def test_a_released_chat_is_free_at_once_and_renewal_keeps_a_live_lease(store: Store) -> None:
    a, b = workers(store)
    a.acquire(5, T0)
    a.acquire(6, T0)
    assert a.renew(T0 + timedelta(seconds=LEASE - 1)) == 2
    assert isinstance(b.acquire(5, T0 + timedelta(seconds=LEASE + 1)), LeasedElsewhere)
    a.release(5, T0 + timedelta(seconds=LEASE + 2))
    assert isinstance(b.acquire(5, T0 + timedelta(seconds=LEASE + 2)), ChatLease)
    assert a.renew(T0 + timedelta(seconds=LEASE + 3)) == 1  # only chat 6 is still a's


def test_claims_are_fenced_by_the_lease(store: Store) -> None:
    for title in ("one", "two"):
        queue(store, title, [5])
    first, second = alert_ids(store, 5)
    a, b = workers(store)
    lease = a.acquire(5, T0)
    assert isinstance(lease, ChatLease)
    assert store.claim_alerts([first], T0, lease=lease) == [first]
    assert status_of(store)[first] == ("sending", "a")
    later = T0 + timedelta(seconds=LEASE + 1)
    assert isinstance(b.acquire(5, later), ChatLease)  # a stalled past its lease: b took it
    with pytest.raises(LeaseLost, match="chat 5 is now delivered by another worker"):
        store.claim_alerts([second], later, lease=lease)
    assert status_of(store)[second] == ("pending", None)


def test_a_dead_workers_pending_alerts_go_on_and_its_sending_ones_become_unknown(
    store: Store,
) -> None:
    for title in ("one", "two", "three"):
        queue(store, title, [5])
    first, second, third = alert_ids(store, 5)
    a, b = workers(store)
    lease = a.acquire(5, T0)
    assert isinstance(lease, ChatLease)
    store.claim_alerts([first], T0, lease=lease)  # a dies here, mid-send
    # While a's lease runs, nobody settles its send, not even a sweep by another worker.
    assert b.recover_abandoned(T0 + timedelta(seconds=LEASE - 1)) == 0
    assert isinstance(b.acquire(5, T0 + timedelta(seconds=LEASE - 1)), LeasedElsewhere)
    assert status_of(store)[first][0] == "sending"
    taken = b.acquire(5, T0 + timedelta(seconds=LEASE + 1))
    assert isinstance(taken, ChatLease) and taken.recovered == 1
    statuses = status_of(store)
    assert statuses[first][0] == "unknown"
    assert statuses[second][0] == statuses[third][0] == "pending"
    assert [alert.id for alert in store.pending_alerts(chat_id=5)] == [second, third]


def test_a_sweep_settles_sends_no_live_lease_covers(store: Store) -> None:
    queue(store, "one", [5, 6])
    [five], [six] = alert_ids(store, 5), alert_ids(store, 6)
    a, b = workers(store)
    for chat, alert in ((5, five), (6, six)):
        lease = a.acquire(chat, T0)
        assert isinstance(lease, ChatLease)
        store.claim_alerts([alert], T0, lease=lease)
    a.release(6, T0 + timedelta(seconds=1))  # stopped mid-send: the outcome is unknown
    assert b.recover_abandoned(T0 + timedelta(seconds=2)) == 1
    assert status_of(store)[six][0] == "unknown"
    assert status_of(store)[five][0] == "sending"  # a's live lease covers it
    assert b.recover_abandoned(T0 + timedelta(seconds=LEASE + 1)) == 1
    assert status_of(store)[five][0] == "unknown"


def test_a_new_holder_learns_the_chats_recent_sends(store: Store) -> None:
    for title in ("one", "two", "three"):
        queue(store, title, [-7])
    ids = alert_ids(store, -7)
    a, b = workers(store)
    lease = a.acquire(-7, T0)
    assert isinstance(lease, ChatLease)
    for offset, alert in enumerate(ids):
        store.claim_alerts([alert], T0 + timedelta(seconds=offset), lease=lease)
    a.release(-7, T0 + timedelta(seconds=3))
    again = a.acquire(-7, T0 + timedelta(seconds=4))
    assert isinstance(again, ChatLease) and again.others_sends == ()  # its own are known
    a.release(-7, T0 + timedelta(seconds=4))
    taken = b.acquire(-7, T0 + timedelta(seconds=62.5))
    assert isinstance(taken, ChatLease)
    assert taken.others_sends == (T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))


def test_a_send_counts_from_when_telegram_answered(store: Store) -> None:
    queue(store, "one", [-7])
    [alert] = alert_ids(store, -7)
    a, b = workers(store)
    lease = a.acquire(-7, T0)
    assert isinstance(lease, ChatLease)
    store.claim_alerts([alert], T0, lease=lease)
    a.note_sent(-7, T0 + timedelta(seconds=3))  # a slow answer
    a.release(-7, T0 + timedelta(seconds=3))
    b.note_sent(-7, T0 + timedelta(seconds=4))  # not b's chat: no effect
    taken = b.acquire(-7, T0 + timedelta(seconds=4))
    assert isinstance(taken, ChatLease)
    answered = T0 + timedelta(seconds=3)
    claimed = T0  # SQLite keeps the claim's moment (one process; see ChatLeases.note_sent)
    expected = claimed if store.engine.dialect.name == "sqlite" else answered
    assert taken.others_sends == (expected,)


def test_start_up_settles_leftovers_on_sqlite_only(store: Store) -> None:
    queue(store, "one", [5])
    [alert] = alert_ids(store, 5)
    a, b = workers(store)
    lease = a.acquire(5, T0)
    assert isinstance(lease, ChatLease)
    store.claim_alerts([alert], T0, lease=lease)
    recovered = recover_at_start(store, T0 + timedelta(seconds=1))
    if store.engine.dialect.name == "sqlite":  # one process: the previous one is gone
        assert recovered == 1 and status_of(store)[alert][0] == "unknown"
        assert isinstance(b.acquire(5, T0 + timedelta(seconds=1)), ChatLease)
    else:  # other workers may be sending right now
        assert recovered == 0 and status_of(store)[alert][0] == "sending"
        assert isinstance(b.acquire(5, T0 + timedelta(seconds=1)), LeasedElsewhere)


def test_a_lease_must_last(store: Store) -> None:
    with pytest.raises(ValueError, match="a lease must last more than 0 seconds"):
        ChatLeases(store.engine, seconds=0)


def test_postgres_skips_a_row_another_worker_is_claiming(postgres_url: str) -> None:
    """SKIP LOCKED: while one worker's transaction holds a chat's row, another does not wait."""
    with Store.open(postgres_url) as store:
        a, b = workers(store)
        a.acquire(5, T0)
        a.release(5, T0)
        locked, release = threading.Event(), threading.Event()

        def hold_row() -> None:
            with store.engine.begin() as connection:
                connection.execute(
                    select(chat_leases).where(chat_leases.c.chat_id == 5).with_for_update()
                ).one()
                locked.set()
                release.wait(10)

        holder = threading.Thread(target=hold_row)
        holder.start()
        try:
            assert locked.wait(10)
            assert b.acquire(5, T0 + timedelta(seconds=1)) == LeasedElsewhere(5, None)
        finally:
            release.set()
            holder.join()
        assert isinstance(b.acquire(5, T0 + timedelta(seconds=1)), ChatLease)


class RecordingSender:
    """Records (chat, text, monotonic time, sender name), shared by several Deliverers."""

    def __init__(self, name: str, log: list[tuple[int, str, float, str]], pause: float) -> None:
        self.name = name
        self.log = log
        self.pause = pause

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        loop = asyncio.get_running_loop()
        self.log.append((chat_id, html_text, loop.time(), self.name))
        await asyncio.sleep(self.pause)
        return len(self.log)


def deliverer(
    store: Store, name: str, log: list[tuple[int, str, float, str]], routes: Any = None
) -> Deliverer:
    return Deliverer(
        store,
        RecordingSender(name, log, pause=0.01),
        "sent",
        watchlist_titles={},
        source_titles={},
        routes=routes,
        clock=lambda: datetime.now(UTC),
        leases=ChatLeases(store.engine, owner=name, seconds=LEASE),
    )


async def test_two_workers_deliver_every_alert_once_in_order_one_per_second_per_chat(
    postgres_url: str,
) -> None:
    chats = list(range(1, 31))
    titles = [f"story-{number}" for number in range(3)]
    with Store.open(postgres_url) as first, Store.open(postgres_url) as second:
        for number, title in enumerate(titles):
            queue(first, title, chats, at=T0 + timedelta(minutes=number))
        log: list[tuple[int, str, float, str]] = []
        # Each worker already holds half the chats (as live workers that started earlier
        # would): neither may take the other's, so the work is shared whichever of the two
        # gets the event loop first, rather than by timing.
        half = len(chats) // 2
        for owner, store, mine in (("a", first, chats[:half]), ("b", second, chats[half:])):
            held = ChatLeases(store.engine, owner=owner, seconds=LEASE)
            for chat in mine:
                assert not isinstance(held.acquire(chat, datetime.now(UTC)), LeasedElsewhere)
        await asyncio.gather(
            deliverer(first, "a", log).deliver(), deliverer(second, "b", log).deliver()
        )
        assert first.alert_counts() == {"sent": len(chats) * len(titles)}
    per_chat: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for chat, text, moment, _ in log:
        per_chat[chat].append((text, moment))
    assert {name for *_, name in log} == {"a", "b"}  # both worked
    spacing = Limits().per_chat_window
    for chat in chats:
        sent = per_chat[chat]
        assert [next(t for t in titles if t in text) for text, _ in sent] == titles  # in order
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(sent)]
        assert min(gaps) >= spacing


async def test_a_chat_taken_over_keeps_its_per_chat_spacing(postgres_url: str) -> None:
    with Store.open(postgres_url) as store:
        queue(store, "one", [-9])
        log: list[tuple[int, str, float, str]] = []
        await deliverer(store, "a", log).deliver()
        queue(store, "two", [-9], at=T0 + timedelta(minutes=1))
        await deliverer(store, "b", log).deliver()  # a fresh worker, its throttle empty
    [(_, _, sent_by_a, a), (_, _, sent_by_b, b)] = log
    assert (a, b) == ("a", "b")
    assert sent_by_b - sent_by_a >= Limits().per_chat_window


async def test_two_workers_send_a_due_digest_once(postgres_url: str) -> None:
    """Digests need no leader: the worker holding the chat composes and sends it, once."""
    watchlist = WatchlistSettings.model_validate(
        {"name": "w", "keywords": ["x"], "chats": [{"chat": 5, "schedule": "hourly"}]}
    )
    table = route_table([watchlist])
    queued = datetime.now(UTC) - timedelta(hours=2)
    with Store.open(postgres_url) as first, Store.open(postgres_url) as second:
        for number in range(5):
            queue(first, f"story-{number}", [5], at=queued + timedelta(minutes=number))
        log: list[tuple[int, str, float, str]] = []
        await asyncio.gather(
            deliverer(first, "a", log, table).deliver(),
            deliverer(second, "b", log, table).deliver(),
        )
        assert first.alert_counts() == {"sent": 5}
    [(chat, text, _, _)] = log
    assert chat == 5 and text.startswith("<b>Digest</b> · 5 alerts")
    assert all(f"story-{number}" in text for number in range(5))
