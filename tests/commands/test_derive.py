"""`derive`: the derived tables caught up, or rebuilt from the raw answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import harvest_from_simulator, rows

from harvester.cli import main
from harvester.store import Store
from harvester.store.lock import daemon_lock

DERIVED = ("outputs", "counts", "readers", "score_context", "mentions")


async def test_derive_rebuild_gives_the_same_tables(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await harvest_from_simulator(db_path, 40)

    def snapshot_of_tables() -> dict[str, list[tuple[Any, ...]]]:
        with Store(db_path, read_only=True) as store:
            return {name: sorted(rows(store, f"SELECT * FROM {name}")) for name in DERIVED}

    before = snapshot_of_tables()
    assert main(["--db", str(db_path), "derive"]) == 0
    assert "derived 0 answers" in capsys.readouterr().out  # nothing was missing
    assert main(["--db", str(db_path), "derive", "--rebuild"]) == 0
    assert f"derived {len(before['outputs'])} answers" in capsys.readouterr().out
    assert snapshot_of_tables() == before


async def test_derive_rebuild_waits_for_no_daemon(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await harvest_from_simulator(db_path, 10)
    with daemon_lock(db_path):
        assert main(["--db", str(db_path), "derive", "--rebuild"]) == 1
        assert "stop it before derive --rebuild" in capsys.readouterr().err
        assert main(["--db", str(db_path), "derive"]) == 0  # catching up is fine
    with Store(db_path, read_only=True) as store:
        assert rows(store, "SELECT count(*) FROM outputs")[0][0] >= 8
