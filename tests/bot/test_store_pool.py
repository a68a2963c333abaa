"""A PostgreSQL store keeps its connections: threads using it at once reuse them instead of
opening a server process per statement (bot.store.SERVER_POOL_SIZE)."""

from __future__ import annotations

import random
import threading
import time

from sqlalchemy import text

from bot.store import SERVER_POOL_SIZE, Store


def test_threads_using_the_store_at_once_reuse_its_connections(postgres_url: str) -> None:
    threads = 10  # asyncio's default executor on an 8-core machine, besides the event loop
    assert threads <= SERVER_POOL_SIZE
    backends: set[int] = set()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def statements() -> None:
        start.wait()
        for _ in range(40):  # in bursts, as polls come and go: the pool empties and fills
            with store.engine.connect() as connection:
                pid = connection.execute(text("SELECT pg_backend_pid(), pg_sleep(0.002)")).one()[0]
            with lock:
                backends.add(int(pid))
            time.sleep(random.uniform(0, 0.004))

    with Store.open(postgres_url) as store:
        running = [threading.Thread(target=statements) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    # Each backend is a connection the pool opened: at most one per thread. A pool smaller
    # than the threads closes the extra connections as they come back and opens new ones.
    assert len(backends) <= threads
