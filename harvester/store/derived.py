"""Writing the derived tables (schema m005) from answers; part of the store.

The daemon's `Store.record` derives each answer in the transaction that stores it
(`derive_answer`); `harvester derive` catches up (`derive_missing`) or rebuilds
(`clear_all`, then `derive_missing`). Mentions are upserted with the first and last
snapshot that carried them, taking the smaller first and the larger last, so
snapshots may be derived in any order and the result is the same.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from harvester.errors import BodyCorrupt
from harvester.store.bodies import BODY_COLUMNS, BodyStore
from harvester.store.connection import transaction
from harvester.store.snapshot import Snapshot, snapshot_of

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


def derive_answer(
    conn: sqlite3.Connection,
    *,
    response_id: int,
    job_id: int,
    fetched_at: str,
    mode: str,
    body: bytes,
) -> str | None:
    """Derive one stored 200 answer, in a savepoint of the caller's transaction; the
    problem, if it could not be (the answer stays stored raw either way). An answer
    that is not a JSON object has nothing to derive and is no problem."""
    conn.execute("SAVEPOINT derive")
    problem = None
    try:
        snapshot = snapshot_of(body)
        if snapshot is not None:
            insert_snapshot(
                conn,
                response_id=response_id,
                job_id=job_id,
                fetched_at=fetched_at,
                mode=mode,
                snapshot=snapshot,
            )
    except Exception as error:
        conn.execute("ROLLBACK TO derive")
        problem = f"response {response_id}: {type(error).__name__}: {error}"
    conn.execute("RELEASE derive")
    return problem


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
    is_latest = _take_latest(conn, response_id, job_id)
    conn.execute(
        "INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*ids, *snapshot.output, fetched_at, mode, is_latest),
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


def _take_latest(conn: sqlite3.Connection, response_id: int, job_id: int) -> bool:
    """Whether this snapshot is its output's latest; if so, the previous latest is
    no longer. Decided by response id, so snapshots may arrive in any order."""
    newer = conn.execute(
        "SELECT 1 FROM outputs WHERE job_id = ? AND response_id > ? LIMIT 1",
        (job_id, response_id),
    ).fetchone()
    if newer is not None:
        return False
    conn.execute("UPDATE outputs SET is_latest = 0 WHERE job_id = ? AND is_latest", (job_id,))
    return True


def count_underived(conn: sqlite3.Connection) -> int:
    """Stored 200 answers that have no derived rows (yet)."""
    return int(
        conn.execute(
            """SELECT count(*) FROM responses AS r WHERE r.http_status = 200
               AND NOT EXISTS (SELECT 1 FROM outputs AS o WHERE o.response_id = r.id)"""
        ).fetchone()[0]
    )


def derive_missing(
    conn: sqlite3.Connection,
    bodies: BodyStore,
    on_batch: Callable[[int, int], None] | None = None,
    batch_size: int = 500,
) -> tuple[int, int]:
    """Derive every stored 200 answer that has no derived rows, oldest first, in
    short transactions; (derived, skipped: not a JSON object, damaged or failing)."""
    derived = skipped = 0
    after_id = 0
    while rows := _underived_after(conn, after_id, batch_size):
        with transaction(conn):
            for response_id, job_id, fetched_at, mode, *stored in rows:
                if _is_derived(conn, response_id):
                    continue  # derived meanwhile, by the daemon or another `derive`
                try:
                    body = bodies.decompress(*stored)
                except BodyCorrupt:
                    skipped += 1
                    continue
                problem = derive_answer(
                    conn,
                    response_id=response_id,
                    job_id=job_id,
                    fetched_at=fetched_at,
                    mode=mode,
                    body=body,
                )
                if problem is None and _is_derived(conn, response_id):
                    derived += 1
                else:
                    skipped += 1
        after_id = rows[-1][0]
        if on_batch:
            on_batch(derived, skipped)
    return derived, skipped


def _underived_after(conn: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"""SELECT r.id, r.job_id, r.fetched_at, r.mode, {BODY_COLUMNS}
           FROM responses AS r JOIN bodies AS b ON b.id = r.body_id
           WHERE r.http_status = 200 AND r.id > ?
             AND NOT EXISTS (SELECT 1 FROM outputs AS o WHERE o.response_id = r.id)
           ORDER BY r.id LIMIT ?""",
        (after_id, limit),
    ).fetchall()


def _is_derived(conn: sqlite3.Connection, response_id: int) -> bool:
    found = conn.execute("SELECT 1 FROM outputs WHERE response_id = ?", (response_id,))
    return found.fetchone() is not None


def clear_all(conn: sqlite3.Connection, batch: int = 2_000) -> int:
    """Empty the derived tables (before a rebuild); the raw store is untouched. In
    batches, each its own short transaction: one DELETE of hundreds of millions of
    rows would hold the write lock for minutes (with foreign keys on, SQLite cannot
    simply truncate). Rows deleted."""
    deleted = 0
    for table in DERIVED_TABLES:
        key = "job_id" if table == "mentions" else "response_id"
        while True:
            with transaction(conn):
                removed = conn.execute(
                    f"DELETE FROM {table} WHERE {key} IN"
                    f" (SELECT DISTINCT {key} FROM {table} LIMIT ?)",
                    (batch,),
                ).rowcount
            deleted += removed
            if removed == 0:
                break
    return deleted
