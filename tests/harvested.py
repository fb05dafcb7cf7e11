"""A small store harvested from the bundled simulator by the real CLI, built once per
test module and copied for each test that may change it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import KEY, cli_env, config_for, harvester


def harvest_store(directory: Path, count: int = 40) -> Path:
    """`enqueue` then `run --drain` `count` DOIs against `harvester simulate`."""
    simulator = subprocess.Popen(
        [sys.executable, "-m", "harvester", "simulate", "--port", "0", "--key", KEY],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert simulator.stdout is not None
        base_url = simulator.stdout.readline().split(" on ")[1].split()[0]
        db = directory / "harvested.db"
        ids = "".join(f"10.1000/harvested.{n}\n" for n in range(count))
        assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0
        config = config_for(directory, base_url)
        result = harvester(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return db
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        if simulator.stdout is not None:
            simulator.stdout.close()


def copy_store(source: Path, directory: Path) -> Path:
    """A private copy of a closed store (and its WAL, if one is left)."""
    target = directory / source.name
    for suffix in ("", "-wal"):
        if source.with_name(source.name + suffix).exists():
            shutil.copy(
                source.with_name(source.name + suffix), target.with_name(target.name + suffix)
            )
    return target
