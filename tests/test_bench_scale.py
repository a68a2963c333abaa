"""bench/scale keeps working: two workers on one PostgreSQL and a tiny nginx farm share every
source between them, and the report's sums are right."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.scale.__main__ import Claims, Round, percentile, report
from bench.scale.farm import Request, host_address, min_host_gap, repeats
from tests.conftest import REPO, require_postgres, require_tool


def test_two_workers_share_a_tiny_farm_and_every_source_is_polled_once_per_round() -> None:
    require_tool("nginx")
    require_postgres()
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--feeds", "12", "--hosts", "4", "--items", "1",
         "--workers", "2", "--rounds", "cold,warm", "--timeout", "60"],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        cells[2]: cells
        for line in result.stdout.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")])[1:2] == ["2"] and len(cells) > 12
    }
    # cells: "", workers, round, polled, feed requests, 304s, span, sources/s, repeats, gap, ...
    cold, warm = rows["cold"], rows["warm"]
    assert cold[3:6] == ["12", "12", "0"] and cold[8] == "0"  # each feed once, all new
    assert warm[3:6] == ["12", "12", "12"] and warm[8] == "0"  # each feed once, all 304
    [claims] = [
        cells
        for line in result.stdout.splitlines()
        if (cells := [cell.strip() for cell in line.split("|")])[1:2] == ["2"] and len(cells) == 8
    ]
    assert int(claims[3]) > 0 and float(claims[4]) > 0  # claims were timed in the workers


def test_repeats_and_the_shortest_gap_per_host_come_from_the_farm_log() -> None:
    log = [
        Request(10.0, "127.0.10.1", 200, "/feeds/0.xml"),
        Request(10.5, "127.0.10.2", 200, "/feeds/1.xml"),
        Request(11.2, "127.0.10.1", 304, "/feeds/2.xml"),
        Request(11.3, "127.0.10.2", 200, "/feeds/1.xml"),
    ]
    assert repeats(log) == 1
    assert min_host_gap(log) == pytest.approx(0.8)
    assert min_host_gap(log[:2]) is None
    assert [host_address(i) for i in (0, 249, 250)] == ["127.0.10.1", "127.0.10.250", "127.0.11.1"]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0


def test_the_report_gives_rates_and_the_two_worker_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def row(workers: int, seconds: float) -> Round:
        return Round(workers, "warm", 100, 100, 100, seconds, 0, 1.0, 1, 1, 0, complete=True)

    report([row(1, 10.0), row(2, 5.5)], [Claims(1, 10, 1.0, 2.0, 3.0, 4.0)], 100)
    out = capsys.readouterr().out
    assert "| 1 | warm | 100 | 100 | 100 | 10.0 | 10 | 0 | 1.00 |" in out
    assert "warm: 2 workers / 1 worker = 1.82x (target >= 1.7x: met)" in out
