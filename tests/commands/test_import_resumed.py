"""`harvester import` killed and run again ends as one clean run would: the same
counts on its last line, the same rejected records on stderr, the same exit code.

The import is a real process killed with a real SIGKILL right after the batch that
holds a bad record was committed (seen in the position it saves with each batch)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from helpers import HARVESTER, cli_env, harvester, rows

from harvester.sim.dump import write_dump

RESULT = "imported 6,000, already present 0, rejected 4"


def saved_totals(db: Path) -> dict[str, object] | None:
    """The totals the running import saved with its position, if any yet."""
    try:
        found = rows(db, "SELECT value FROM daemon_state WHERE key = 'import_position'")
    except sqlite3.Error:
        return None  # created but not yet migrated, or locked for a moment
    return json.loads(found[0][0]).get("totals") if found else None


def rejected_lines(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if line.startswith("rejected "))


def test_killed_after_a_bad_record_then_run_again_it_ends_as_one_clean_run(
    tmp_path: Path,
) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 6000, layout="mixed", seed=23, not_objects=4)
    clean, killed = tmp_path / "clean.db", tmp_path / "killed.db"
    one_run = harvester("--db", str(clean), "import", str(dump.path))
    assert one_run.returncode == 1
    assert one_run.stdout.strip().splitlines()[-1] == RESULT
    process = subprocess.Popen(
        [*HARVESTER, "--db", str(killed), "import", str(dump.path)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        totals = saved_totals(killed)
        if totals and isinstance(totals["rejected"], int) and totals["rejected"] >= 1:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    totals = saved_totals(killed)
    assert totals is not None and 1 <= int(str(totals["rejected"])) < 4, totals
    assert int(str(totals["imported"])) < 6000

    resumed = harvester("--db", str(killed), "import", str(dump.path))
    assert "resuming after" in resumed.stderr
    assert resumed.returncode == one_run.returncode == 1
    assert resumed.stdout.strip().splitlines()[-1] == RESULT
    assert rejected_lines(resumed.stderr) == rejected_lines(one_run.stderr)
    assert len(rejected_lines(resumed.stderr)) == 4
    assert rows(killed, "SELECT count(*) FROM responses") == [(6000,)]
    # Finished, its position says so: the same dump again is read whole and adds nothing.
    again = harvester("--db", str(killed), "import", str(dump.path))
    assert "resuming" not in again.stderr
    assert again.stdout.strip().splitlines()[-1] == (
        "imported 0, already present 6,000, rejected 4"
    )
