"""Whether the running bot can do its work, for ``/readyz``: the database answers and the
scheduler runs.

``/healthz`` (liveness) only says the process serves HTTP; a supervisor restarts the bot when it
fails. ``/readyz`` says more and is for whoever routes traffic or pages someone: a bot whose
database is gone still serves its last feeds, but polls and alerts stop.

The database is asked ``SELECT 1`` through the store in a worker thread, with a timeout: a
blocked database (a locked SQLite file, a PostgreSQL server that does not answer) must neither
stall the event loop that serves feeds nor hang the probe. The reason given to the caller names
the check and the error's type only; the full error goes to the log, once per change of state,
so a probe every few seconds does not flood it and a connection string never reaches an
unauthenticated HTTP client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DATABASE_TIMEOUT_SECONDS", "Readiness", "ReadinessProbe", "readiness_route"]

log = logging.getLogger("wirewatch.readiness")

DATABASE_TIMEOUT_SECONDS = 5.0
"""Longest wait for ``SELECT 1``; a database slower than this is reported as not answering."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of one probe: each check's name → ``ok`` or a short reason."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(result == "ok" for result in self.checks.values())

    def as_json(self) -> dict[str, object]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class ReadinessProbe:
    """Runs the checks; ``ping`` raises when the database does not answer, ``scheduler_running``
    says whether the schedule of polls is running now."""

    def __init__(
        self,
        ping: Callable[[], None],
        scheduler_running: Callable[[], bool],
        *,
        timeout: float = DATABASE_TIMEOUT_SECONDS,
    ) -> None:
        self._ping = ping
        self._scheduler_running = scheduler_running
        self._timeout = timeout
        self._was_ready: bool | None = None

    async def check(self) -> Readiness:
        checks = {
            "database": await self._database(),
            "scheduler": "ok" if self._scheduler_running() else "not running",
        }
        readiness = Readiness(checks)
        if readiness.ready != self._was_ready:
            if readiness.ready:
                log.info("ready")
            elif self._was_ready is not None or checks["database"] != "ok":
                log.warning("not ready: %s", ", ".join(f"{k}: {v}" for k, v in checks.items()))
            self._was_ready = readiness.ready
        return readiness

    async def _database(self) -> str:
        try:
            # to_thread's thread is not cancelled by the timeout: a hung query goes on in the
            # background and the next probe starts its own.
            await asyncio.wait_for(asyncio.to_thread(self._ping), self._timeout)
        except TimeoutError:
            log.warning("database did not answer SELECT 1 within %gs", self._timeout)
            return "not answering"
        except Exception as error:
            if self._was_ready is not False:
                log.warning("database check failed: %s", error)
            return f"error ({type(error).__name__})"
        return "ok"


def readiness_route(probe: ReadinessProbe) -> Route:
    """``GET /readyz``: 200 when every check is ok, else 503; the body says which check failed,
    e.g. ``{"status": "not ready", "checks": {"database": "ok", "scheduler": "not running"}}``."""

    async def readyz(request: Request) -> Response:
        readiness = await probe.check()
        return JSONResponse(
            readiness.as_json(),
            status_code=200 if readiness.ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    return Route("/readyz", readyz, methods=["GET"])
