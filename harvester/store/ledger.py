"""The tweet ledger: every tweet ID charged against the key's quota, once per window,
with when.

Altmetric allows 1,500,000 unique tweet IDs per key in any rolling 30 days. Each
`Store.record` transaction that carries new IDs appends one row to `tweet_charges`: its
time, how many IDs, and the IDs (sorted, 8 bytes each). Appending a row per transaction
is sequential I/O; a row per ID in a table keyed by the ID (the ledger before m007)
dirtied a random B-tree page per ID, 10-18 us of CPU each with 2,000,000 in the window.
`tweet_ledger` is a view with one row per ID, for users' queries.

Whether an ID is charged already is answered in memory (`charged.ChargedIndex`), by
the ledger of the writing connection, loaded from the rows the first time a record
needs it. It must never disagree with the table, so it changes only once the
transaction that wrote the rows has committed (`Store.record` calls `committed`);
a transaction that never reported its commit makes the next one drop the index and
reload it. A commit by another connection changes `PRAGMA data_version`: the index is
then checked against the table's row count and last row, and reloaded if they moved.

Charges older than the window are pruned as answers are written (whole rows), and the
index counts IDs charged before the last prune as not charged.

The index (numpy) is imported by the first charge, so a reader of the ledger
(`status`) never loads numpy.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harvester.store.charged import ChargedIndex, IdArray

LOAD_CHUNK_ROWS = 2000


@dataclass
class ChargeBatch:
    """One `record` transaction's part of the ledger: what it pruned, the IDs its
    answers carried, and the row it wrote for those that were new."""

    now_s: float
    since_s: float  # charges before this count as not charged (the window's start)
    data_version: int  # PRAGMA data_version when the transaction began
    pruned_rows: int = 0
    pruned: int = 0  # tweet IDs whose charge aged out (what `record` reports)
    tweet_ids: list[int] = field(default_factory=list)
    charged: IdArray | None = None  # written by this transaction, sorted
    row_id: int = 0  # the tweet_charges row holding them
    loaded_here: bool = False  # the index was loaded inside this transaction

    def add(self, tweet_ids: Iterable[int]) -> None:
        """An answer's tweet IDs, to charge when the batch is written."""
        self.tweet_ids.extend(tweet_ids)


@dataclass
class _Loaded:
    """The in-memory index and what it mirrors of the table."""

    index: ChargedIndex
    rows: int  # rows of tweet_charges
    last_row_id: int
    data_version: int


def _shape(conn: sqlite3.Connection) -> tuple[int, int]:
    """How many rows tweet_charges has, and its last row id."""
    rows, last_row_id = conn.execute(
        "SELECT count(*), coalesce(max(id), 0) FROM tweet_charges"
    ).fetchone()
    return int(rows), int(last_row_id)


