"""`outputs_wide` (schema m011): one row per output's latest snapshot, a column per
common source's posts and accounts, checked against `counts`, `readers` and
`score_context` themselves on a store harvested from the simulator (two snapshots of
each output, and answers of the counts call), exported like any table, and read the
way the view promises (outputs in order, counts by their key)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import KEY, copy_store, dois, drain, harvest_from_simulator, harvester, queue, rows

from harvester.config import ApiSettings, RateSettings, Settings, StoreSettings
from harvester.errors import StoreError
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store, wide


async def _harvest(db: Path) -> None:
    await harvest_from_simulator(db, 40)
    with Store(db) as store:
        store.refresh_older_than(0)
    await harvest_from_simulator(db, 40)  # a second snapshot of every output
    queue(db, dois(30, "10.5150/counted."))
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5, endpoint="counts"),
            rate=RateSettings(requests_per_s=500, burst=10),
            store=StoreSettings(path=db),
        )
        assert (await drain(settings)).exit_code == 0


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fetch answers (two snapshots of each output) and counts answers, in one store:
    read-only in the tests (`helpers.rows`); copy it to change it."""
    path = tmp_path_factory.mktemp("wide") / "wide.db"
    asyncio.run(_harvest(path))
    return path


def wide_rows(db: Path, sql: str = "SELECT * FROM outputs_wide") -> list[dict[str, Any]]:
    uri = f"{db.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        cursor = conn.execute(sql)
        names = [entry[0] for entry in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
    finally:
        conn.close()


def test_one_row_per_output_its_latest_snapshot(db: Path) -> None:
    latest = rows(db, "SELECT response_id FROM latest_outputs ORDER BY response_id")
    snapshots = rows(db, "SELECT count(*), count(DISTINCT job_id) FROM outputs")[0]
    assert snapshots[0] > snapshots[1]  # the store has older snapshots to leave out
    found = rows(db, "SELECT response_id FROM outputs_wide ORDER BY response_id")
    assert found == latest
    assert len(found) == snapshots[1]
    same = rows(
        db,
        f"SELECT count(*) FROM outputs_wide AS w JOIN latest_outputs AS o USING (response_id)"
        f" WHERE {' AND '.join(f'w.{c} IS o.{c}' for c in wide.OUTPUT_COLUMNS)}",
    )
    assert same == [(len(found),)]


def test_every_count_column_is_its_sources_row_of_counts(db: Path) -> None:
    """Pivoted here from `counts` of each latest snapshot; a source the answer does not
    name is NULL."""
    expected: dict[int, dict[str, Any]] = defaultdict(dict)
    for response_id, source, posts, accounts in rows(
        db,
        "SELECT c.response_id, c.source, c.posts_count, c.unique_users_count"
        " FROM counts AS c JOIN latest_outputs USING (response_id)",
    ):
        expected[response_id][source] = (posts, accounts)
    found = wide_rows(db)
    for row in found:
        by_source = expected[row["response_id"]]
        for name, source, field in wide.COUNT_COLUMNS:
            posts, accounts = by_source.get(source, (None, None))
            assert row[name] == (posts if field == "posts_count" else accounts), (name, row)
    # The common sources are there: most columns hold a count somewhere.
    filled = {name for row in found for name, _, _ in wide.COUNT_COLUMNS if row[name] is not None}
    assert {"twitter_posts", "twitter_accounts", "news_posts", "qna_posts", "rh_posts"} <= filled


def test_mendeley_readers_and_the_percentile_among_all(db: Path) -> None:
    readers = dict(
        rows(db, "SELECT response_id, readers FROM readers WHERE reference_manager = 'mendeley'")
    )
    percentile = dict(
        rows(db, "SELECT response_id, percentile FROM score_context WHERE context = 'all'")
    )
    found = wide_rows(db)
    assert [row["mendeley_readers"] for row in found] == [
        readers.get(row["response_id"]) for row in found
    ]
    assert [row["score_pct_all"] for row in found] == [
        percentile.get(row["response_id"]) for row in found
    ]
    assert any(row["mendeley_readers"] for row in found)
    assert any(row["score_pct_all"] is not None for row in found)


def test_a_counts_answer_fills_accounts_and_leaves_posts_null(db: Path) -> None:
    counted = wide_rows(db, "SELECT * FROM outputs_wide WHERE mode = 'counts'")
    assert counted
    assert all(row["twitter_posts"] is None for row in counted)
    assert all(row["posts_count"] is not None for row in counted)  # cited_by_posts_count
    assert any(row["twitter_accounts"] for row in counted)
    assert any(row["news_accounts"] for row in counted)  # cited_by_msm_count


def test_columns_are_plain_names_with_declared_types(db: Path) -> None:
    info = rows(db, "PRAGMA table_info(outputs_wide)")
    assert tuple(row[1] for row in info) == wide.COLUMNS
    assert len(set(wide.COLUMNS)) == len(wide.COLUMNS)
    # Unquoted in SQL, and attributes in pandas (`df.qna_posts`).
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in wide.COLUMNS)
    types = {row[1]: row[2] for row in info}
    assert {types[name] for name, _, _ in wide.COUNT_COLUMNS} == {"INTEGER"}
    assert (types["mendeley_readers"], types["score_pct_all"], types["score"]) == (
        "INTEGER",
        "REAL",
        "REAL",
    )


