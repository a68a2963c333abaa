"""deploy/wirewatch.service: it runs the documented command on the documented layout, reloads
with SIGHUP, restarts on failure only, is hardened, and systemd itself accepts it."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "deploy" / "wirewatch.service"
PROGRAM = "/opt/wirewatch/bin/wirewatch"
CONFIG = "/etc/wirewatch/wirewatch.yaml"


def read_unit() -> configparser.ConfigParser:
    # strict=False: a unit may repeat a key (SystemCallFilter=), which systemd reads as a list.
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_it_runs_the_bot_with_the_config_in_etc() -> None:
    service = read_unit()["Service"]
    assert shlex.split(service["ExecStart"]) == [PROGRAM, "--config", CONFIG, "run"]
    assert service["User"] == "wirewatch"
    assert service["WorkingDirectory"] == "/var/lib/wirewatch"
    assert service["StateDirectory"] == "wirewatch"
    assert service["EnvironmentFile"] == "/etc/wirewatch/wirewatch.env"


def test_reload_is_sighup_and_restart_is_on_failure_only() -> None:
    service = read_unit()["Service"]
    assert shlex.split(service["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["Restart"] == "on-failure"
    # An invalid configuration (exit status 2, bot.cli) is not restarted in a loop.
    assert service["RestartPreventExitStatus"] == "2"


def test_it_is_hardened() -> None:
    service = read_unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
    }
    assert {key: service.get(key) for key in expected} == expected
    # The only writable places: its state, and the config folder that chat edits rewrite.
    assert service["ReadWritePaths"] == "/etc/wirewatch"


def test_the_readme_shows_the_same_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "### Running it as a service" in readme
    assert f"{PROGRAM} --config {CONFIG}" in readme
    assert "deploy/wirewatch.service" in readme


def test_systemd_analyze_verify_accepts_it(tmp_path: Path) -> None:
    """systemd-analyze is optional (not every machine has systemd): skipped when absent."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the program exists: point ExecStart at an installed wirewatch, the only
    # change made to the unit.
    installed = Path(sys.executable).parent / "wirewatch"  # pip install -e puts it there
    assert installed.exists(), installed
    unit = tmp_path / "wirewatch.service"
    text = UNIT.read_text(encoding="utf-8").replace(PROGRAM, str(installed))
    unit.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wirewatch.service" not in result.stderr, result.stderr
