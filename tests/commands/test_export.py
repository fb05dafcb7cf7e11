"""`export`: every table round-trips through CSV, JSON lines and Parquet; it never
writes over the store and never leaves a truncated file; on a terminal (a real
pseudo-terminal) it works and shows its progress."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import resource
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import (
    HARVESTER,
    cli_env,
    copy_store,
    harvester,
    rows,
    run_main,
    run_on_a_terminal,
)

from harvester.store import Store


@pytest.fixture
def db(harvested_by_cli: Callable[[int], Path], tmp_path: Path) -> Path:
    """A copy of a store of 40 outputs harvested by the CLI."""
    return copy_store(harvested_by_cli(40), tmp_path)


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in `directory` with the sha256 of its bytes (but SQLite's `-shm`,
    the shared-memory index any reader may create and rewrite)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.is_symlink() and not path.name.endswith("-shm")
    }


EXPORT_FORMS = [
    ("--format", "jsonl"),
    ("--format", "csv"),
    ("--format", "jsonl", "--table", "outputs"),
    ("--format", "csv", "--table", "mentions"),
    ("--format", "parquet", "--table", "jobs"),
]


def protected_names(db: Path) -> dict[str, Path]:
    """Ways to name the store's files: directly, through links, with `..`."""
    directory = db.parent
    (directory / "sub").mkdir(exist_ok=True)
    names = {
        "store": db,
        "wal": db.with_name(db.name + "-wal"),
        "shm": db.with_name(db.name + "-shm"),
        "journal": db.with_name(db.name + "-journal"),
        "lock": db.with_name(db.name + ".lock"),
        "dotdot": directory / "sub" / ".." / db.name,
        "symlink": directory / "link-to-store.db",
        "symlink-to-absent-wal": directory / "link-to-wal",
        "hardlink": directory / "hardlink.db",
    }
    names["symlink"].symlink_to(db)
    names["symlink-to-absent-wal"].symlink_to(names["wal"])
    os.link(db, names["hardlink"])
    return names


@pytest.mark.parametrize("form", EXPORT_FORMS, ids=lambda form: "-".join(form[1::2]))
def test_export_refuses_every_name_of_the_store(db: Path, form: tuple[str, ...]) -> None:
    names = protected_names(db)
    before = fingerprint(db.parent)
    for label, target in names.items():
        result = harvester("--db", str(db), "export", *form, "--output", str(target))
        assert result.returncode == 1, (label, result.stderr)
        assert "choose another file name" in result.stderr, (label, result.stderr)
        assert "Traceback" not in result.stderr
        assert fingerprint(db.parent) == before, label
    assert harvester("--db", str(db), "verify").returncode == 0


def test_refused_through_a_symlinked_store_path(db: Path) -> None:
    """The store named through a link (`--db link`) is protected under its real name."""
    link = db.parent / "store-link.db"
    link.symlink_to(db)
    before = fingerprint(db.parent)
    result = harvester("--db", str(link), "export", "--format", "jsonl", "--output", str(db))
    assert result.returncode == 1 and "choose another file name" in result.stderr
    assert fingerprint(db.parent) == before


