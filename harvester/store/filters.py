"""A `--where` expression may only narrow what its command chose.

Before SQLite sees it, it is checked to be one expression: outside quoted strings
and names it has no comment, no `;`, no parameter and no parenthesis closed that it
did not open, so it cannot close the `WHERE (...)` it is put in. SQLite then
prepares it under an authorizer that lets it read only the table it filters (and
what that view itself reads) and do nothing but read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from harvester.errors import QueryError
from harvester.store.core import Store
from harvester.store.readonly import (
    REFUSED_FUNCTIONS,
    SQL_ERRORS,
    ReadOnlyGuard,
    explain,
    lock,
)

# -- --where -------------------------------------------------------------------------------


def check_expression(where: str) -> None:
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


class FilterGuard(ReadOnlyGuard):
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
            if (arg2 or "").lower() in REFUSED_FUNCTIONS:
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
class Filter:
    """A checked `--where` over one table or view."""

    table: str
    where: str
    guard: FilterGuard

    def explain(self, error: Exception) -> str:
        if self.guard.refused is not None:
            return self.guard.refused
        return f"--where {self.where!r}: {explain(error)}"


def make_filter(store: Store, table: str, where: str) -> Filter:
    """Check `where` and learn what reading `table` alone reads (for a view: the
    tables under it, as the view itself reads them)."""
    check_expression(where)
    learner = _ReadLearner()
    # Setting an authorizer expires prepared statements, so this one is prepared
    # (and authorized) afresh even if it ran before.
    store.conn.set_authorizer(learner)
    try:
        store.conn.execute(f"SELECT * FROM {quoted(table)} LIMIT 0").fetchall()
    finally:
        lock(store)
    return Filter(table, where, FilterGuard(table, frozenset(learner.reads)))


@contextmanager
def filtering(store: Store, filter_: Filter) -> Iterator[None]:
    """Statements prepared in this block are held to the filter's guard; SQLite's
    errors come out as QueryError in words."""
    filter_.guard.refused = None
    store.conn.set_authorizer(filter_.guard)
    try:
        yield
    except SQL_ERRORS as error:
        raise QueryError(filter_.explain(error)) from None
    finally:
        lock(store)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
