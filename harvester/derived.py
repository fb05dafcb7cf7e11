"""Writing the derived tables (schema m005) from snapshots; part of the store.

Every statement here runs inside a transaction the store opened: the daemon's
`record` derives each answer as it stores it, and `harvester derive` catches up or
rebuilds. Mentions are upserted with the first and last snapshot that carried them,
taking the smaller first and the larger last, so snapshots may be derived in any
order and the result is the same.
"""

from __future__ import annotations

import sqlite3

from harvester.snapshot import Snapshot

DERIVED_TABLES = ("mentions", "score_context", "readers", "counts", "outputs")

_UPSERT_MENTION = """
    INSERT INTO mentions (job_id, source, post_key, url, title, posted_on, author_name,
                          author_id, tweet_id, first_response_id, last_response_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, source, post_key) DO UPDATE SET
        first_response_id = min(first_response_id, excluded.first_response_id),
        last_response_id = max(last_response_id, excluded.last_response_id),
        url = iif(excluded.last_response_id > last_response_id, excluded.url, url),
        title = iif(excluded.last_response_id > last_response_id, excluded.title, title),
        posted_on = iif(excluded.last_response_id > last_response_id,
                        excluded.posted_on, posted_on),
        author_name = iif(excluded.last_response_id > last_response_id,
                          excluded.author_name, author_name),
        author_id = iif(excluded.last_response_id > last_response_id,
                        excluded.author_id, author_id)
"""


def insert_snapshot(
    conn: sqlite3.Connection,
    *,
    response_id: int,
    job_id: int,
    fetched_at: str,
    mode: str,
    snapshot: Snapshot,
) -> None:
    """Write one answer's derived rows (the caller holds the transaction)."""
    ids = (response_id, job_id)
    conn.execute(
        "INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*ids, *snapshot.output, fetched_at, mode),
    )
    if snapshot.counts:
        conn.executemany(
            "INSERT INTO counts VALUES (?, ?, ?, ?, ?)", [(*ids, *row) for row in snapshot.counts]
        )
    if snapshot.readers:
        conn.executemany(
            "INSERT INTO readers VALUES (?, ?, ?, ?)", [(*ids, *row) for row in snapshot.readers]
        )
    if snapshot.contexts:
        conn.executemany(
            "INSERT INTO score_context VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*ids, *row) for row in snapshot.contexts],
        )
    if snapshot.mentions:
        conn.executemany(
            _UPSERT_MENTION,
            [(job_id, *row, response_id, response_id) for row in snapshot.mentions],
        )


def clear_derived_batch(conn: sqlite3.Connection, table: str, batch: int) -> int:
    """Delete up to `batch` outputs' (or, for mentions, jobs') rows of one derived
    table; how many rows went. In batches, each its own short transaction, because
    one DELETE of hundreds of millions of rows would hold the write lock for minutes
    (with foreign keys on, SQLite cannot simply truncate)."""
    key = "job_id" if table == "mentions" else "response_id"
    return conn.execute(
        f"DELETE FROM {table} WHERE {key} IN (SELECT DISTINCT {key} FROM {table} LIMIT ?)",
        (batch,),
    ).rowcount
