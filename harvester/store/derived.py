"""Writing the derived tables (schemas m005, m006) from answers; part of the store.

The daemon's `Store.record` derives a batch of answers in the transaction that stores
them (`derive_answers`); `harvester derive` catches up (`derive_missing`) or rebuilds
(`clear_all`, then `derive_missing`). Posts are upserted with the first and last
snapshot that carried them, taking the smaller first and the larger last, so
snapshots may be derived in any order and the result is the same.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, NamedTuple

from harvester.store.aliases import add_aliases, outputs_named
from harvester.store.bodies import BODY_COLUMNS, BodyStore
from harvester.store.connection import transaction
from harvester.store.derive_pool import BatchReader, ReadBatch, StoredRow, worker_count
from harvester.store.snapshot import Answer, AnswerRows, Read, Row, read_answers

# How long reading answers may hold the GIL before pausing, and the pause (`_read_yielding`).
YIELD_EVERY_S, YIELD_PAUSE_S = 0.0005, 0.00005

# Children first: emptied in this order, the foreign keys never see an orphan.
DERIVED_TABLES = ("tweets", "posts", "score_context", "readers", "counts", "outputs")

# A snapshot is the latest of its output unless a higher response of it is already
# derived; the older latest is unflagged after the batch (_UNFLAG_OLDER). Plain `?`
# placeholders throughout (the row's job and response given again at the end): Python
# 3.12's sqlite3 warns of numbered ones (`?2`) bound from a sequence.
_INSERT_OUTPUT = f"""
    INSERT INTO outputs VALUES ({", ".join("?" * 17)},
        NOT EXISTS (SELECT 1 FROM outputs WHERE job_id = ? AND response_id > ?))
"""
_UNFLAG_OLDER = (
    "UPDATE outputs SET is_latest = 0 WHERE job_id = ? AND is_latest AND response_id < ?"
)

# A post is stored once per output with the first and last snapshots that carried it
# (the last NULL while it is the first: most posts are seen once). The smaller first
# and the larger last win, and the other columns come from the later snapshot, so
# snapshots may be derived in any order with the same result. (SET expressions all
# read the row as it was before the update.) A post's URL is stored as '' when it is
# the post's key too (`snapshot.rows_of`); the `mentions` view puts it back
# (upgrade_mentions). A tweet's
# tweeter ID comes as `tweets` keeps it (`posts.stored_author`).
_LAST = "coalesce(last_response_id, first_response_id)"
_NEWER = f"excluded.first_response_id > {_LAST}"
_SNAPSHOTS = f"""
        first_response_id = min(first_response_id, excluded.first_response_id),
        last_response_id = nullif(max({_LAST}, excluded.first_response_id),
                                  min(first_response_id, excluded.first_response_id))"""
_UPSERT_TWEET = f"""
    INSERT INTO tweets VALUES (?, ?, ?, ?, NULL)
    ON CONFLICT (job_id, tweet_id) DO UPDATE SET {_SNAPSHOTS},
        author_id = iif({_NEWER}, excluded.author_id, author_id)
"""
_UPSERT_POST = f"""
    INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
    ON CONFLICT (job_id, source, post_key) DO UPDATE SET {_SNAPSHOTS},
        url = iif({_NEWER}, excluded.url, url),
        title = iif({_NEWER}, excluded.title, title),
        posted_on = iif({_NEWER}, excluded.posted_on, posted_on),
        author_name = iif({_NEWER}, excluded.author_name, author_name),
        author_id = iif({_NEWER}, excluded.author_id, author_id)
