"""The store as tables for analysis: `query`, `export --table` and `refresh`'s choice.

Everything here reads through a read-only connection (`mode=ro`, `query_only` on, and
an authorizer that refuses ATTACH and pragmas that set something), so SQL typed by a
user (a query, a `--where`) can read and change nothing.

A `--where` expression is held tighter, because it must only narrow what its command
chose. Before SQLite sees it, it is checked to be one expression: outside quoted
strings and names it has no comment, no `;`, no parameter and no parenthesis closed
that it did not open, so it cannot close the `WHERE (...)` it is put in. SQLite then
prepares it under an authorizer that lets it read only the table it filters (and what
that view itself reads) and do nothing but read. `export` gives the rows of
`SELECT * FROM table WHERE (expression)`. `refresh` picks its candidates (done, latest
answer older than the cutoff) in a query of its own, asks the expression about each
chunk of them in another, and keeps only the chunk's ids that came back: whatever the
expression does, the requeue (the store's own statement) gets a subset of the
candidates.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harvester.errors import QueryError
from harvester.model import iso_utc
from harvester.store.codec import BodyCorrupt
from harvester.store.core import Store

FETCH_ROWS = 1_000
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


# sqlite3 reports a second statement in one string as a Warning (3.11) or a
# ProgrammingError (3.12+): both are the user's SQL being refused.
SQL_ERRORS = (sqlite3.Error, sqlite3.Warning)


@dataclass(frozen=True)
class Rows:
    """A result: column names (with SQLite's declared types where known) and rows."""

    columns: list[str]
    types: list[str]
    rows: Iterator[tuple[Any, ...]]


# -- the read-only lock ------------------------------------------------------------------


def lock_read_only(store: Store) -> None:
    """No statement on this connection may write, even to a TEMP database, reach
    another file (ATTACH), or lift the lock itself. Calling it again is harmless."""
    _lock(store)


def _lock(store: Store) -> _ReadOnlyGuard:
    if not store.read_only:
        raise ValueError("lock_read_only wants a store opened read-only")
    # The guard refuses pragmas that set something, this one included: set the lock
    # with no authorizer in place, then put the guard (back).
    store.conn.set_authorizer(None)
    store.conn.execute("PRAGMA query_only = ON")
    guard = _ReadOnlyGuard()
    store.conn.set_authorizer(guard)
    return guard


class _ReadOnlyGuard:
    """The authorizer of a locked connection. SQLite only says "not authorized", so
    the guard keeps the first reason it refused something, in words."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        _database: str | None,
        source: str | None,
    ) -> int:
        reason = self.refusal(action, arg1, arg2, source)
        if reason is None:
            return sqlite3.SQLITE_OK
        if self.refused is None:
            self.refused = reason
        return sqlite3.SQLITE_DENY

    def refusal(
        self, action: int, arg1: str | None, arg2: str | None, source: str | None
    ) -> str | None:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            if not arg1:  # VACUUM attaches a temporary database to rebuild into
                return "the store is opened read-only: this statement would write"
            return "ATTACH is refused: the store is opened read-only and may not reach other files"
        # A pragma with an argument sets something, except these, which only look.
        if (
            action == sqlite3.SQLITE_PRAGMA
            and arg2 is not None
            and (arg1 or "").lower() not in _LOOKING_PRAGMAS
        ):
            return (
                f"PRAGMA {arg1} with a value is refused: the store is opened read-only "
                "and only pragmas that look may run"
            )
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _REFUSED_FUNCTIONS:
            return f"{arg2}() is refused: it would load code into SQLite"
        return None


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
# Off in Python's sqlite3 anyway (no enable_load_extension); refused by name as well.
_REFUSED_FUNCTIONS = frozenset(("load_extension", "fts3_tokenizer"))


def run_query(store: Store, sql: str) -> Rows:
    """Run one statement of the user's SQL on the read-only store."""
    guard = _lock(store)
    try:
        cursor = store.conn.execute(sql)
    except SQL_ERRORS as error:
        raise QueryError(_explain(error, guard)) from None
    columns = [entry[0] for entry in cursor.description or ()]
    return Rows(columns, [""] * len(columns), _fetch(cursor, _explain))


_SQLITE_WORDS = (
    ("readonly database", "the store is opened read-only: this statement would write"),
    ("not authorized", "the store is opened read-only: only statements that read may run"),
    ("authorization denied", "the store is opened read-only: only statements that read may run"),
    ("one statement at a time", "only one statement may run at a time (remove the ';')"),
    (
        "number of bindings",
        "parameters (?, :name) cannot be given here: write the values into the SQL",
    ),
    ("null character", "the SQL contains a NUL character"),
)


def _explain(error: Exception, guard: _ReadOnlyGuard | None = None) -> str:
    """SQLite's complaint in words a user can act on."""
    if guard is not None and guard.refused is not None:
        return guard.refused
    text = str(error)
    lowered = text.lower()
    for needle, words in _SQLITE_WORDS:
        if needle in lowered:
            return words
    return text


def _fetch(
    cursor: sqlite3.Cursor, explain: Callable[[Exception], str]
) -> Iterator[tuple[Any, ...]]:
    try:
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch
    except SQL_ERRORS as error:
        raise QueryError(explain(error)) from None


# -- --where -------------------------------------------------------------------------------


def _check_expression(where: str) -> None:
    """Refuse what could make `where` more than one expression in `WHERE (...)`.

    It reads the text as SQLite's tokenizer does where that matters: '...', "...",
    `...` (a doubled quote inside stays inside) and [...] are skipped whole, so a
    `--`, `;` or parenthesis inside a string is just text."""
    if not where.strip():
        raise QueryError("--where is empty")
    if "\x00" in where:
        raise QueryError("--where may not contain NUL characters")
    depth = 0
    at = 0
    while at < len(where):
        char = where[at]
        if char in "'\"`[":
            at = _after_quoted(where, at)
            continue
        if where.startswith(("--", "/*"), at):
            raise QueryError("--where may not contain comments (-- or /*)")
        if char == ";":
            raise QueryError("--where must be one expression: it may not contain ';'")
        if char in "?:@#" or (char == "$" and not _inside_name(where, at)):
            raise QueryError("--where may not contain parameters (?, :name, @name, $name)")
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise QueryError("--where has unbalanced parentheses")
        at += 1
    if depth:
        raise QueryError("--where has unbalanced parentheses")


def _after_quoted(text: str, start: int) -> int:
    close = "]" if text[start] == "[" else text[start]
    at = start + 1
    while (end := text.find(close, at)) >= 0:
        if close != "]" and text.startswith(close * 2, end):
            at = end + 2  # a doubled quote is one quote character inside
            continue
        return end + 1
    raise QueryError("--where has an unterminated string or quoted name")


def _inside_name(text: str, at: int) -> bool:
    """Whether the `$` at `at` continues a name (SQLite allows `a$b`)."""
    before = text[at - 1] if at else " "
    return before.isalnum() or before in "_$" or ord(before) > 127


class _FilterGuard(_ReadOnlyGuard):
    """The authorizer while a `--where` is prepared: read only `table`, nothing else."""

    def __init__(self, table: str, reads: frozenset[tuple[str | None, str | None]]) -> None:
        super().__init__()
        self.table = table
        self.reads = reads  # (table, view reading it) pairs that reading `table` itself does

    def refusal(
        self, action: int, arg1: str | None, arg2: str | None, source: str | None
    ) -> str | None:
        if action == sqlite3.SQLITE_SELECT:
            return None
        if action == sqlite3.SQLITE_READ:
            # The table itself from anywhere (a subquery, a CTE); what lies under a
            # view only as that view reads it.
            if (arg1, None) in self.reads or (arg1, source) in self.reads:
                return None
            return f"--where may read only {self.table} (it reads {arg1})"
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in _REFUSED_FUNCTIONS:
                return f"--where may not call {arg2}()"
            return None
        if action == sqlite3.SQLITE_PRAGMA:
            return "--where may not run a pragma"
        if action == sqlite3.SQLITE_RECURSIVE:
            return "--where may not use a recursive query"
        if arg1 == "sqlite_master":  # a table-valued function (json_each...) being set up
            return f"--where may read only {self.table} (it calls a table-valued function)"
        return f"--where may only read {self.table}: it would do something else"


class _ReadLearner:
    """An authorizer that allows everything and notes what a statement reads."""

    def __init__(self) -> None:
        self.reads: set[tuple[str | None, str | None]] = set()

    def __call__(
        self,
        action: int,
        arg1: str | None,
        _arg2: str | None,
        _database: str | None,
        source: str | None,
    ) -> int:
        if action == sqlite3.SQLITE_READ:
            self.reads.add((arg1, source))
        return sqlite3.SQLITE_OK


@dataclass(frozen=True)
class _Filter:
    """A checked `--where` over one table or view."""

    table: str
    where: str
    guard: _FilterGuard

    def explain(self, error: Exception) -> str:
        if self.guard.refused is not None:
            return self.guard.refused
        return f"--where {self.where!r}: {_explain(error)}"


def _filter(store: Store, table: str, where: str) -> _Filter:
    """Check `where` and learn what reading `table` alone reads (for a view: the
    tables under it, as the view itself reads them)."""
    _check_expression(where)
    learner = _ReadLearner()
    # Setting an authorizer expires prepared statements, so this one is prepared
    # (and authorized) afresh even if it ran before.
    store.conn.set_authorizer(learner)
    try:
        store.conn.execute(f"SELECT * FROM {_quoted(table)} LIMIT 0").fetchall()
    finally:
        _lock(store)
    return _Filter(table, where, _FilterGuard(table, frozenset(learner.reads)))


@contextmanager
def _filtering(store: Store, filter_: _Filter) -> Iterator[None]:
    """Statements prepared in this block are held to the filter's guard; SQLite's
    errors come out as QueryError in words."""
    filter_.guard.refused = None
    store.conn.set_authorizer(filter_.guard)
    try:
        yield
    except SQL_ERRORS as error:
        raise QueryError(filter_.explain(error)) from None
    finally:
        _lock(store)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- export --------------------------------------------------------------------------------


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
    """All rows of `table`, optionally only those matching a `--where` expression. The
    bodies table comes out uncompressed: `data` gives way to `body`, the bytes as
    received (UTF-8 text)."""
    filter_ = _checked(store, table, where)
    info = store.conn.execute(f"PRAGMA table_info({_quoted(table)})").fetchall()
    columns, types = [row[1] for row in info], [row[2] for row in info]
    cursor = _select(store, f"SELECT * FROM {_quoted(table)}", filter_)
    if len(cursor.description or ()) != len(columns):  # cannot be, but never pass it on
        raise QueryError(f"--where {where!r} changed the columns of {table}")
    explain = filter_.explain if filter_ is not None else _explain
    rows = _fetch(cursor, explain)
    if table == "bodies":
        return _uncompressed_bodies(store, columns, types, rows)
    return Rows(columns, types, rows)


def count_rows(store: Store, table: str, where: str | None) -> int:
    """How many rows `export_rows` will give (for a progress bar: it costs a scan)."""
    filter_ = _checked(store, table, where)
    # count(*) is computed by the first step, which runs inside _select.
    return int(_select(store, f"SELECT count(*) FROM {_quoted(table)}", filter_).fetchone()[0])


def _checked(store: Store, table: str, where: str | None) -> _Filter | None:
    """Lock the store, check that `table` exists, and check `where` against it."""
    lock_read_only(store)
    names = table_names(store)
    if table not in names:
        raise QueryError(f"no table or view {table!r} in the store (there are: {', '.join(names)})")
    return None if where is None else _filter(store, table, where)


def _select(store: Store, sql: str, filter_: _Filter | None) -> sqlite3.Cursor:
    """`sql` (a SELECT from one table), with `WHERE (expression)` if there is a filter,
    prepared under the filter's guard."""
    if filter_ is None:
        try:
            return store.conn.execute(sql)
        except SQL_ERRORS as error:
            raise QueryError(_explain(error)) from None
    with _filtering(store, filter_):
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


# The command's own conditions; a --where is never part of this statement.
_REFRESH_CANDIDATES = """
    SELECT id FROM jobs
    WHERE state = 'done'
      AND (SELECT max(fetched_at) FROM responses WHERE responses.job_id = jobs.id) < ?
    ORDER BY id"""


def jobs_to_refresh(
    store: Store, older_than_s: float, where: str | None, chunk: int = 5_000
) -> Iterator[list[int]]:
    """Done jobs whose latest answer is older than `older_than_s`, in chunks of ids
    (millions of them are never held at once), optionally only those whose
    `latest_outputs` row matches a `--where` expression. The expression is checked
    here, before any chunk is given out, so a bad one requeues nothing."""
    lock_read_only(store)
    cutoff = iso_utc(time.time() - older_than_s)
    filter_ = None
    if where is not None:
        filter_ = _filter(store, "latest_outputs", where)
        with _filtering(store, filter_):  # prepared now, so refused now if it is refused
            store.conn.execute(
                f"SELECT job_id FROM latest_outputs WHERE ({where}) LIMIT 0"
            ).fetchall()
    return _refresh_chunks(store, cutoff, filter_, chunk)


def _refresh_chunks(
    store: Store, cutoff: str, filter_: _Filter | None, chunk: int
) -> Iterator[list[int]]:
    try:
        cursor = store.conn.execute(_REFRESH_CANDIDATES, (cutoff,))
        while rows := cursor.fetchmany(chunk):
            job_ids = [job_id for (job_id,) in rows]
            if filter_ is not None:
                job_ids = _matching(store, filter_, job_ids)
            if job_ids:
                yield job_ids
    except SQL_ERRORS as error:
        raise QueryError(_explain(error)) from None


def _matching(store: Store, filter_: _Filter, job_ids: Sequence[int]) -> list[int]:
    """Those of `job_ids` whose latest_outputs row matches the filter. The filter runs
    in its own read-only query, and only ids of the chunk are kept from its answer."""
    marks = ", ".join("?" * len(job_ids))
    with _filtering(store, filter_):
        found = {
            job_id
            for (job_id,) in store.conn.execute(
                f"SELECT job_id FROM latest_outputs"
                f" WHERE job_id IN ({marks}) AND ({filter_.where})",
                job_ids,
            )
        }
    return [job_id for job_id in job_ids if job_id in found]
