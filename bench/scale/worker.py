"""`wirewatch ARGS` as bench/scale runs it: the real command, plus a stopwatch on lease claims.

    python -m bench.scale.worker CLAIMS_FILE wirewatch-args...

Each claim round of bot.fleet (one transaction: BEGIN, the ``UPDATE ... WHERE name IN (SELECT
... FOR UPDATE SKIP LOCKED)``, COMMIT) is timed from the worker's side, which is the latency a
worker waits for before it can poll, and written to CLAIMS_FILE as one line per claim when the
worker exits: ``<seconds> <sources claimed>``. Nothing else is changed: the wrapper calls the
fleet's own functions.
"""

from __future__ import annotations

import atexit
import sys
import time
from pathlib import Path
from typing import Any


def instrument(claims: list[tuple[float, int]]) -> None:
    """Time every claim round of bot.fleet into `claims` as (seconds, sources claimed)."""
    from bot import fleet

    schedule = fleet.FleetSchedule
    original = schedule._claim_now  # the transaction, run in a worker thread

    def claim(self: Any, limit: int, skip: frozenset[str]) -> list[str]:
        start = time.perf_counter()
        taken: list[str] = original(self, limit, skip)
        claims.append((time.perf_counter() - start, len(taken)))  # list.append: thread-safe
        return taken

    schedule._claim_now = claim  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    claims_file, *args = argv
    claims: list[tuple[float, int]] = []
    instrument(claims)
    atexit.register(
        lambda: Path(claims_file).write_text(
            "".join(f"{seconds:.6f} {count}\n" for seconds, count in claims), encoding="ascii"
        )
    )
    from bot.cli import main as wirewatch

    return wirewatch(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
