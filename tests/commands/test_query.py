"""`query`: read-only SQL over the store, printed as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from helpers import rows, run_main


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM jobs",
        "UPDATE outputs SET score = 0",
        "DROP TABLE mentions",
        "INSERT INTO jobs (id_type, identifier) VALUES ('doi', '10.1/x')",
        "CREATE TABLE notes (x)",
        "CREATE TEMP TABLE scratch (x)",
        "PRAGMA journal_mode = DELETE",
        "VACUUM",
        "SELECT 1; DELETE FROM jobs",
    ],
)
async def test_query_refuses_writes_and_changes_nothing(
    harvested: Path, capsys: pytest.CaptureFixture[str], sql: str
) -> None:
    before = rows(harvested, "SELECT count(*), sum(length(title)) FROM outputs")
    jobs = rows(harvested, "SELECT * FROM jobs ORDER BY id")
    code, out, err = run_main(capsys, "--db", str(harvested), "query", sql)
    assert code == 1 and out == ""
    assert err.startswith("harvester query: ")
    assert rows(harvested, "SELECT count(*), sum(length(title)) FROM outputs") == before
    assert rows(harvested, "SELECT * FROM jobs ORDER BY id") == jobs
    assert rows(harvested, "PRAGMA journal_mode") == [("wal",)]


async def test_query_attach_cannot_create_a_file(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere.db"
    code, _, err = run_main(
        capsys, "--db", str(harvested), "query", f"ATTACH DATABASE '{target}' AS other"
    )
    assert code == 1 and "harvester query" in err
    assert not target.exists()


async def test_query_prints_tables_csv_and_json(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT source, count(*) AS n FROM mentions GROUP BY source ORDER BY n DESC, source"
    expected = rows(harvested, sql)
    code, out, _ = run_main(capsys, "--db", str(harvested), "query", sql, "--format", "json")
    assert code == 0
    assert [(row["source"], row["n"]) for row in json.loads(out)] == expected
    code, out, _ = run_main(capsys, "--db", str(harvested), "query", sql, "--format", "csv")
    assert list(csv.reader(io.StringIO(out))) == [
        ["source", "n"],
        *[[source, str(n)] for source, n in expected],
    ]
    code, out, _ = run_main(capsys, "--db", str(harvested), "query", sql)
    lines = out.splitlines()
    assert lines[0].split() == ["source", "n"] and set(lines[1]) == {"-", " "}
    assert lines[2].split() == [expected[0][0], str(expected[0][1])]
    assert lines[-1] == f"{len(expected)} rows"
