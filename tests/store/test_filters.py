"""`--where` only narrows: `refresh` and `export --table` given hostile and ordinary
filters, through the real command in a subprocess, on a store where half the outputs
are too young to refresh."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import harvest_from_simulator
from helpers import harvester as run_harvester
from helpers import rows as query

from harvester.errors import QueryError
from harvester.model import iso_utc
from harvester.store import Store, tables
from harvester.store.readonly import lock_read_only
from harvester.store.tables import count_rows, export_rows, jobs_to_refresh, run_query

OLD = "2020-01-01T00:00:00.000000Z"  # half the outputs were last fetched then
# A store where the command's own conditions matter: `refresh --older-than 30d` may
# requeue only the done jobs with an old answer.
AGE = "30d"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filters") / "template.db"
    asyncio.run(harvest_from_simulator(path, 40))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE responses SET fetched_at = ? WHERE job_id % 2 = 0", (OLD,))
        conn.execute("UPDATE outputs SET fetched_at = ? WHERE job_id % 2 = 0", (OLD,))
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store.db"
    shutil.copyfile(template, target)
    Store(target).close()  # its home name recorded, as by the first writer (store.home)
    return target


def in_scope(db: Path) -> set[int]:
    """What `refresh --older-than 30d` may requeue: done, latest answer older than 30d."""
    cutoff = iso_utc(time.time() - 30 * 86_400)
    return {
        job_id
        for (job_id,) in query(
            db,
            "SELECT id FROM jobs WHERE state = 'done' AND (SELECT max(fetched_at) FROM"
            f" responses WHERE responses.job_id = jobs.id) < '{cutoff}'",
        )
    }


def states(db: Path) -> dict[int, str]:
    return dict(query(db, "SELECT id, state FROM jobs"))


def fingerprint(db: Path) -> str:
    """Every row of every table, so any write shows."""
    digest = hashlib.sha256()
    names = [name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    for name in sorted(names):
        rows = sorted(repr(row) for row in query(db, f'SELECT * FROM "{name}"'))
        digest.update(repr((name, rows)).encode())
    return digest.hexdigest()


def harvester(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`harvester --db DB ARGS`, run in the store's directory."""
    return run_harvester("--db", str(db), *args, cwd=db.parent)


def refresh(db: Path, where: str, age: str = AGE) -> subprocess.CompletedProcess[str]:
    return harvester(db, "refresh", "--older-than", age, "--where", where)


def requeued(before: dict[int, str], after: dict[int, str]) -> set[int]:
    changed = {job_id for job_id in after if after[job_id] != before.get(job_id)}
    assert all(before[j] == "done" and after[j] == "pending" for j in changed)
    return changed


# Expressions that try to widen the set, write, or read elsewhere, with the words the
# refusal must use. Whatever they try, refresh and export must refuse them.
HOSTILE = [
    ("1) OR (1", "--where has unbalanced parentheses"),
    ("1=1) --", "--where has unbalanced parentheses"),
    ("0) OR 1 --", "--where has unbalanced parentheses"),
    ("0) OR (1 = 1", "--where has unbalanced parentheses"),
    ("0) UNION SELECT job_id FROM latest_outputs WHERE (1", "--where has unbalanced parentheses"),
    ("1) UNION ALL SELECT * FROM latest_outputs WHERE (1", "--where has unbalanced parentheses"),
    ("1 --", "--where may not contain comments"),
    ("0 /* */ OR 1", "--where may not contain comments"),
    ("0 OR 1 /* unterminated", "--where may not contain comments"),
    ("0; DELETE FROM jobs", "--where must be one expression: it may not contain ';'"),
    ("0; UPDATE jobs SET state = 'pending'", "it may not contain ';'"),
    ("0 UNION SELECT * FROM latest_outputs", 'near "UNION": syntax error'),
    ("1=1 UNION SELECT id FROM jobs", 'near "UNION": syntax error'),
    ("job_id IN (SELECT id FROM jobs)", "--where may read only latest_outputs (it reads jobs)"),
    ("(SELECT count(*) FROM jobs) > 0", "--where may read only latest_outputs (it reads jobs)"),
    ("job_id IN (SELECT job_id FROM outputs)", "may read only latest_outputs (it reads outputs)"),
    ("job_id IN (WITH c AS (SELECT id FROM jobs) SELECT id FROM c)", "(it reads jobs)"),
    ("EXISTS (SELECT 1 FROM responses)", "may read only latest_outputs (it reads responses)"),
    ("1 IN (SELECT value FROM json_each('[1]'))", "(it calls a table-valued function)"),
    ("(SELECT count(*) FROM pragma_table_info('jobs')) > 0", "table-valued function"),
    ("load_extension('x')", "--where may not call load_extension()"),
    ("score > ?", "--where may not contain parameters"),
    ("score > :low", "--where may not contain parameters"),
    ("score > $low", "--where may not contain parameters"),
    ("title = 'unterminated", "--where has an unterminated string or quoted name"),
    ("", "--where is empty"),
    ("   ", "--where is empty"),
]


