"""bench/ingest keeps working: a tiny farm, wirewatch alone (rss2email is not installed in CI)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_ingest_benchmark_runs_on_a_tiny_farm() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--feeds", "6", "--hosts", "2", "--items", "1",
         "--changed", "0.5", "--no-rss2email"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {
        tuple(cells[1:3]): cells
        for line in result.stdout.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")])[1:2] == ["wirewatch"]
    }
    cold, warm = rows[("wirewatch", "cold")], rows[("wirewatch", "warm")]
    # cells: "", tool, round, wall, feeds/s, feeds, pages, robots, 304 share, peak, RSS, exit
    assert cold[5:8] == ["6", "6", "2"] and cold[11] == "0"
    # Feeds 0, 2 and 4 changed (all on the first host): three new pages, three 304s, and
    # robots.txt asked again of that one host only (each run is a new process).
    assert warm[5:9] == ["6", "3", "1", "50%"]
    assert int(cold[9]) <= 2 and int(warm[9]) <= 2  # the per-host limit, seen by the servers
