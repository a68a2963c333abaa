"""bench/deliver: alert delivery against Telegram's limits (run ``python -m bench.deliver``)."""

from __future__ import annotations

from multiprocessing.connection import Connection

from tests.support.fake_telegram import FakeTelegram


def serve_fake(connection: Connection) -> None:
    """The fake's own process: serve until told to stop, then report what it counted.

    Importable (not in __main__) so that a spawned process can find it.
    """
    with FakeTelegram(enforce_limits=True) as api:
        connection.send((api.token, api.base_url))
        connection.recv()
        connection.send((len(api.sent), api.too_many_requests))
