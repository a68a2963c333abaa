"""bench/ingest keeps working: a tiny farm, wirewatch alone (rss2email is not installed in CI),
with the per-host limits on and checked from the farm's side."""

from __future__ import annotations

import subprocess
import sys

from bench.ingest.__main__ import Round, limits_held, net_rate
from tests.conftest import REPO


def test_the_ingest_benchmark_runs_on_a_tiny_farm() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--feeds", "6", "--hosts", "2", "--items", "1",
         "--changed", "0.5", "--host-delay", "1s", "--no-rss2email"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {
        tuple(cells[1:3]): cells
        for line in result.stdout.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")])[1:2] == ["wirewatch"]
    }
    startup, cold, warm = (rows[("wirewatch", name)] for name in ("start-up", "cold", "warm"))
    assert float(startup[3]) > 0
    # cells: "", tool, round, wall, feeds/s, net feeds/s, feeds, pages, robots, 304 share,
    # peak per host, min gap, busiest host's requests, delay floor, RSS, exit
    assert cold[6:9] == ["6", "6", "2"] and cold[15] == "0"
    # Feeds 0, 1 and 2 changed (on both hosts): three new pages, three 304s, and robots.txt
    # asked again of each host (each run is a new process).
    assert warm[6:10] == ["6", "3", "2", "50%"]
    assert int(cold[10]) <= 2 and int(warm[10]) <= 2  # the per-host limit, seen by the servers
    # The per-host delay, likewise (without it two requests would arrive milliseconds apart).
    assert float(cold[11]) > 0.5 and float(warm[11]) > 0.5
    assert cold[12] == "7" and warm[12] == "6"  # robots, 3 feeds, 3 pages; robots, 3 feeds, 2 pages
    assert "per-host limits:" in result.stdout


def round_(name: str, peak: int, gap: float | None) -> Round:
    return Round("wirewatch", name, 2.0, 10, 10, 0, 1, 0, peak, gap, 50.0, 0)


def test_broken_limits_are_reported_and_start_up_is_netted_out() -> None:
    assert limits_held([round_("cold", 2, 1.0), round_("warm", 1, None)], 2, 1.0) == []
    assert limits_held([round_("cold", 3, 1.0), round_("warm", 2, 0.4)], 2, 1.0) == [
        "cold: 3 requests at once on one host",
        "warm: two requests 0.400 s apart on one host",
    ]
    assert net_rate(round_("warm", 1, None), 1.5) == 20.0
