"""SQLite serves one `wirewatch run`: a second one on the same file is refused, naming the file
and the first process; read-only commands still work; a killed first process blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.sample_site import SampleSite
from tests.conftest import REPO, free_port, run_cli


def write_config(tmp_path: Path, site: SampleSite) -> Path:
    lines = [
        f"database: sqlite:///{tmp_path / 'data' / 'wirewatch.sqlite3'}",
        f"server: {{host: 127.0.0.1, port: {free_port()}}}",
        f"output_dir: {tmp_path / 'feeds'}",
        "sources:",
        f"  - {{name: world, url: '{site.base_url}/feeds/world.xml', every: 1h}}",
        "watchlists:",
        "  - {name: any, keywords: [the]}",
    ]
    path = tmp_path / "wirewatch.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for_pid_in(lock: Path, pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (lock.exists() and lock.read_text().strip() == str(pid)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{lock} never named pid {pid}")
        time.sleep(0.05)


def test_a_second_run_on_one_sqlite_file_is_refused_naming_the_file_and_the_first_pid(
    tmp_path: Path, sample_site: SampleSite
) -> None:
    config = write_config(tmp_path, sample_site)
    database = tmp_path / "data" / "wirewatch.sqlite3"
    first = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        wait_for_pid_in(database.with_name("wirewatch.sqlite3.lock"), first.pid)
        for command in (["run", "--once"], ["run"]):
            second = run_cli("--config", str(config), *command, timeout=60)
            assert second.returncode == 1, second.stderr
            assert (
                f"wirewatch: cannot start: {database} is in use by another wirewatch process "
                f"(pid {first.pid})" in second.stderr
            )
        # Read-only commands are not refused.
        assert run_cli("--config", str(config), "check").returncode == 0
        sources = run_cli("--config", str(config), "sources", timeout=60)
        assert sources.returncode == 0, sources.stderr
        assert first.poll() is None  # the first one runs on, untouched
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # The kernel released the dead process's lock: a new run needs no clean-up.
    again = run_cli("--config", str(config), "run", "--once", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "polled 1 sources" in again.stdout
