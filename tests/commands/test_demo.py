"""`demo`: a harvest of the bundled simulator, no key needed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import harvester


def test_demo_runs_without_a_key(tmp_path: Path) -> None:
    result = harvester("demo", "--count", "80", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout and "not_found" in result.stdout
    [store] = list(tmp_path.glob("harvester-demo-*/demo.db"))
    conn = sqlite3.connect(store)
    assert conn.execute(
        "SELECT count(*) FROM jobs WHERE state IN ('done', 'not_found')"
    ).fetchone() == (80,)
    conn.close()
