"""The store as tables for analysis: `query`, `export --table` and `refresh`'s choice.

Everything here reads through a read-only connection (`mode=ro`, `query_only` on, and
an authorizer that refuses ATTACH and pragmas that set something), so SQL typed by a
user (a query, a `--where`) can read and change nothing.

A `--where` (see `filters`) is evaluated in a query of its own: `export` gives the
rows of `SELECT * FROM table WHERE (expression)`; `refresh` picks its candidates
(done, latest answer older than the cutoff) in one query, asks the expression about
each chunk of them in another, and keeps only the chunk's ids that came back, so
whatever the expression does, the requeue gets a subset of the candidates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harvester.errors import BodyCorrupt, QueryError, listing
from harvester.store.core import Store
from harvester.store.filters import Filter, filtering, make_filter, quoted
from harvester.store.jobs import refresh_cutoff, stale_job_ids
from harvester.store.names import exportable_tables
from harvester.store.readonly import SQL_ERRORS, explain, fetch, lock, lock_read_only

FETCH_ROWS = 1_000


@dataclass(frozen=True)
class Rows:
    """A result: column names (with SQLite's declared types where known) and rows."""

    columns: list[str]
    types: list[str]
    rows: Iterator[tuple[Any, ...]]


def run_query(store: Store, sql: str) -> Rows:
    """Run one statement of the user's SQL on the read-only store."""
    guard = lock(store)
    try:
        cursor = store.conn.execute(sql)
    except SQL_ERRORS as error:
        raise QueryError(explain(error, guard)) from None
    columns = [entry[0] for entry in cursor.description or ()]
    return Rows(columns, [""] * len(columns), fetch(cursor, explain))


# -- export --------------------------------------------------------------------------------


def table_names(store: Store) -> list[str]:
    """Tables and views a user may export (not SQLite's or the migrations' own)."""
    return exportable_tables(store.conn)


def export_rows(store: Store, table: str, where: str | None, *, typed: bool = False) -> Rows:
    """All rows of `table`, optionally only those matching a `--where` expression. The
    bodies table comes out uncompressed: `data` gives way to `body`, the bytes as
    received (UTF-8 text). With `typed`, a column SQLite declares no type for (a view's
    `tweet_ledger.tweet_id`) is given the type of what it holds (a scan of that column),
    so that integers stay integers in Parquet."""
    filter_ = _checked(store, table, where)
    info = store.conn.execute(f"PRAGMA table_info({quoted(table)})").fetchall()
    columns, types = [row[1] for row in info], [row[2] for row in info]
    if typed and not all(types):
        types = _held_types(store, table, filter_, columns, types)
    cursor = _select(store, f"SELECT * FROM {quoted(table)}", filter_)
    if len(cursor.description or ()) != len(columns):  # cannot be, but never pass it on
        raise QueryError(f"--where {where!r} changed the columns of {table}")
    explain_error = filter_.explain if filter_ is not None else explain
    rows = fetch(cursor, explain_error)
    if table == "bodies":
        return _uncompressed_bodies(store, columns, types, rows)
    return Rows(columns, types, rows)


def _held_types(
    store: Store, table: str, filter_: Filter | None, columns: list[str], types: list[str]
) -> list[str]:
    """Declared types, and for each undeclared column the type of the values it holds:
    INTEGER if every one is an integer, REAL if numbers, BLOB if blobs, else TEXT."""
    undeclared = [name for name, declared in zip(columns, types, strict=True) if not declared]
    kinds = ", ".join(f"group_concat(DISTINCT typeof({quoted(name)}))" for name in undeclared)
    found = _select(store, f"SELECT {kinds} FROM {quoted(table)}", filter_).fetchone()
    held = dict(zip(undeclared, found, strict=True))

    def typed(name: str, declared: str) -> str:
        if declared:
            return declared
        stored = set((held[name] or "").split(",")) - {"null", ""}
        if stored == {"integer"}:
            return "INTEGER"
        if stored and stored <= {"integer", "real"}:
            return "REAL"
        return "BLOB" if stored == {"blob"} else "TEXT"

    return [typed(name, declared) for name, declared in zip(columns, types, strict=True)]


def count_rows(store: Store, table: str, where: str | None) -> int:
    """How many rows `export_rows` will give (for a progress bar: it costs a scan)."""
    filter_ = _checked(store, table, where)
    # count(*) is computed by the first step, which runs inside _select.
    return int(_select(store, f"SELECT count(*) FROM {quoted(table)}", filter_).fetchone()[0])


def _checked(store: Store, table: str, where: str | None) -> Filter | None:
    """Lock the store, check that `table` exists, and check `where` against it."""
    lock_read_only(store)
    names = table_names(store)
    if table not in names:
        raise QueryError(f"no table or view {table!r} in the store; " + listing("there are", names))
    return None if where is None else make_filter(store, table, where)


def _select(store: Store, sql: str, filter_: Filter | None) -> sqlite3.Cursor:
    """`sql` (a SELECT from one table), with `WHERE (expression)` if there is a filter,
    prepared under the filter's guard."""
    if filter_ is None:
        try:
            return store.conn.execute(sql)
        except SQL_ERRORS as error:
            raise QueryError(explain(error)) from None
    with filtering(store, filter_):
        return store.conn.execute(f"{sql} WHERE ({filter_.where})")


def _uncompressed_bodies(
    store: Store, columns: list[str], types: list[str], rows: Iterator[tuple[Any, ...]]
) -> Rows:
    at = {name: index for index, name in enumerate(columns)}
    kept = [name for name in columns if name != "data"]

    def uncompressed() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            try:
                raw = store.bodies.decompress(
                    row[at["codec"]],
                    row[at["dictionary_id"]],
                    row[at["data"]],
                    row[at["size_bytes"]],
                )
                body: str | None = raw.decode("utf-8", "replace")
            except BodyCorrupt:
                body = None  # `verify` names it
            yield (*(row[at[name]] for name in kept), body)

    kept_types = [types[at[name]] for name in kept]
    return Rows([*kept, "body"], [*kept_types, "TEXT"], uncompressed())


# -- refresh -------------------------------------------------------------------------------


def jobs_to_refresh(
    store: Store, older_than_s: float, where: str | None, chunk: int = 5_000
) -> Iterator[list[int]]:
    """Done jobs whose latest answer is older than `older_than_s`, in chunks of ids
    (millions of them are never held at once), optionally only those whose
    `latest_outputs` row matches a `--where` expression. The expression is checked
    here, before any chunk is given out, so a bad one requeues nothing."""
    lock_read_only(store)
    cutoff = refresh_cutoff(older_than_s)
    filter_ = None
    if where is not None:
        filter_ = make_filter(store, "latest_outputs", where)
        with filtering(store, filter_):  # prepared now, so refused now if it is refused
            store.conn.execute(
                f"SELECT job_id FROM latest_outputs WHERE ({where}) LIMIT 0"
            ).fetchall()
    return _refresh_chunks(store, cutoff, filter_, chunk)


def _refresh_chunks(
    store: Store, cutoff: str, filter_: Filter | None, chunk: int
) -> Iterator[list[int]]:
    try:
        for job_ids in stale_job_ids(store.conn, cutoff, chunk):
            if filter_ is not None:
                job_ids = _matching(store, filter_, job_ids)
            if job_ids:
                yield job_ids
    except SQL_ERRORS as error:
        raise QueryError(explain(error)) from None


def _matching(store: Store, filter_: Filter, job_ids: Sequence[int]) -> list[int]:
    """Those of `job_ids` whose latest_outputs row matches the filter. The filter runs
    in its own read-only query, and only ids of the chunk are kept from its answer."""
    marks = ", ".join("?" * len(job_ids))
    with filtering(store, filter_):
        found = {
            job_id
            for (job_id,) in store.conn.execute(
                f"SELECT job_id FROM latest_outputs"
                f" WHERE job_id IN ({marks}) AND ({filter_.where})",
                job_ids,
            )
        }
    return [job_id for job_id in job_ids if job_id in found]
