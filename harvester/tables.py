"""The store as tables for analysis: `query`, `export --table` and `refresh`'s choice.

Everything here reads through a read-only connection with `query_only` on, so SQL
typed by a user (a query, a `--where`) can read anything and change nothing. The one
write, `refresh`'s requeue, goes through the store's own statement with the job ids
this module selected.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harvester.bodies import BodyCorrupt
from harvester.store import Store, iso_utc

FETCH_ROWS = 1_000
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


# sqlite3 reports a second statement in one string as a Warning (3.11) or a
# ProgrammingError (3.12+): both are the user's SQL being refused.
SQL_ERRORS = (sqlite3.Error, sqlite3.Warning)


class QueryError(ValueError):
    """SQL the store refused, with SQLite's reason."""


@dataclass(frozen=True)
class Rows:
    """A result: column names (with SQLite's declared types where known) and rows."""

    columns: list[str]
    types: list[str]
    rows: Iterator[tuple[Any, ...]]


def lock_read_only(store: Store) -> None:
    """No statement on this connection may write, even to a TEMP database, reach
    another file (ATTACH), or lift the lock itself."""
    if not store.read_only:
        raise ValueError("lock_read_only wants a store opened read-only")
    store.conn.execute("PRAGMA query_only = ON")
    store.conn.set_authorizer(_refuse_escapes)


def _refuse_escapes(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
        # A pragma with an argument sets something, except these, which only look.
        return (
            sqlite3.SQLITE_OK if (arg1 or "").lower() in _LOOKING_PRAGMAS else sqlite3.SQLITE_DENY
        )
    return sqlite3.SQLITE_OK


_LOOKING_PRAGMAS = frozenset(
    (
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    )
)


def run_query(store: Store, sql: str) -> Rows:
    """Run one statement of the user's SQL on the read-only store."""
    lock_read_only(store)
    try:
        cursor = store.conn.execute(sql)
    except SQL_ERRORS as error:
        raise QueryError(_explain(error)) from None
    columns = [entry[0] for entry in cursor.description or ()]
    return Rows(columns, [""] * len(columns), _fetch(cursor))


def _explain(error: Exception) -> str:
    text = str(error)
    if "readonly" in text or "query_only" in text or "read-only" in text:
        return f"the store is read-only here: {text}"
    return text


def _fetch(cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
    try:
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch
    except SQL_ERRORS as error:
        raise QueryError(_explain(error)) from None


def table_names(store: Store) -> list[str]:
    """Tables and views a user may export (not SQLite's or the migrations' own)."""
    return [
        name
        for (name,) in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
        )
        if not name.startswith(("sqlite_", "_sqlite_"))
    ]


def export_rows(store: Store, table: str, where: str | None) -> Rows:
    """All rows of `table`, optionally filtered by a `--where` expression. The bodies
    table comes out uncompressed: `data` gives way to `body`, the bytes as received
    (UTF-8 text)."""
    source = _rows_of(store, table, where)
    info = store.conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    columns, types = [row[1] for row in info], [row[2] for row in info]
    rows = _fetch(_select(store, f"SELECT * {source}", where))
    if table == "bodies":
        return _uncompressed_bodies(store, columns, types, rows)
    return Rows(columns, types, rows)


def count_rows(store: Store, table: str, where: str | None) -> int:
    """How many rows `export_rows` will give (for a progress bar: it costs a scan)."""
    source = _rows_of(store, table, where)
    return int(_select(store, f"SELECT count(*) {source}", where).fetchone()[0])


def _rows_of(store: Store, table: str, where: str | None) -> str:
    """`FROM "table" [WHERE (...)]`, for a table or view that exists, read-only."""
    lock_read_only(store)
    names = table_names(store)
    if table not in names:
        raise QueryError(f"no table or view {table!r} in the store (there are: {', '.join(names)})")
    return f'FROM "{table}"' + (f" WHERE ({where})" if where else "")


def _select(store: Store, sql: str, where: str | None) -> sqlite3.Cursor:
    try:
        return store.conn.execute(sql)
    except SQL_ERRORS as error:
        raise QueryError(f"--where {where!r}: {_explain(error)}") from None


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


def plain_value(value: Any) -> Any:
    """A cell as JSON and CSV can carry it: BLOBs become base64 text."""
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


# -- refresh -------------------------------------------------------------------------------


def parse_age(text: str) -> float:
    """Seconds in an age such as `30d`, `12h`, `90m`, `2w`, `1d12h` or `0s` (all)."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise ValueError(f"{text!r} is not an age (try 30d, 12h, 90m or 2w)")
    return sum(float(amount) * _UNIT_S[unit] for amount, unit in parts)


def jobs_to_refresh(
    store: Store, older_than_s: float, where: str | None, chunk: int = 5_000
) -> Iterator[list[int]]:
    """Done jobs whose latest answer is older than `older_than_s`, filtered by a
    `--where` expression over `latest_outputs` columns, in chunks of ids (millions
    of them are never held at once)."""
    lock_read_only(store)
    cutoff = iso_utc(time.time() - older_than_s)
    condition = f" AND ({where})" if where else ""
    try:
        cursor = store.conn.execute(
            f"""SELECT jobs.id FROM jobs
                LEFT JOIN latest_outputs ON latest_outputs.job_id = jobs.id
                WHERE jobs.state = 'done'
                  AND (SELECT max(fetched_at) FROM responses
                       WHERE responses.job_id = jobs.id) < ?{condition}
                ORDER BY jobs.id""",
            (cutoff,),
        )
        while rows := cursor.fetchmany(chunk):
            yield [job_id for (job_id,) in rows]
    except SQL_ERRORS as error:
        raise QueryError(f"--where {where!r}: {_explain(error)}") from None
