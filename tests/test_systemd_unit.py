"""The systemd unit: what a reviewer expects of it, and systemd's own verdict."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import ROOT

from harvester.config import CREDENTIAL_NAME, WorkerSettings

UNIT = ROOT / "systemd" / "altmetric-harvester.service"
INSTALLED_BINARY = "/opt/altmetric-harvester/bin/harvester"


def directives() -> dict[str, list[str]]:
    """Every `Key=value` of the unit; a key may repeat (SystemCallFilter does)."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def test_the_unit_runs_the_console_script_as_a_notify_service() -> None:
    unit = directives()
    assert unit["Type"] == ["notify"]
    argv = unit["ExecStart"][0].split()
    assert argv[0] == INSTALLED_BINARY  # the binary itself: no shell between it and signals
    assert argv[-1] == "run" and "--drain" not in argv
    assert argv[argv.index("--db") + 1].startswith("%S/altmetric-harvester/")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["3"]  # a rejected key does not heal
    assert seconds(unit["WatchdogSec"][0]) >= 30
    assert seconds(unit["TimeoutStopSec"][0]) > WorkerSettings().drain_deadline_s + 10


def test_the_unit_and_the_package_name_both_calls() -> None:
    """Issue 24: the fetch call and the free counts call, not the fetch call alone."""
    [description] = directives()["Description"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    for text in (description, project):
        assert "fetch" in text and "counts call" in text, text


def test_the_unit_keeps_the_key_in_a_credential_and_the_store_in_its_state_dir() -> None:
    unit = directives()
    assert unit["StateDirectory"] == ["altmetric-harvester"]
    name, _, source = unit["LoadCredential"][0].partition(":")
    assert name == CREDENTIAL_NAME and source.startswith("/etc/")
    assert not any("KEY" in value for value in unit.get("Environment", []))


def test_the_unit_is_hardened() -> None:
    unit = directives()
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert "@system-service" in unit["SystemCallFilter"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(
            "systemd-analyze is not installed (Debian: apt-get install systemd), "
            "so systemd's own check of the unit could not run here"
        )
    # verify checks that ExecStart's binary exists: point it at this checkout's script.
    script = Path(sys.executable).parent / "harvester"
    assert script.exists(), "install the project first: pip install -e ."
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(script)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # no warnings about our unit


def test_its_readme_makes_the_store_before_starting_and_names_real_tests() -> None:
    """Issue 24: started before any store, the service fails and restarts until
    systemd gives up; the README has `enqueue` make the store first, and every test
    file it points to exists."""
    readme = (ROOT / "systemd" / "README.md").read_text()
    commands = [
        line
        for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
        for line in block.splitlines()
    ]
    enqueue = next(i for i, line in enumerate(commands) if " enqueue " in line)
    start = next(
        i for i, line in enumerate(commands) if re.search(r"systemctl (start|enable --now)", line)
    )
    assert enqueue < start, commands
    named = re.findall(r"`(tests/[\w/]+\.py)`", readme)
    assert named and all((ROOT / path).is_file() for path in named), named
