"""/readyz (bot.readiness) on a running App: not ready until the schedule runs, ready while the
database answers, not ready (with the reason) while it cannot be opened, ready again after."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.app import App
from bot.readiness import ReadinessProbe
from bot.sample_site import SampleSite
from bot.settings import Settings, load_settings
from tests.conftest import free_port


def write_settings(tmp_path: Path, site: SampleSite) -> Settings:
    port = free_port()
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path / 'state' / 'wirewatch.sqlite3'}\n"
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"output_dir: {tmp_path / 'feeds'}\n"
        "fetch: {timeout: 10s, host_delay: 0s}\n"
        f"sources: [{{name: world, url: '{site.url('/feeds/world.xml')}'}}]\n"
        "watchlists: [{name: nato, keywords: [Nato]}]\n",
        encoding="utf-8",
    )
    return load_settings(path)


async def ready_state(http: httpx.AsyncClient) -> tuple[int, dict[str, object]]:
    response = await http.get("/readyz")
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    return response.status_code, body


async def wait_for_status(http: httpx.AsyncClient, status: int) -> dict[str, object]:
    last: object = None
    for _ in range(200):
        try:
            code, body = await ready_state(http)
        except httpx.ConnectError as error:  # run_forever has not started the server yet
            last = error
        else:
            if code == status:
                return body
            last = (code, body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never answered {status}; last: {last}")


@pytest.fixture
async def app(tmp_path: Path, sample_site: SampleSite) -> AsyncIterator[App]:
    async with App(write_settings(tmp_path, sample_site)) as opened:
        yield opened


async def test_readyz_follows_the_scheduler_and_the_database(app: App, tmp_path: Path) -> None:
    port = app.settings.server.port
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        # The feed server alone, no schedule yet: alive but not ready.
        server = await app.serve()
        try:
            assert (await http.get("/healthz")).status_code == 200
            code, body = await ready_state(http)
            assert code == 503
            assert body == {
                "status": "not ready",
                "checks": {"database": "ok", "scheduler": "not running"},
            }
        finally:
            await server.stop()

        running = asyncio.create_task(app.run_forever(stop))
        try:
            body = await wait_for_status(http, 200)
            assert body == {"status": "ready", "checks": {"database": "ok", "scheduler": "ok"}}

            # The database directory disappears: new connections cannot open the file.
            state = tmp_path / "state"
            state.rename(tmp_path / "moved")
            app.store.close()  # drop pooled connections, which would still answer
            body = await wait_for_status(http, 503)
            assert body["checks"] == {"database": "error (OperationalError)", "scheduler": "ok"}
            assert str(tmp_path) not in str(body)

            (tmp_path / "moved").rename(state)
            await wait_for_status(http, 200)
        finally:
            stop.set()
            await running
    # Stopped: the schedule no longer runs.
    assert (await app.readiness_probe().check()).checks["scheduler"] == "not running"


async def test_a_database_that_does_not_answer_in_time_is_not_ready() -> None:
    release = threading.Event()

    def slow_ping() -> None:
        release.wait(5)

    probe = ReadinessProbe(slow_ping, lambda: True, timeout=0.1)
    try:
        readiness = await probe.check()
    finally:
        release.set()
    assert not readiness.ready
    assert readiness.checks == {"database": "not answering", "scheduler": "ok"}


async def test_the_probe_never_blocks_the_event_loop() -> None:
    """While the database is slow, the loop keeps running other work (the feeds)."""
    release = threading.Event()

    def slow_ping() -> None:
        release.wait(5)

    probe = ReadinessProbe(slow_ping, lambda: True, timeout=2)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    checking = asyncio.create_task(probe.check())
    await asyncio.sleep(0.2)
    release.set()
    assert (await checking).ready
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker
    assert ticks >= 5
