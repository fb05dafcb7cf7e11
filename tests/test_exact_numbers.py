"""Numbers are exact everywhere a researcher reads them (issue 24): every integer ID
column of a harvested store, read back through `open_store` (pandas and Arrow), the
Parquet, CSV and JSON-lines exports (each read by pandas as the README says, polars
and DuckDB) and Datasette's JSON, holds the very values the store holds. The tweet IDs
are the test that bites: past 2**53, and null in every row that is not a tweet, so a
column of them read as floats comes back rounded.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd  # type: ignore[import-untyped]  # no stubs (pandas-stubs is not a dependency)
import polars as pl
import pytest
from helpers import copy_store, harvester, rows, serve_store, served_url

import harvester as package

TABLES = ("mentions", "tweets", "tweet_ledger", "outputs", "outputs_wide", "jobs", "responses")


def plain(value: Any) -> Any:
    """A value as Python holds it: pandas' NA and NaN as None, numpy ints as int."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return int(value) if hasattr(value, "__index__") else value


@pytest.fixture(scope="module")
def store(
    harvested_by_cli: Callable[[int], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return copy_store(harvested_by_cli(40), tmp_path_factory.mktemp("exact"))


def id_columns(db: Path, table: str) -> list[str]:
    """The columns named like IDs that hold integers in the store."""
    names = [row[1] for row in rows(db, f"PRAGMA table_info({table})")]
    return [
        name
        for name in names
        if (name == "id" or name.endswith("_id"))
        and rows(db, f"SELECT count(*) FROM {table} WHERE typeof(\"{name}\") = 'integer'")[0][0]
        and not rows(db, f"SELECT count(*) FROM {table} WHERE typeof(\"{name}\") = 'text'")[0][0]
    ]


def stored(db: Path, table: str, column: str) -> Counter[Any]:
    return Counter(value for (value,) in rows(db, f'SELECT "{column}" FROM {table}'))


def test_the_store_holds_tweet_ids_past_2_53_beside_nulls(store: Path) -> None:
    [(big, nulls)] = rows(
        store,
        "SELECT sum(tweet_id > 9007199254740992), sum(tweet_id IS NULL) FROM mentions",
    )
    assert big > 100 and nulls > 0  # what rounds in a float64 column


@pytest.mark.parametrize("table", TABLES)
def test_open_store_gives_integers_as_int64_exactly(store: Path, table: str) -> None:
    with package.open_store(store) as reader:
        frame = reader.to_pandas(table)
        arrow = reader.to_arrow(table)
    for column in id_columns(store, table):
        assert str(frame[column].dtype) == "Int64", (table, column)
        assert Counter(plain(v) for v in frame[column]) == stored(store, table, column)
        assert Counter(arrow.column(column).to_pylist()) == stored(store, table, column)


def exported(store: Path, table: str, output_format: str, directory: Path) -> Path:
    target = directory / f"{table}.{output_format}"
    result = harvester(
        "--db", str(store), "export", "--format", output_format, "--table", table,
        "--output", str(target),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return target


def in_duckdb(function: str, path: Path) -> Any:
    relation = duckdb.sql(f"SELECT * FROM {function}('{path}')")
    assert relation is not None
    return relation.df()


READERS: dict[str, dict[str, Callable[[Path], Any]]] = {
    "parquet": {
        "pandas": pd.read_parquet,  # plainly: the file tells pandas its Int64 columns
        "polars": pl.read_parquet,
        "duckdb": lambda path: in_duckdb("read_parquet", path),
    },
    "csv": {
        "pandas": lambda path: pd.read_csv(path, dtype_backend="numpy_nullable"),
        "polars": lambda path: pl.read_csv(path, infer_schema_length=None),
        "duckdb": lambda path: in_duckdb("read_csv", path),
    },
    "jsonl": {
        "pandas": lambda path: pd.read_json(
            path, lines=True, engine="pyarrow", dtype_backend="numpy_nullable"
        ),
        "polars": lambda path: pl.read_ndjson(path, infer_schema_length=None),
        "duckdb": lambda path: in_duckdb("read_json", path),
    },
}


@pytest.mark.parametrize("output_format", list(READERS))
@pytest.mark.parametrize("table", TABLES)
def test_every_export_read_back_holds_the_stored_integers(
    store: Path, table: str, output_format: str, tmp_path: Path
) -> None:
    path = exported(store, table, output_format, tmp_path)
    for reader, read in READERS[output_format].items():
        frame = read(path)
        for column in id_columns(store, table):
            values = frame[column].to_list()
            assert Counter(plain(v) for v in values) == stored(store, table, column), (
                output_format,
                reader,
                table,
                column,
            )


@pytest.fixture
def served(store: Path, tmp_path: Path) -> Iterator[str]:
    with serve_store(store, tmp_path / "cache") as (line, _process):
        yield served_url(line)


def test_datasette_gives_the_stored_integers(store: Path, served: str) -> None:
    database = store.stem
    for table, column in (("mentions", "tweet_id"), ("tweet_ledger", "tweet_id")):
        sql = f"SELECT {column} FROM {table} ORDER BY {column} DESC LIMIT 500"
        query = urllib.parse.urlencode({"sql": sql, "_shape": "array"})
        url = f"{served}{database}.json?{query}"
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (loopback)
            got = [row[column] for row in json.load(answer)]
        assert got == [value for (value,) in rows(store, sql)] and got[0] > 2**53
