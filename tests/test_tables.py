"""The store as tables: query, export, refresh, and the tools researchers open it with."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from datasette.app import Datasette
from test_derived import KEY, harvest_from_simulator

from harvester.cli import main
from harvester.config import ApiSettings, Secret, Settings, StoreSettings, WorkerSettings
from harvester.identifiers import Identifier
from harvester.service.daemon import run_daemon
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store
from harvester.store.tables import parse_age

EXPORTED = ("outputs", "counts", "readers", "score_context", "mentions", "latest_outputs", "jobs")


@pytest.fixture
async def harvested(db_path: Path) -> Path:
    await harvest_from_simulator(db_path, 40)
    return db_path


def rows_of(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with Store(db, read_only=True) as store:
        return store.conn.execute(sql).fetchall()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- query --------------------------------------------------------------------------------


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
    before = rows_of(harvested, "SELECT count(*), sum(length(title)) FROM outputs")
    jobs = rows_of(harvested, "SELECT * FROM jobs ORDER BY id")
    code, out, err = run(capsys, "--db", str(harvested), "query", sql)
    assert code == 1 and out == ""
    assert err.startswith("harvester query: ")
    assert rows_of(harvested, "SELECT count(*), sum(length(title)) FROM outputs") == before
    assert rows_of(harvested, "SELECT * FROM jobs ORDER BY id") == jobs
    assert rows_of(harvested, "PRAGMA journal_mode") == [("wal",)]


async def test_query_attach_cannot_create_a_file(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "elsewhere.db"
    code, _, err = run(
        capsys, "--db", str(harvested), "query", f"ATTACH DATABASE '{target}' AS other"
    )
    assert code == 1 and "harvester query" in err
    assert not target.exists()


async def test_query_prints_tables_csv_and_json(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = "SELECT source, count(*) AS n FROM mentions GROUP BY source ORDER BY n DESC, source"
    expected = rows_of(harvested, sql)
    code, out, _ = run(capsys, "--db", str(harvested), "query", sql, "--format", "json")
    assert code == 0
    assert [(row["source"], row["n"]) for row in json.loads(out)] == expected
    code, out, _ = run(capsys, "--db", str(harvested), "query", sql, "--format", "csv")
    assert list(csv.reader(io.StringIO(out))) == [
        ["source", "n"],
        *[[source, str(n)] for source, n in expected],
    ]
    code, out, _ = run(capsys, "--db", str(harvested), "query", sql)
    lines = out.splitlines()
    assert lines[0].split() == ["source", "n"] and set(lines[1]) == {"-", " "}
    assert lines[2].split() == [expected[0][0], str(expected[0][1])]
    assert lines[-1] == f"{len(expected)} rows"


# -- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", EXPORTED)
async def test_export_round_trips_csv_jsonl_and_parquet(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    columns = [row[1] for row in rows_of(harvested, f"PRAGMA table_info({table})")]
    expected = rows_of(harvested, f"SELECT * FROM {table}")
    assert expected  # something to compare

    code, out, _ = run(
        capsys, "--db", str(harvested), "export", "--format", "jsonl", "--table", table
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [tuple(record[name] for name in columns) for record in records] == expected

    code, out, _ = run(
        capsys, "--db", str(harvested), "export", "--format", "csv", "--table", table
    )
    parsed = list(csv.reader(io.StringIO(out)))
    assert parsed[0] == columns
    assert parsed[1:] == [["" if v is None else str(v) for v in row] for row in expected]

    target = tmp_path / f"{table}.parquet"
    code, _, _ = run(
        capsys,
        "--db",
        str(harvested),
        "export",
        "--format",
        "parquet",
        "--table",
        table,
        "--output",
        str(target),
    )
    assert code == 0
    read_back = pq.read_table(target)
    assert read_back.column_names == columns
    assert [tuple(row.values()) for row in read_back.to_pylist()] == expected


async def test_export_where_filters_and_bodies_come_out_uncompressed(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--db",
        str(harvested),
        "export",
        "--format",
        "jsonl",
        "--table",
        "outputs",
        "--where",
        "score > 20 AND journal IS NOT NULL",
    )
    assert code == 0
    scores = [json.loads(line)["score"] for line in out.splitlines()]
    assert scores and min(scores) > 20
    assert (
        len(scores)
        == rows_of(
            harvested, "SELECT count(*) FROM outputs WHERE score > 20 AND journal IS NOT NULL"
        )[0][0]
    )

    code, out, _ = run(
        capsys, "--db", str(harvested), "export", "--format", "jsonl", "--table", "bodies"
    )
    with Store(harvested, read_only=True) as store:
        for line in out.splitlines():
            record = json.loads(line)
            assert "data" not in record
            [(response_id,)] = store.conn.execute(
                "SELECT min(id) FROM responses WHERE body_id = ?", (record["id"],)
            ).fetchall()
            assert record["body"].encode() == store.bodies.of_response(response_id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--table", "nope"), "no table or view 'nope'"),
        (("--table", "jobs", "--where", "no_such_column = 1"), "no such column"),
        (("--table", "jobs", "--where", "1); DELETE FROM jobs; --"), "--where"),
        (("--where", "1 = 1"), "need --table"),
    ],
)
async def test_export_refuses_bad_tables_and_where_clauses(
    harvested: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    jobs = rows_of(harvested, "SELECT count(*) FROM jobs")
    code, _, err = run(capsys, "--db", str(harvested), "export", "--format", "csv", *args)
    assert code == 1 and message in err
    assert rows_of(harvested, "SELECT count(*) FROM jobs") == jobs


# -- refresh -----------------------------------------------------------------------------------


async def test_refresh_requeues_old_snapshots_matching_the_where(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = rows_of(harvested, "SELECT count(*) FROM jobs WHERE state = 'done'")[0][0]
    code, out, _ = run(capsys, "--db", str(harvested), "refresh", "--older-than", "30d")
    assert code == 0 and "requeued 0 outputs" in out  # all fetched just now
    journal = rows_of(harvested, "SELECT journal FROM outputs WHERE journal IS NOT NULL LIMIT 1")
    [(name,)] = journal
    in_journal = rows_of(
        harvested, f"SELECT count(*) FROM latest_outputs WHERE journal = '{name}'"
    )[0][0]
    code, out, _ = run(
        capsys,
        "--db",
        str(harvested),
        "refresh",
        "--older-than",
        "0s",
        "--where",
        f"journal = '{name}'",
    )
    assert code == 0 and f"requeued {in_journal} outputs" in out
    states = dict(rows_of(harvested, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert states["pending"] == in_journal and states["done"] == done - in_journal

    await harvest_from_simulator(harvested, 40)  # the daemon takes the new snapshots
    assert (
        rows_of(
            harvested,
            "SELECT count(*) FROM outputs GROUP BY job_id HAVING count(*) > 1",
        )
        == [(2,)] * in_journal
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("1d12h", 129_600)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1y", "3 days"])
def test_parse_age_refuses_what_is_not_an_age(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


# -- the tools researchers use ------------------------------------------------------------------


async def test_the_store_opens_in_datasette_as_is(harvested: Path) -> None:
    datasette = Datasette([str(harvested)])
    name = harvested.stem
    listing = await datasette.client.get(f"/{name}.json")
    assert listing.status_code == 200
    tables = {entry["name"] for entry in listing.json()["tables"]}
    assert {"jobs", "responses", "bodies", "outputs", "counts", "mentions"} <= tables
    latest = await datasette.client.get(f"/{name}/latest_outputs.json?_shape=array&_size=5")
    assert latest.status_code == 200 and len(latest.json()) == 5
    assert {"altmetric_id", "score", "journal"} <= set(latest.json()[0])


async def test_sqlite_utils_lists_the_tables(harvested: Path) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "sqlite-utils"), "tables", str(harvested), "--counts"],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = {entry["table"]: entry["count"] for entry in json.loads(result.stdout)}
    assert listed["outputs"] == rows_of(harvested, "SELECT count(*) FROM outputs")[0][0]
    assert {"score_context", "readers", "zstd_dictionaries"} <= set(listed)


def readme_queries() -> list[str]:
    """The statements of the README's example queries."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("### Example queries", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


async def test_the_readme_example_queries_run_and_answer(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = readme_queries()
    assert len(queries) >= 7
    run(capsys, "--db", str(harvested), "refresh", "--older-than", "0s")
    await harvest_from_simulator(harvested, 40)  # a second snapshot of every output
    await fail_two_jobs(harvested)  # so "why did jobs fail?" has something to say
    for sql in queries:
        code, out, err = run(capsys, "--db", str(harvested), "query", sql, "--format", "json")
        assert code == 0, (sql, err)
        assert json.loads(out), sql  # every example answers on a 40-output harvest


async def fail_two_jobs(db: Path) -> None:
    """Two more outputs, harvested from a simulator that answers only HTTP 500."""
    with Store(db) as store:
        store.jobs.add([Identifier("doi", "10.5150/fails.1"), Identifier("doi", "10.5150/fails.2")])
    failing = SimulatorSettings(key=KEY, fault_rate=1.0, fault_kinds=("500",))
    async with Simulator(failing) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            workers=WorkerSettings(max_attempts=1),
            store=StoreSettings(path=db),
        )
        await run_daemon(
            settings, Secret(KEY), drain=True, show_progress=False, install_signals=False
        )
