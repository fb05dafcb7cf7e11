"""The read-only lock on a store connection: SQL typed by a user (`query`, a
`--where`) can read anything and change nothing, and what SQLite refuses comes back
in words. The connection is opened `mode=ro`; on top of that `query_only` is on and an
authorizer refuses ATTACH, pragmas that set something, and functions that load code."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from harvester.errors import QueryError
from harvester.store.core import Store

FETCH_ROWS = 1_000

SQL_ERRORS = (sqlite3.Error, sqlite3.Warning)


# -- the read-only lock ------------------------------------------------------------------


def lock_read_only(store: Store) -> None:
    """No statement on this connection may write, even to a TEMP database, reach
    another file (ATTACH), or lift the lock itself. Calling it again is harmless."""
    lock(store)


def lock(store: Store) -> ReadOnlyGuard:
    if not store.read_only:
        raise ValueError("lock_read_only wants a store opened read-only")
    # The guard refuses pragmas that set something, this one included: set the lock
    # with no authorizer in place, then put the guard (back).
    store.conn.set_authorizer(None)
    store.conn.execute("PRAGMA query_only = ON")
    guard = ReadOnlyGuard()
    store.conn.set_authorizer(guard)
    return guard


class ReadOnlyGuard:
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
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in REFUSED_FUNCTIONS:
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
REFUSED_FUNCTIONS = frozenset(("load_extension", "fts3_tokenizer"))


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


def explain(error: Exception, guard: ReadOnlyGuard | None = None) -> str:
    """SQLite's complaint in words a user can act on."""
    if guard is not None and guard.refused is not None:
        return guard.refused
    text = str(error)
    lowered = text.lower()
    for needle, words in _SQLITE_WORDS:
        if needle in lowered:
            return words
    return text


def fetch(cursor: sqlite3.Cursor, explain: Callable[[Exception], str]) -> Iterator[tuple[Any, ...]]:
    try:
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch
    except SQL_ERRORS as error:
        raise QueryError(explain(error)) from None
