"""Which tables and views of a store a user may read by name (`export --table`, the
notebook's `tables()`, a completion's TAB): every one but SQLite's and the
migrations' own bookkeeping. On a plain connection, so that a TAB can ask it
without opening a `Store`."""

from __future__ import annotations

import sqlite3


def exportable_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables and views by name, sorted."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
        )
        if not name.startswith(("sqlite_", "_sqlite_"))
    ]
