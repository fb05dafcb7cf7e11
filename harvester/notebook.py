"""A small Python API for reading a store from a notebook: `harvester.open_store(path)`.

    import harvester

    with harvester.open_store("altmetric.db") as store:
        store.tables()
        store.query("SELECT doi, score FROM latest_outputs WHERE score > ?", (100,))
        wide = store.to_pandas("outputs_wide")  # a table's name, or a query
        tweets = store.to_arrow("SELECT * FROM counts WHERE source = ?", ("twitter",))

The store is opened read-only and locked as `harvester query` locks it
(`store.readonly`): a notebook open beside a running daemon reads everything and can
change nothing, so a stray UPDATE in a cell cannot damage a harvest. pandas and
pyarrow are the `notebook` extra, imported only when asked for: `query()` needs neither.

A store on a read-only filesystem or in a read-only directory (a published archive, a
snapshot) is read as an immutable file, which one line on stderr says once; the
reader's `immutable` is then true. Nothing can be writing a store there.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harvester.errors import HarvesterError, QueryError
from harvester.store import Store
from harvester.store.filters import quoted
from harvester.store.readonly import SQL_ERRORS, ReadOnlyGuard, explain, lock, lock_read_only
from harvester.store.tables import table_names

if TYPE_CHECKING:
    import pandas  # type: ignore[import-untyped]  # no stubs (pandas-stubs is not a dependency)
    import pyarrow

Params = Sequence[Any] | Mapping[str, Any]

EXTRA = "pip install 'altmetric-harvester[notebook]'"


class MissingExtra(HarvesterError, ImportError):
    """pandas or pyarrow is not installed; the message names the extra that brings it."""


def open_store(path: str | os.PathLike[str]) -> StoreReader:
    """The store at `path`, read-only. A path with no store is a StoreError, never a
    new empty file: a mistyped path must not look like an empty harvest."""
    return StoreReader(Path(path))


class StoreReader:
    """One read-only connection to a store. Close it (or use `with`) when done: an open
    reader keeps the store's WAL from being checkpointed back into the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store = Store(path, read_only=True)
        lock_read_only(self._store)
        # Read as an immutable file (a read-only directory), as stderr said once.
        self.immutable = self._store.immutable

    def __repr__(self) -> str:
        return f"StoreReader({str(self.path)!r})"

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """The rows of one statement, each a dict by column name. `?` or `:name`
        placeholders take `params`. A statement that would write is refused
        (QueryError), whatever it is."""
        columns, rows = self._run(sql, params)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def tables(self) -> list[str]:
        """Every table and view a query can read (`outputs_wide`, `latest_outputs`...)."""
        return table_names(self._store)

    def to_pandas(self, sql_or_table: str, params: Params = ()) -> pandas.DataFrame:
        """A table, a view or a query's rows as a DataFrame (needs pandas). A column of
        integers is pandas' nullable `Int64`, whatever nulls it holds: as float64 (what
        pandas makes of integers with a gap) a tweet ID past 2**53 would be rounded."""
        pd = _require("pandas", "to_pandas")
        columns, rows = self._run(self._select(sql_or_table), params)
        values = [_pandas_column(pd, [row[i] for row in rows]) for i in range(len(columns))]
        frame = pd.DataFrame(dict(enumerate(values)), index=pd.RangeIndex(len(rows)))
        frame.columns = columns  # by position: a query may name two columns alike
        return frame

    def to_arrow(self, sql_or_table: str, params: Params = ()) -> pyarrow.Table:
        """A table, a view or a query's rows as an Arrow table (needs pyarrow), for
        polars (`pl.from_arrow`), DuckDB or Parquet."""
        pa = _require("pyarrow", "to_arrow")
        columns, rows = self._run(self._select(sql_or_table), params)
        arrays = [_arrow_column(pa, [row[i] for row in rows]) for i in range(len(columns))]
        return pa.Table.from_arrays(arrays, names=columns)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _select(self, sql_or_table: str) -> str:
        if sql_or_table in self.tables():
            return f"SELECT * FROM {quoted(sql_or_table)}"
        return sql_or_table

    def _run(self, sql: str, params: Params) -> tuple[list[str], list[tuple[Any, ...]]]:
        guard = None
        try:
            guard = lock(self._store)  # a fresh guard: its words are this statement's
            cursor = self._store.conn.execute(sql, params)
            rows = cursor.fetchall()
        except SQL_ERRORS as error:
            raise QueryError(_explain(error, guard)) from None
        return [entry[0] for entry in cursor.description or ()], rows


def _explain(error: Exception, guard: ReadOnlyGuard | None) -> str:
    if isinstance(error, sqlite3.ProgrammingError) and "bindings" in str(error):
        return str(error)  # Python's own words say how many were wanted and given
    return explain(error, guard)


def _require(module: str, method: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{method}() needs {module}: {EXTRA}") from None


def _pandas_column(pd: Any, values: list[Any]) -> Any:
    """Integers (with or without nulls) as `Int64`; anything else as pandas infers it."""
    if {type(value) for value in values if value is not None} == {int}:
        return pd.array(values, dtype="Int64")
    return values


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    """SQLite lets a column mix types, Arrow does not: a mixed column becomes text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if value is None else str(value) for value in values], pa.string())