"""


class Derived(NamedTuple):
    derived: int  # answers that now have derived rows
    problems: list[str]  # why each of the others that should have could not


def derive_answers(
    conn: sqlite3.Connection, answers: Sequence[Answer], *, yielding: bool = True
) -> Derived:
    """Derive a batch of stored answers inside the caller's transaction: every answer
    read first (`read_answers`, pausing now and then for an event loop sharing the GIL
    unless not `yielding`: `_read_yielding`), then one statement per table for the
    whole batch (`write_rows`). An answer that is not a JSON object has nothing to
    derive and is no problem; one that fails stays stored raw, for `harvester derive`
    to try again."""
    read = _read_yielding(answers) if yielding else read_answers(answers)
    derived = write_rows(conn, read.rows, read.problems)
    return Derived(derived, read.problems)


def _read_yielding(answers: Sequence[Answer]) -> Read:
    """`read_answers`, with a pause of YIELD_PAUSE_S after every YIELD_EVERY_S of it.

    Reading is Python holding the GIL, and in the daemon the event loop shares that
    GIL: woken by a socket, it waits until this thread lets go, which Python forces
    only after `sys.getswitchinterval()` (5 ms). Reading a batch of 256 answers takes
    ~25 ms, so each wake-up of the loop meanwhile cost up to 5 ms of every request in
    flight. A pause hands the GIL over at once (sleeping releases it; a bare
    `sleep(0)` would mostly take it straight back): `run --drain` at concurrency 64
    and 50 ms latency went from 0.85-0.90 of the latency bound to 0.88-0.93, as
    `store.derive = false` does."""
    rows: list[AnswerRows] = []
    problems: list[str] = []
    due_s = time.perf_counter() + YIELD_EVERY_S
    for answer in answers:
        read = read_answers((answer,))
        rows += read.rows
        problems += read.problems
        if time.perf_counter() >= due_s:
            time.sleep(YIELD_PAUSE_S)
            due_s = time.perf_counter() + YIELD_EVERY_S
    return Read(rows, problems)


def write_rows(conn: sqlite3.Connection, rows: list[AnswerRows], problems: list[str]) -> int:
    """Write the rows read, in the caller's transaction; how many answers got theirs.
    If the batch's rows fail (a value SQLite refuses), it is rolled back and written
    again an answer at a time, so one bad answer costs only itself (added to
    `problems`)."""
    conn.execute("SAVEPOINT derive_batch")
    try:
        insert_rows(conn, rows)
        derived = len(rows)
    except Exception:
        conn.execute("ROLLBACK TO derive_batch")
        derived = _insert_one_at_a_time(conn, rows, problems)
    conn.execute("RELEASE derive_batch")
    return derived


def _insert_one_at_a_time(
    conn: sqlite3.Connection, rows: list[AnswerRows], problems: list[str]
) -> int:
    derived = 0
    for answer_rows in rows:
        conn.execute("SAVEPOINT derive_one")
        try:
            insert_rows(conn, [answer_rows])
            derived += 1
        except Exception as error:
            conn.execute("ROLLBACK TO derive_one")
            problems.append(f"response {answer_rows.response_id}: {type(error).__name__}: {error}")
        conn.execute("RELEASE derive_one")
    return derived


def insert_rows(conn: sqlite3.Connection, rows: Sequence[AnswerRows]) -> None:
    """Write the derived rows of these answers, one statement per table."""
    outputs = [answer.output for answer in rows]
    conn.executemany(_INSERT_OUTPUT, [(*row, row[1], row[0]) for row in outputs])
    conn.executemany(_UNFLAG_OLDER, [(row[1], row[0]) for row in outputs])
    add_aliases(conn, outputs_named(outputs))  # shared ones marked (`store.aliases`)
    conn.executemany("INSERT INTO counts VALUES (?, ?, ?, ?, ?)", _every(rows, "counts"))
    conn.executemany("INSERT INTO readers VALUES (?, ?, ?, ?)", _every(rows, "readers"))
    conn.executemany(
        "INSERT INTO score_context VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _every(rows, "contexts")
    )
    conn.executemany(_UPSERT_TWEET, _every(rows, "tweets"))
    conn.executemany(_UPSERT_POST, _every(rows, "posts"))


def _every(rows: Sequence[AnswerRows], table: str) -> list[Row]:
    """The rows of one table, of every answer."""
    return [row for answer in rows for row in getattr(answer, table)]


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
    workers: int | None = None,
) -> tuple[int, int]:
    """Derive every stored 200 answer that has no derived rows, oldest first, in
    short transactions; (derived, skipped: not a JSON object, damaged or failing).

    Answers are read (decompressed, parsed) ahead, in worker processes when there
    are many (`derive_pool`; `workers` overrides the choice), and written here in
    order. An answer derived meanwhile by someone else is left as it is.
    """
    if workers is None:
        workers = worker_count(count_underived(conn))
    with BatchReader(bodies.dictionaries(), workers) as reader, _foreign_keys_unchecked(conn):
        return _derive_in_order(conn, reader, workers, batch_size, on_batch)


@contextmanager
def _foreign_keys_unchecked(conn: sqlite3.Connection) -> Iterator[None]:
    """Every row derived here points at a response (and its job) read in the same
    transaction, and nothing deletes those: checking each reference again took a
    tenth of the writing. The daemon's writes keep the checks."""
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _derive_in_order(
    conn: sqlite3.Connection,
    reader: BatchReader,
    workers: int,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[int, int]:
    """Read batches ahead (up to two per worker in flight) and write them in order."""
    derived = skipped = 0
    pending: deque[tuple[list[StoredRow], Future[ReadBatch]]] = deque()
    after_id = 0
    while True:
        while len(pending) <= 2 * workers and (
            rows := _underived_after(conn, after_id, batch_size)
        ):
            pending.append((rows, reader.submit(rows)))
            after_id = rows[-1][0]
        if not pending:
            return derived, skipped
        rows, future = pending.popleft()
        done = _write_batch(conn, [row[0] for row in rows], future.result())
        derived += done
        skipped += len(rows) - done
        if on_batch:
            on_batch(derived, skipped)


def _write_batch(conn: sqlite3.Connection, response_ids: list[int], batch: ReadBatch) -> int:
    """Write one batch read; how many answers got rows (none derived twice)."""
    with transaction(conn):
        already = _derived_among(conn, response_ids)
        rows = [answer for answer in batch.read.rows if answer.response_id not in already]
        return write_rows(conn, rows, list(batch.read.problems)) + len(already)


def _derived_among(conn: sqlite3.Connection, response_ids: list[int]) -> set[int]:
    found = conn.execute(
        "SELECT o.response_id FROM outputs AS o JOIN json_each(?) AS j ON o.response_id = j.value",
        (json.dumps(response_ids),),
    )
    return {row[0] for row in found}


def _underived_after(conn: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"""SELECT r.id, r.job_id, r.fetched_at, r.mode, {BODY_COLUMNS}
           FROM responses AS r JOIN bodies AS b ON b.id = r.body_id
           WHERE r.http_status = 200 AND r.id > ?
             AND NOT EXISTS (SELECT 1 FROM outputs AS o WHERE o.response_id = r.id)
           ORDER BY r.id LIMIT ?""",
        (after_id, limit),
    ).fetchall()


def clear_all(conn: sqlite3.Connection) -> int:
    """Empty the derived tables (before a rebuild); the raw store is untouched. Rows
    deleted.

    Each table is emptied whole, in a transaction of its own, with foreign keys
    unchecked (children first, so none would fail): SQLite then frees the table's
    pages without visiting its rows (its truncate optimisation), one read of the table
    instead of a B-tree delete per row and a WAL write of every page. For the rows of
    25,000 simulator answers that is 0.25 s instead of 1.5 s in batches of 2,000 keys,
    a quarter of a whole rebuild. The write lock is held meanwhile, once per table, for
    that one read: no daemon runs during a rebuild (it holds the daemon's lock), and
    another writer (an `enqueue` by hand) waits up to its 60 s busy timeout. By
    estimate, not measured: the tweets of 8 million outputs (13 GB), the largest
    table, take ~20 s to read at 700 MB/s.
    """
    deleted = 0
    with _foreign_keys_unchecked(conn):
        for table in DERIVED_TABLES:
            with transaction(conn):
                deleted += conn.execute(f"DELETE FROM {table}").rowcount
    return deleted
