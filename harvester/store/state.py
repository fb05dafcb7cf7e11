"""What the running daemon says of itself (`daemon_state`): its heartbeat and its view
of the tweet quota, written every few seconds and read by `status` on a read-only
connection, so a second process can tell whether a daemon runs and how it fares."""

from __future__ import annotations

import sqlite3
import time

from harvester.model import iso_utc
from harvester.store.connection import transaction

# A daemon is called dead after this long without a heartbeat: longer than one of its
# writes may wait for another process's lock (the store's busy timeout, 60 s).
HEARTBEAT_STALE_S = 90.0


class DaemonState:
    """The `daemon_state` table: JSON values by key."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def save(self, entries: dict[str, str]) -> None:
        """Several entries (heartbeat, quota view) in one commit."""
        now = iso_utc(time.time())
        with transaction(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)",
                [(key, value, now) for key, value in entries.items()],
            )

    def load(self, key: str) -> tuple[str, str] | None:
        """(value, updated_at) of an entry, if any."""
        row = self._conn.execute(
            "SELECT value, updated_at FROM daemon_state WHERE key = ?", (key,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def forget(self, key: str) -> None:
        """Remove an entry (a finished job's saved position, say)."""
        with transaction(self._conn) as conn:
            conn.execute("DELETE FROM daemon_state WHERE key = ?", (key,))
