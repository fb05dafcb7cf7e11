"""Every way `harvester run` fails is told in words: one plain `harvester run: ...` line
on stderr after its JSON events, and exit 1. Real runs against the simulator: a store
on a tiny tmpfs that fills up, and a store file whose pages are damaged."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, config_for, copy_store, dois, harvester, harvester_async, queue, rows

from harvester.sim.server import Simulator


@contextlib.contextmanager
def tiny_disk(directory: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `directory` (root only), unmounted afterwards."""
    directory.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("no mount and umount commands here")
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not permitted'}")
    try:
        yield directory
    finally:
        subprocess.run([umount, str(directory)], check=False)
        if directory.is_mount():
            subprocess.run([umount, "-l", str(directory)], check=False)


def split_stderr(err: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON events and the plain lines of a run's stderr."""
    events, plain = [], []
    for line in err.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
        else:
            plain.append(line)
    return events, plain


async def test_run_drain_on_a_disk_that_fills_up_says_so_and_exits_1(
    simulator: Simulator, tmp_path: Path
) -> None:
    with tiny_disk(tmp_path / "small") as small:
        db = queue(small / "s.db", dois(3000, "10.5150/full."))
        config = config_for(tmp_path, simulator.base_url)
        code, _, err = await harvester_async(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
        events, plain = split_stderr(err)
        assert code == 1, err[-2000:]
        assert plain == [
            "harvester run: the disk holding the store is full: free some space (database or disk"
            " is full); the harvest stopped, unfinished jobs stay pending"
        ]
        names = [event["event"] for event in events]
        assert "harvest.store_failed" in names and names[-1] == "harvest.stop"  # as before
        stop = events[-1]
        assert stop["stopped_by"] == "store error"
        # The stop event's `pending` counts jobs: those left pending in the store.
        # (Those it could not put back to pending on the full disk, the next start does.)
        [(pending,)] = rows(db, "SELECT count(*) FROM jobs WHERE state = 'pending'")
        assert stop["pending"] == pending > 0


def damage_page(db: Path, name: str) -> None:
    """Overwrite the root page of table or index `name` with garbage, as a failing disk
    might: SQLite finds the file malformed when it reads it."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,))
    with db.open("r+b") as handle:
        handle.seek(page_size * (root - 1))
        handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))


@pytest.mark.parametrize("drain", [True, False], ids=["drain", "daemon"])
@pytest.mark.parametrize("damaged", ["jobs_runnable", "bodies"])
async def test_run_on_a_damaged_store_says_so_and_exits_1(
    simulator: Simulator,
    harvested_by_cli: Callable[[int], Path],
    tmp_path: Path,
    damaged: str,
    drain: bool,
) -> None:
    """The claim reads `jobs_runnable`, storing an answer reads `bodies` (is it known
    already?): either way the daemon stops at once, in words."""
    db = copy_store(harvested_by_cli(40), tmp_path)
    assert harvester("--db", str(db), "retry", "--state", "done").returncode == 0
    damage_page(db, damaged)
    config = config_for(tmp_path, simulator.base_url)
    code, _, err = await harvester_async(
        "--config", str(config), "--db", str(db), "run", *(["--drain"] if drain else []),
        env={"ALTMETRIC_API_KEY": KEY},
    )  # fmt: skip
    _, plain = split_stderr(err)
    assert code == 1, err[-2000:]
    [line] = plain
    assert line.startswith("harvester run: the store file is damaged"), line
    assert "(database disk image is malformed)" in line
