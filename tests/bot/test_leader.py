"""The leader lock on a real PostgreSQL: one process leads, and another takes over when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.database_url import parse
from bot.leader import Leadership
from tests.conftest import REPO

RETRY = 0.5
SLACK = 1.5
"""Allowed beyond the retry period for a take-over: connecting to PostgreSQL on a loaded
2-core machine can take that long."""


class Contender:
    """A Leadership with a record of what it was told to do."""

    def __init__(self, name: str, url: str, events: list[str]) -> None:
        self.name = name
        self.stop = asyncio.Event()
        self.events = events

        async def lead() -> None:
            events.append(f"{name} leads")

        async def follow() -> None:
            events.append(f"{name} follows")

        self.leadership = Leadership(url, retry=RETRY, lead=lead, follow=follow)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.leadership.run(self.stop))

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


async def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds it took for ``condition`` to hold (AssertionError past ``timeout``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def leaders(contenders: list[Contender]) -> list[str]:
    return [c.name for c in contenders if c.leadership.leading]


async def test_of_two_contenders_exactly_one_leads_until_it_stops(postgres_url: str) -> None:
    events: list[str] = []
    first, second = Contender("a", postgres_url, events), Contender("b", postgres_url, events)
    first.start()
    await wait_until(lambda: first.leadership.leading, 5)
    second.start()
    for _ in range(6):  # several retry periods: b keeps trying and never gets in
        await asyncio.sleep(RETRY / 2)
        assert leaders([first, second]) == ["a"]
    await first.finish()  # a clean stop closes its connection: the lock is free
    took = await wait_until(lambda: second.leadership.leading, 5)
    assert took <= RETRY + SLACK
    await second.finish()
    assert events == ["a leads", "a follows", "b leads", "b follows"]


async def test_a_leader_whose_connection_is_killed_steps_down_and_the_other_takes_over(
    postgres_url: str,
) -> None:
    events: list[str] = []
    first, second = Contender("a", postgres_url, events), Contender("b", postgres_url, events)
    first.start()
    await wait_until(lambda: first.leadership.leading, 5)
    second.start()
    await asyncio.sleep(RETRY)
    pid = first.leadership.backend_pid
    assert pid is not None
    admin = create_engine(parse(postgres_url))
    try:
        with admin.connect() as connection:  # what a dropped network or a crashed host does
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    took = await wait_until(lambda: second.leadership.leading, 5)
    assert took <= RETRY + SLACK  # the server freed the lock at once: b gets in at its next try
    await wait_until(lambda: not first.leadership.leading, 5)  # a noticed and stepped down
    await asyncio.sleep(3 * RETRY)  # a tries again, but b holds the lock now
    assert leaders([first, second]) == ["b"]
    await first.finish()
    await second.finish()
    assert events[:3] == ["a leads", "a follows", "b leads"] or events[:3] == [
        "a leads",
        "b leads",
        "a follows",
    ]


LEADER_SCRIPT = """
import asyncio, sys
from bot.leader import Leadership

async def main() -> None:
    async def lead() -> None:
        print("leading", flush=True)
    async def follow() -> None:
        pass
    await Leadership(sys.argv[1], retry=0.5, lead=lead, follow=follow).run(asyncio.Event())

asyncio.run(main())
"""


async def test_when_the_leading_process_is_killed_another_takes_over(
    postgres_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "leader.py"
    script.write_text(LEADER_SCRIPT, encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, str(script), postgres_url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    events: list[str] = []
    survivor = Contender("b", postgres_url, events)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
        assert line.strip() == "leading"
        survivor.start()
        await asyncio.sleep(3 * RETRY)
        assert not survivor.leadership.leading
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        took = await wait_until(lambda: survivor.leadership.leading, 5)
        assert took <= RETRY + SLACK
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        await survivor.finish()


async def test_on_sqlite_the_one_process_leads_at_once(tmp_path: Path) -> None:
    events: list[str] = []
    alone = Contender("a", f"sqlite:///{tmp_path / 'wirewatch.sqlite3'}", events)
    alone.start()
    await wait_until(lambda: alone.leadership.leading, 1)
    await alone.finish()
    assert events == ["a leads", "a follows"]


def test_a_retry_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retry must be more than 0"):
        Leadership("sqlite://", retry=0, lead=_nothing, follow=_nothing)


async def _nothing() -> None:
    return None


def test_a_database_that_accepts_but_never_answers_fails_the_attempt_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PostgreSQL host that takes the TCP connection and then says nothing (hung, or a
    firewall half-open) must not hold the leader's attempt for ever: the connect timeout the
    store and the host gate use applies to the lock's connection too."""
    monkeypatch.setattr("bot.database_url.CONNECT_TIMEOUT_SECONDS", 2)  # libpq's least
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]

        async def nothing() -> None:
            return None

        leadership = Leadership(
            f"postgresql://wirewatch@127.0.0.1:{port}/wirewatch", lead=nothing, follow=nothing
        )
        outcome: list[bool] = []
        attempt = threading.Thread(target=lambda: outcome.append(leadership._try_lock()))
        started = time.monotonic()
        attempt.start()
        attempt.join(timeout=15)
        assert not attempt.is_alive(), "the attempt still hangs on a silent server"
    assert outcome == [False]
    assert time.monotonic() - started < 10