FAILS_AFTER_FIVE_ROWS = "CASE WHEN id > 5 THEN abs(-9223372036854775807 - 1) ELSE 1 END"


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "parquet"])
def test_a_failing_export_leaves_the_previous_file_whole(db: Path, output_format: str) -> None:
    target = db.parent / f"jobs.{output_format}"
    good = harvester(
        "--db", str(db), "export", "--format", output_format, "--table", "jobs",
        "--output", str(target),
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    previous = target.read_bytes()
    assert previous
    before = fingerprint(db.parent)

    failed = harvester(
        "--db", str(db), "export", "--format", output_format, "--table", "jobs",
        "--where", FAILS_AFTER_FIVE_ROWS, "--output", str(target),
    )  # fmt: skip
    assert failed.returncode == 1
    assert "overflow" in failed.stderr
    assert target.read_bytes() == previous
    assert fingerprint(db.parent) == before  # no partial file left beside it


def test_a_full_disk_mid_export_leaves_no_partial_file(db: Path) -> None:
    """Writes fail half-way (a file size limit stands in for a full disk): the old
    export stays whole and nothing half-written is left beside it."""
    target = db.parent / "bodies.jsonl"
    target.write_text("an earlier export\n")
    before = fingerprint(db.parent)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    result = subprocess.run(
        [*HARVESTER, "--db", str(db), "export", "--format", "jsonl",
         "--table", "bodies", "--output", str(target)],
        env=cli_env(), capture_output=True, text=True, preexec_fn=limit_file_size, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(db.parent) == before


def test_output_to_a_device_is_written_not_replaced(db: Path) -> None:
    result = harvester("--db", str(db), "export", "--format", "jsonl", "--output", os.devnull)
    assert result.returncode == 0, result.stderr
    assert Path(os.devnull).is_char_device()


def test_an_export_keeps_the_mode_a_plain_file_would_have(db: Path) -> None:
    target = db.parent / "jobs.csv"
    result = harvester("--db", str(db), "export", "--format", "csv", "--output", str(target))
    assert result.returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("output_format", ["csv", "jsonl", "parquet"])
def test_export_table_works_on_a_terminal(db: Path, output_format: str) -> None:
    target = db.parent / f"outputs.{output_format}"
    code, shown = run_on_a_terminal(
        "--db", str(db), "export", "--format", output_format, "--table", "outputs",
        "--where", "score >= 0", "--output", str(target),
    )  # fmt: skip
    assert code == 0, shown
    assert "not authorized" not in shown
    assert "exported 40 rows of outputs" in shown
    assert "[" in shown and "/40" in shown  # the progress bar, with the row count
    assert target.stat().st_size > 0


# -- every table, every format, in process ---------------------------------------------------


EXPORTED = ("outputs", "counts", "readers", "score_context", "mentions", "latest_outputs", "jobs")


@pytest.mark.parametrize("table", EXPORTED)
async def test_export_round_trips_csv_jsonl_and_parquet(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    columns = [row[1] for row in rows(harvested, f"PRAGMA table_info({table})")]
    expected = rows(harvested, f"SELECT * FROM {table}")
    assert expected  # something to compare

    code, out, _ = run_main(
        capsys, "--db", str(harvested), "export", "--format", "jsonl", "--table", table
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [tuple(record[name] for name in columns) for record in records] == expected

    code, out, _ = run_main(
        capsys, "--db", str(harvested), "export", "--format", "csv", "--table", table
    )
    parsed = list(csv.reader(io.StringIO(out)))
    assert parsed[0] == columns
    assert parsed[1:] == [["" if v is None else str(v) for v in row] for row in expected]

    target = tmp_path / f"{table}.parquet"
    code, _, _ = run_main(
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
    code, out, _ = run_main(
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
        == rows(harvested, "SELECT count(*) FROM outputs WHERE score > 20 AND journal IS NOT NULL")[
            0
        ][0]
    )

    code, out, _ = run_main(
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
    jobs = rows(harvested, "SELECT count(*) FROM jobs")
    code, _, err = run_main(capsys, "--db", str(harvested), "export", "--format", "csv", *args)
    assert code == 1 and message in err
    assert rows(harvested, "SELECT count(*) FROM jobs") == jobs


def damage_one_body(db: Path) -> tuple[int, str]:
    """Cut the end off one stored (compressed) body: (its id, its job's identifier)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        body_id, identifier, data = conn.execute(
            "SELECT b.id, j.identifier, b.data FROM bodies AS b"
            " JOIN responses AS r ON r.body_id = b.id JOIN jobs AS j ON j.id = r.job_id"
            " WHERE r.http_status = 200 AND b.codec = 'zstd' ORDER BY b.id LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE bodies SET data = ? WHERE id = ?", (data[: len(data) // 2], body_id))
        conn.commit()
    return int(body_id), str(identifier)


@pytest.mark.parametrize(
    "form",
    [("--format", "jsonl"), ("--format", "jsonl", "--table", "bodies"),
     ("--format", "parquet", "--table", "bodies")],
    ids=["records", "bodies-jsonl", "bodies-parquet"],
)  # fmt: skip
def test_a_damaged_body_is_written_as_null_and_the_export_fails(
    db: Path, tmp_path: Path, form: tuple[str, ...]
) -> None:
    """Everything that could be read is written, the damaged body as null; then the
    export exits 1, saying how many bodies were damaged."""
    body_id, identifier = damage_one_body(db)
    target = tmp_path / ("out.parquet" if "parquet" in form else "out.jsonl")
    result = harvester("--db", str(db), "export", *form, "--output", str(target))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "harvester export: 1 stored bodies are damaged and were exported as null "
        "(`harvester verify` lists them, and how to fetch them again)"
    )
    if "parquet" in form:
        records = pq.read_table(target).to_pylist()
    else:
        records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == rows(db, "SELECT count(*) FROM responses" if "--table" not in form
                                else "SELECT count(*) FROM bodies")[0][0]  # fmt: skip
    if "--table" in form:
        [damaged] = [record for record in records if record["id"] == body_id]
    else:
        [damaged] = [record for record in records if record["identifier"] == identifier]
    assert damaged["body"] is None
    assert sum(record["body"] is None for record in records) == 1