class TweetLedger:
    """The `tweet_charges` table and, for the writing connection, its in-memory index."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._loaded: _Loaded | None = None
        self._open: ChargeBatch | None = None

    def begin(self, conn: sqlite3.Connection, window_s: float | None, now_s: float) -> ChargeBatch:
        """Start a transaction's charges: prune the rows older than the window (when
        given), inside the caller's transaction."""
        if self._open is not None:  # its transaction may or may not have committed
            self._loaded = None
        data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if self._loaded and self._loaded.data_version != data_version:
            self._loaded = self._still_current(conn, self._loaded, data_version)
        since_s = -math.inf if window_s is None else now_s - window_s
        batch = ChargeBatch(now_s, since_s, data_version)
        if window_s is not None:
            counts = conn.execute(
                "DELETE FROM tweet_charges WHERE charged_at_s < ? RETURNING id_count", (since_s,)
            ).fetchall()
            batch.pruned_rows, batch.pruned = len(counts), sum(count for (count,) in counts)
        self._open = batch
        return batch

    def charge(self, conn: sqlite3.Connection, batch: ChargeBatch) -> int:
        """Write the batch's IDs not charged within the window as one row, inside the
        caller's transaction; how many they were."""
        if not batch.tweet_ids:
            return 0
        from harvester.store.charged import distinct_sorted, ids_to_blob

        ids = distinct_sorted(batch.tweet_ids)
        if self._loaded is None:
            self._loaded = self._load(conn, batch.data_version)
            batch.loaded_here = True
        new = self._loaded.index.new_ids(ids, batch.since_s)
        if len(new):
            inserted = conn.execute(
                "INSERT INTO tweet_charges (charged_at_s, id_count, tweet_ids) VALUES (?, ?, ?)",
                (batch.now_s, len(new), ids_to_blob(new)),
            )
            batch.row_id = inserted.lastrowid or 0
            batch.charged = new
        return len(new)

    def committed(self, batch: ChargeBatch) -> None:
        """The batch's transaction committed: the index takes in what it wrote."""
        if batch is not self._open:
            return
        self._open = None
        loaded = self._loaded
        if loaded is None:
            return
        loaded.data_version = batch.data_version
        loaded.index.age_out(batch.since_s)
        if not batch.loaded_here:  # else it was loaded after the prune
            loaded.rows -= batch.pruned_rows
        if batch.charged is not None:
            loaded.rows += 1
            loaded.last_row_id = batch.row_id
            loaded.index.add(batch.charged, batch.now_s)

    @staticmethod
    def _still_current(
        conn: sqlite3.Connection, loaded: _Loaded, data_version: int
    ) -> _Loaded | None:
        """Another connection committed: keep the index only if the table still has the
        rows it mirrors (ledgers append and prune rows; they never edit one)."""
        if _shape(conn) != (loaded.rows, loaded.last_row_id):
            return None
        loaded.data_version = data_version
        return loaded

    @staticmethod
    def _load(conn: sqlite3.Connection, data_version: int) -> _Loaded:
        """The index of every row in the table (all inside the window once pruned)."""
        from harvester.store.charged import ChargedIndex

        rows, last_row_id = _shape(conn)
        expected = conn.execute("SELECT total(id_count) FROM tweet_charges").fetchone()[0]
        cursor = conn.execute(
            "SELECT charged_at_s, tweet_ids FROM tweet_charges ORDER BY charged_at_s, id"
        )
        chunks = iter(partial(cursor.fetchmany, LOAD_CHUNK_ROWS), [])
        index = ChargedIndex.from_charges(chunks, int(expected))
        return _Loaded(index, rows, last_row_id, data_version)

    def count(self, window_s: float) -> int:
        """Unique tweet IDs charged within the last `window_s` seconds."""
        return self.charged_since(time.time() - window_s)

    def frees_at(self, window_s: float, target_used: int) -> float | None:
        """When (Unix seconds) usage falls to `target_used` as charges age out; None if
        it already has."""
        window_start_s = time.time() - window_s
        to_age_out = self.charged_since(window_start_s) - max(target_used, 0)
        if to_age_out <= 0:
            return None
        # The charge holding the to_age_out-th oldest ID: a running sum in time order.
        row = self._conn.execute(
            "SELECT charged_at_s FROM (SELECT charged_at_s, sum(id_count) OVER"
            " (ORDER BY charged_at_s ROWS UNBOUNDED PRECEDING) AS aged"
            " FROM tweet_charges WHERE charged_at_s >= ?)"
            " WHERE aged >= ? ORDER BY charged_at_s LIMIT 1",
            (window_start_s, to_age_out),
        ).fetchone()
        return float(row[0]) + window_s if row else None

    def charged_since(self, since_s: float) -> int:
        """Tweet IDs charged at or after `since_s` (Unix seconds)."""
        return int(
            self._conn.execute(
                "SELECT coalesce(sum(id_count), 0) FROM tweet_charges WHERE charged_at_s >= ?",
                (since_s,),
            ).fetchone()[0]
        )
