"""The tweet ledger: every tweet ID charged against the key's quota, once, with when.

Altmetric allows 1,500,000 unique tweet IDs per key in any rolling 30 days. A row
per ID (the primary key makes a re-fetch cost only new IDs) and its charge time, in
the same transaction as the response that carried it, so the count can never drift
from what was stored. Rows older than the window are pruned as answers are written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence


class TweetLedger:
    """The `tweet_ledger` table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @staticmethod
    def charge(conn: sqlite3.Connection, tweet_ids: Sequence[int], now_s: float) -> int:
        """Charge IDs not charged yet, inside the caller's transaction; how many were new."""
        if not tweet_ids:
            return 0
        # One statement per response: SQLite walks the JSON array itself.
        return conn.execute(
            "INSERT OR IGNORE INTO tweet_ledger (tweet_id, charged_at_s)"
            " SELECT value, ? FROM json_each(?)",
            (now_s, json.dumps(tweet_ids)),
        ).rowcount

    @staticmethod
    def prune(conn: sqlite3.Connection, window_s: float, now_s: float) -> int:
        """Drop charges older than the window, inside the caller's transaction."""
        return conn.execute(
            "DELETE FROM tweet_ledger WHERE charged_at_s < ?", (now_s - window_s,)
        ).rowcount

    def count(self, window_s: float) -> int:
        """Unique tweet IDs charged within the last `window_s` seconds."""
        return int(
            self._conn.execute(
                "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?",
                (time.time() - window_s,),
            ).fetchone()[0]
        )

    def frees_at(self, window_s: float, target_used: int) -> float | None:
        """When (Unix seconds) usage falls to `target_used` as charges age out; None if
        it already has."""
        window_start_s = time.time() - window_s
        used = self._conn.execute(
            "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?", (window_start_s,)
        ).fetchone()[0]
        to_age_out = used - max(target_used, 0)
        if to_age_out <= 0:
            return None
        row = self._conn.execute(
            "SELECT charged_at_s FROM tweet_ledger WHERE charged_at_s >= ?"
            " ORDER BY charged_at_s LIMIT 1 OFFSET ?",
            (window_start_s, to_age_out - 1),
        ).fetchone()
        return float(row[0]) + window_s if row else None

    def charged_since(self, since_s: float) -> int:
        return int(
            self._conn.execute(
                "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?", (since_s,)
            ).fetchone()[0]
        )