@pytest.mark.parametrize(("where", "words"), HOSTILE)
def test_refresh_refuses_hostile_filters_and_requeues_nothing(
    db: Path, where: str, words: str
) -> None:
    before, whole, scope = states(db), fingerprint(db), in_scope(db)
    assert 0 < len(scope) < sum(state == "done" for state in before.values())
    result = refresh(db, where)
    assert requeued(before, states(db)) <= scope  # never a job the command did not choose
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("harvester refresh: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert states(db) == before and fingerprint(db) == whole


@pytest.mark.parametrize(("where", "words"), HOSTILE)
def test_export_refuses_hostile_filters_and_writes_nothing(
    db: Path, where: str, words: str
) -> None:
    whole = fingerprint(db)
    table = Counter(as_csv(query(db, "SELECT * FROM latest_outputs")))
    result = harvester(
        db, "export", "--format", "csv", "--table", "latest_outputs", "--where", where
    )
    given = Counter(tuple(row) for row in list(csv.reader(io.StringIO(result.stdout)))[1:])
    assert given <= table  # never a row the table does not have, nor one twice
    assert fingerprint(db) == whole
    assert result.returncode == 1
    assert result.stderr.startswith("harvester export: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


@pytest.mark.parametrize(
    "where",
    [
        "job_id IN (SELECT id FROM jobs)",
        "nope = 1",
        "0) OR (1",
    ],
)
def test_refresh_refuses_a_bad_filter_even_when_nothing_is_old_enough(db: Path, where: str) -> None:
    before = states(db)
    result = refresh(db, where, age="1000w")
    assert result.returncode == 1 and result.stderr.startswith("harvester refresh: --where")
    assert states(db) == before


# Ordinary filters, and ones that only look dangerous (inside quotes). Each must requeue
# exactly the old done outputs it matches, and never a young one.
ORDINARY = [
    "journal = 'Nature'",
    "score > 10",
    "doi LIKE '10.5150/sim.1%'",
    "title = 'a -- b; c'",
    "title <> 'it''s -- (not; a comment) /* nor this'",
    "\"journal\" = 'x) OR (1' OR [score] > 10",
    "`score` > 10 AND journal IN ('Science', 'eLife')",
    "x'2d2d3b' = CAST('--;' AS BLOB)",
    "score > (SELECT avg(score) FROM latest_outputs)",
    "job_id IN (WITH c AS (SELECT job_id FROM latest_outputs WHERE score > 3)"
    " SELECT job_id FROM c)",
    "fetched_at > '2021'",  # only the young match, and those are not the command's
    "1",
    "0 OR 1",
]


@pytest.mark.parametrize("where", ORDINARY)
def test_refresh_requeues_only_old_done_outputs_that_match(db: Path, where: str) -> None:
    before = states(db)
    scope = in_scope(db)
    matching = {
        job_id for (job_id,) in query(db, f"SELECT job_id FROM latest_outputs WHERE {where}")
    }
    expected = scope & matching
    result = refresh(db, where)
    assert result.returncode == 0, result.stderr
    noun = "output" if len(expected) == 1 else "outputs"
    assert f"requeued {len(expected)} {noun} " in result.stdout
    assert requeued(before, states(db)) == expected


def test_the_ordinary_filters_are_a_real_test(template: Path) -> None:
    """Journals and scores spread so the filters above pick some old outputs, not all."""
    scope = in_scope(template)
    for where in ("journal = 'Nature'", "score > 10", "doi LIKE '10.5150/sim.1%'"):
        rows = query(template, f"SELECT job_id FROM latest_outputs WHERE {where}")
        assert 0 < len(scope & {job_id for (job_id,) in rows}) < len(scope), where


def test_refresh_without_where_takes_every_old_done_output(db: Path) -> None:
    before = states(db)
    scope = in_scope(db)
    assert scope == {
        job_id for job_id, state in before.items() if state == "done" and job_id % 2 == 0
    }
    result = harvester(db, "refresh", "--older-than", AGE)
    assert result.returncode == 0 and f"requeued {len(scope)} outputs" in result.stdout
    assert requeued(before, states(db)) == scope


def as_csv(rows: list[tuple[Any, ...]]) -> list[tuple[str, ...]]:
    """Rows as the CSV export writes them."""
    return [tuple("" if value is None else str(value) for value in row) for row in rows]


def exported(db: Path, table: str, where: str) -> list[list[str]]:
    result = harvester(db, "export", "--format", "csv", "--table", table, "--where", where)
    assert result.returncode == 0, result.stderr
    return list(csv.reader(io.StringIO(result.stdout)))


@pytest.mark.parametrize("where", ORDINARY)
@pytest.mark.parametrize("table", ["latest_outputs", "outputs"])
def test_export_gives_the_matching_rows_of_the_table_only(db: Path, table: str, where: str) -> None:
    whole = fingerprint(db)
    where = where.replace("latest_outputs", table)  # a subquery over the table itself
    header, *rows = exported(db, table, where)
    everything = query(db, f"SELECT * FROM {table}")
    expected = as_csv(query(db, f"SELECT * FROM {table} WHERE {where}"))
    given = Counter(tuple(row) for row in rows)
    assert given == Counter(expected)
    assert given <= Counter(as_csv(everything))
    assert header == [row[1] for row in query(db, f"PRAGMA table_info({table})")]
    assert fingerprint(db) == whole


def test_export_filter_may_read_only_its_own_table(db: Path) -> None:
    result = harvester(
        db,
        "export",
        "--format",
        "csv",
        "--table",
        "mentions",
        "--where",
        "job_id IN (SELECT job_id FROM latest_outputs WHERE journal = 'Nature')",
    )
    assert result.returncode == 1
    assert result.stderr == (
        "harvester export: --where may read only mentions (it reads outputs)\n"
    )


# -- in-process: the read-only lock, chunks, and the words of errors ------------------------


def test_count_rows_then_export_rows_on_one_read_only_store(db: Path) -> None:
    """The progress bar counts first on a terminal: the lock is taken twice or more."""
    total = query(db, "SELECT count(*) FROM latest_outputs")[0][0]
    nature = query(db, "SELECT count(*) FROM latest_outputs WHERE journal = 'Nature'")[0][0]
    with Store(db, read_only=True) as store:
        assert count_rows(store, "latest_outputs", None) == total
        assert len(list(export_rows(store, "latest_outputs", None).rows)) == total
        where = "journal = 'Nature'"
        assert count_rows(store, "latest_outputs", where) == nature
        assert len(list(export_rows(store, "latest_outputs", where).rows)) == nature
        lock_read_only(store)
        lock_read_only(store)
        assert store.conn.execute("PRAGMA query_only").fetchone() == (1,)
        with pytest.raises(QueryError, match="would write"):
            run_query(store, "DELETE FROM jobs")
        with pytest.raises(QueryError, match="ATTACH is refused"):
            run_query(store, f"ATTACH DATABASE '{db.parent / 'other.db'}' AS other")
    assert not (db.parent / "other.db").exists()


def test_export_rows_survive_a_count_between_their_batches(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's order: rows are started, then counted, then read in batches."""
    monkeypatch.setattr(tables, "FETCH_ROWS", 3)
    expected = query(db, "SELECT * FROM latest_outputs WHERE score > 1")
    with Store(db, read_only=True) as store:
        rows = export_rows(store, "latest_outputs", "score > 1").rows
        first = [next(rows) for _ in range(4)]
        assert count_rows(store, "latest_outputs", "score > 1") == len(expected)
        assert first + list(rows) == expected


def test_jobs_to_refresh_in_small_chunks(db: Path) -> None:
    """Each chunk's filter query runs while the candidates' query is still open."""
    where = "score > 5"
    matching = {
        job_id for (job_id,) in query(db, f"SELECT job_id FROM latest_outputs WHERE {where}")
    }
    with Store(db, read_only=True) as store:
        chunks = list(jobs_to_refresh(store, 30 * 86_400, where, chunk=3))
        every = list(jobs_to_refresh(store, 30 * 86_400, None, chunk=3))
    assert all(0 < len(chunk) <= 3 for chunk in chunks)
    got = [job_id for chunk in chunks for job_id in chunk]
    assert got == sorted(in_scope(db) & matching) and len(got) > 3
    assert [job_id for chunk in every for job_id in chunk] == sorted(in_scope(db))


def test_a_bad_filter_is_refused_before_the_first_chunk(db: Path) -> None:
    with Store(db, read_only=True) as store, pytest.raises(QueryError, match="it reads jobs"):
        jobs_to_refresh(store, 0, "job_id IN (SELECT id FROM jobs)")


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("DELETE FROM jobs", "the store is opened read-only: this statement would write"),
        ("CREATE TEMP TABLE scratch (x)", "this statement would write"),
        ("VACUUM", "this statement would write"),
        ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode with a value is refused"),
        ("SELECT load_extension('x')", "load_extension() is refused"),
        ("SELECT 1; SELECT 2", "only one statement may run at a time"),
        ("SELECT ?", "parameters (?, :name) cannot be given here"),
    ],
)
def test_query_refusals_are_in_words(db: Path, sql: str, words: str) -> None:
    with Store(db, read_only=True) as store, pytest.raises(QueryError) as refused:
        list(run_query(store, sql).rows)
    assert words in str(refused.value) and "not authorized" not in str(refused.value)