def plan(db: Path, sql: str) -> list[str]:
    return [row[3] for row in rows(db, f"EXPLAIN QUERY PLAN {sql}")]


def test_the_view_reads_outputs_in_order_and_each_count_by_its_key(db: Path) -> None:
    steps = plan(db, "SELECT * FROM outputs_wide")
    assert steps[0] == "SEARCH o USING INTEGER PRIMARY KEY (rowid>?)"  # in order, no index
    lookups = [step for step in steps if step.startswith("SEARCH c ")]
    assert len(lookups) == len(wide.COUNT_COLUMNS)
    assert set(lookups) == {"SEARCH c USING PRIMARY KEY (response_id=? AND source=?)"}
    assert not any("SCAN" in step or "TEMP" in step for step in steps)
    # Flattened into the query that reads it: a filter uses the outputs' index, and
    # columns not asked for cost nothing.
    by_doi = plan(db, "SELECT twitter_posts FROM outputs_wide WHERE doi = '10.5150/sim.1'")
    assert by_doi[0].startswith("SEARCH o USING INDEX outputs_doi (doi=?")
    assert len([step for step in by_doi if step.startswith("SEARCH c ")]) == 1
    assert not any("SEARCH c " in step for step in plan(db, "SELECT count(*) FROM outputs_wide"))
    by_score = plan(db, "SELECT doi FROM outputs_wide WHERE score > 10")
    assert by_score[0].startswith("SEARCH o USING INDEX outputs_latest_score")


def test_exported_as_csv_and_parquet_like_any_table(db: Path, tmp_path: Path) -> None:
    expected = wide_rows(db)
    result = harvester("--db", str(db), "export", "--table", "outputs_wide", "--format", "csv")
    assert result.returncode == 0, result.stderr
    parsed = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(parsed[0]) == wide.COLUMNS
    assert parsed[1:] == [
        ["" if value is None else str(value) for value in row.values()] for row in expected
    ]

    target = tmp_path / "wide.parquet"
    result = harvester(
        "--db", str(db), "export", "--table", "outputs_wide", "--format", "parquet",
        "--output", str(target),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(target)
    assert tuple(table.column_names) == wide.COLUMNS
    assert table.to_pylist() == expected
    types = {field.name: str(field.type) for field in table.schema}
    assert {types[name] for name, _, _ in wide.COUNT_COLUMNS} == {"int64"}
    assert (types["mendeley_readers"], types["score_pct_all"]) == ("int64", "double")


def test_m011_adds_the_view_to_an_older_store(db: Path, tmp_path: Path) -> None:
    older = copy_store(db, tmp_path)
    conn = sqlite3.connect(older)
    with conn:
        conn.execute("DROP VIEW outputs_wide")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_outputs_wide'")
    conn.close()
    with pytest.raises(StoreError, match="older version"):
        Store(older, read_only=True)
    Store(older, must_exist=True).close()  # a writing open applies m011
    assert rows(older, "SELECT count(*) FROM outputs_wide") == rows(
        older, "SELECT count(*) FROM latest_outputs"
    )
