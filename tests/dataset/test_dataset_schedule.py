"""`[schedule] export_every`, `export_dataset`: the running daemon keeps a Parquet
dataset up to date by itself, in a child process beside the harvest (which goes on
meanwhile), shown by `status`; a stop during an export ends the child and leaves the
dataset as it was. The daemon is a real process, stopped by real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import (
    KEY,
    dois,
    harvester,
    harvester_async,
    queue,
    rows,
    start_harvester,
    write_config,
)

from harvester.sim.server import Simulator, SimulatorSettings

ENV = {"ALTMETRIC_API_KEY": KEY}


def export_config(path: Path, base_url: str, directory: Path, every: str = "1h") -> Path:
    return write_config(
        path,
        base_url,
        rate={"requests_per_s": 100, "burst": 5},
        workers={"concurrency": 4},
        schedule={"export_every": every, "export_dataset": str(directory)},
    )


async def until(check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, OSError, ValueError, KeyError, IndexError):
            if check():
                return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


def exported_runs(directory: Path) -> int:
    return len(json.loads((directory / "_dataset.json").read_text())["runs"])


def children_writing(directory: Path) -> list[int]:
    """Pids of processes whose command line names `directory` (an export's child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(directory).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def test_export_every_needs_a_directory(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "h.toml", "http://127.0.0.1:9/v1", schedule={"export_every": "1d"}
    )
    result = harvester("--config", str(config), "config")
    assert result.returncode == 1
    assert "schedule.export_every needs schedule.export_dataset" in result.stderr
    config = write_config(
        tmp_path / "h.toml",
        "http://127.0.0.1:9/v1",
        schedule={"export_every": "0s", "export_dataset": "x"},
    )
    result = harvester("--config", str(config), "config")
    assert result.returncode == 1
    assert "schedule.export_every" in result.stderr


async def test_the_daemon_exports_beside_the_harvest_and_status_shows_it(tmp_path: Path) -> None:
    db = queue(tmp_path / "s.db", dois(300, "10.5150/sim."))
    directory = tmp_path / "dataset"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        config = export_config(tmp_path / "h.toml", sim.base_url, directory, every="3s")
        daemon = await start_harvester("--config", str(config), "--db", str(db), "run", env=ENV)
        try:
            # The first export runs at the start, while the harvest goes on; a later
            # one adds what the harvest stored since.
            await until(lambda: exported_runs(directory) >= 2)
            pending = "SELECT count(*) FROM jobs WHERE state = 'pending'"
            await until(lambda: rows(db, pending) == [(0,)])
            code, out, err = await harvester_async(
                "--config", str(config), "--db", str(db), "status", "--json"
            )
            assert code == 0, err
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), timeout=60) == 0
    task: dict[str, Any] = json.loads(out)["schedule"]["export"]
    assert task["every"] == "3s"
    assert task["last"]["directory"] == str(directory)
    assert task["last"]["run"] >= 1 and task["last"]["watermark"] >= 0
    document = json.loads((directory / "_dataset.json").read_text())
    assert document["store"]["path"] == str(db.resolve())
    assert not children_writing(directory)
    # What the daemon exported is what `export --dataset` continues from.
    result = harvester("--db", str(db), "export", "--dataset", str(directory))
    assert result.returncode == 0, result.stderr
    assert f"to response {rows(db, 'SELECT max(id) FROM responses')[0][0]:,}" in result.stderr


async def test_a_stop_during_an_export_ends_it_and_leaves_the_dataset_as_it_was(
    tmp_path: Path,
) -> None:
    db = queue(tmp_path / "s.db", dois(1500, "10.5150/sim."))
    directory = tmp_path / "dataset"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        # Harvest first (no schedule), so that the export has work enough to be caught.
        config = write_config(tmp_path / "h.toml", sim.base_url, rate={"requests_per_s": 2000})
        code, _, err = await harvester_async(
            "--config", str(config), "--db", str(db), "run", "--drain", env=ENV
        )
        assert code == 0, err
        config = export_config(tmp_path / "h.toml", sim.base_url, directory)
        daemon = await start_harvester("--config", str(config), "--db", str(db), "run", env=ENV)
        try:
            await until(lambda: bool(children_writing(directory)), timeout_s=30)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), timeout=60) == 0
    assert not children_writing(directory)
    assert not (directory / ".staging").exists() or (directory / "_dataset.json").exists()
    result = harvester("--db", str(db), "export", "--dataset", str(directory))
    assert result.returncode == 0, result.stderr
