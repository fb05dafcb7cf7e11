"""The schema: plain SQL in WAL mode, each migration once, older stores upgraded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import build_pre_compression_store, rows

from harvester.cli import main
from harvester.errors import StoreError
from harvester.sim import universe
from harvester.store import Store


def test_schema_is_plain_sql_with_wal(store: Store, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "responses"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as again:
        assert again.jobs.counts_by_state()["pending"] == 0


def test_a_store_from_before_compression_is_upgraded_without_losing_a_byte(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = universe.body_pool(30)
    build_pre_compression_store(db_path, [*pool, b"Not Found", b"Not Found"])

    with pytest.raises(StoreError, match="older version"):
        Store(db_path, read_only=True)  # reading an old store waits for its upgrade
    assert main(["--db", str(db_path), "derive"]) == 0  # a writing command upgrades it
    assert f"derived {len(pool)} answers" in capsys.readouterr().out
    with Store(db_path, read_only=True) as reader:
        for n, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(n) == original
        assert reader.bodies.of_response(len(pool) + 2) == b"Not Found"
        assert rows(reader, "SELECT count(*) FROM bodies") == [(len(pool) + 1,)]
        assert "body" not in {row[1] for row in rows(reader, "PRAGMA table_info(responses)")}
    assert main(["--db", str(db_path), "verify"]) == 0
