"""The store as a Parquet dataset reads it (`harvester.dataset`): the mark a dataset keeps
of its store (who the store is, its schema, the last response exported) and, since such
a mark, the rows of each table, in spans of snapshots of one month each.

Everything is read inside `reading`, one read transaction: every table comes from one
state of the store while a daemon goes on writing (WAL: a reader never holds the
writer, and the writer never waits for it).

A span is a run of consecutive snapshots (response ids) fetched in one calendar month,
at most SPAN_SNAPSHOTS long: the dataset writes each span's rows into that month's
folder, so no row needs a month of its own computed and sorted, and a query reads one
span by its key range (an index or the table's own rowid order). The ids come in
fetch order, so a span ends at a month's change or at its length.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

SPAN_SNAPSHOTS = 5_000  # snapshots a span holds at most (its rows: ~80 per snapshot)
FETCH_ROWS = 5_000  # rows per fetchmany: Python objects for them are held at once

Chunk = list[tuple[Any, ...]]
SpanSource = Literal["responses", "outputs", "latest"]

# (the month's first characters of `fetched_at`: ISO 8601 UTC text, `2026-11-21T...`)
_SPAN_IDS: dict[SpanSource, str] = {
    "responses": "SELECT id, substr(fetched_at, 1, 7) FROM responses WHERE id > ? ORDER BY id",
    "outputs": (
        "SELECT response_id, substr(fetched_at, 1, 7) FROM outputs"
        " WHERE response_id > ? ORDER BY response_id"
    ),
    "latest": (
        "SELECT response_id, substr(fetched_at, 1, 7) FROM outputs"
        " WHERE is_latest AND response_id > ? ORDER BY response_id"
    ),
}

# The columns of `responses` but `body_id`'s bytes, which stay in the store.
RESPONSE_COLUMNS = (
    "id", "job_id", "http_status", "sha256", "size_bytes", "request_params", "mode",
    "endpoint", "fetched_at", "body_id",
)  # fmt: skip

# The columns of `outputs` but `is_latest`, which a newer snapshot changes: a dataset
# says which snapshot is latest with its `superseded` marks instead.
OUTPUT_COLUMNS = (
    "response_id", "job_id", "altmetric_id", "doi", "pmid", "arxiv_id", "identifiers",
    "title", "journal", "pubdate", "output_type", "score", "score_history", "posts_count",
    "first_seen_at", "fetched_at", "mode",
)  # fmt: skip

# A plain tweet as `tweets` holds it, beside the output's latest snapshot then: the
# `mentions` view's twitter rows are these (source 'twitter', the tweet ID as the key,
# no URL, title, date or author name), which the dataset completes in Arrow rather than
# have SQLite make a string of each (upgrade_mentions.MENTIONS_VIEW).
TWEET_COLUMNS = (
    "response_id",
    "job_id",
    "tweet_id",
    "author_id",
    "first_response_id",
    "last_response_id",
)
# Every other post, as the `mentions` view gives it, beside the same snapshot.
MENTION_COLUMNS = (
    "response_id", "job_id", "source", "post_key", "url", "title", "posted_on",
    "author_name", "author_id", "tweet_id", "first_response_id", "last_response_id",
)  # fmt: skip

_OF_SPAN = "BETWEEN ? AND ?"
_SPAN_ROWS: dict[str, str] = {
    "responses": f"SELECT {', '.join(RESPONSE_COLUMNS)} FROM responses WHERE id {_OF_SPAN}",
    "outputs": f"SELECT {', '.join(OUTPUT_COLUMNS)} FROM outputs WHERE response_id {_OF_SPAN}",
    "counts": f"SELECT * FROM counts WHERE response_id {_OF_SPAN}",
    "readers": f"SELECT * FROM readers WHERE response_id {_OF_SPAN}",
    "score_context": f"SELECT * FROM score_context WHERE response_id {_OF_SPAN}",
    "latest_outputs": f"SELECT * FROM latest_outputs WHERE response_id {_OF_SPAN}",
    "outputs_wide": f"SELECT * FROM outputs_wide WHERE response_id {_OF_SPAN}",
    "tweets": (
        "SELECT o.response_id, t.job_id, t.tweet_id, CAST(t.author_id AS TEXT),"
        " t.first_response_id, coalesce(t.last_response_id, t.first_response_id)"
        " FROM outputs AS o JOIN tweets AS t ON t.job_id = o.job_id"
        f" WHERE o.is_latest AND o.response_id {_OF_SPAN}"
    ),
    "posts": (
        "SELECT o.response_id, p.job_id, p.source, p.post_key,"
        " iif(p.url = '', p.post_key, p.url), p.title, p.posted_on, p.author_name,"
        " p.author_id, p.tweet_id, p.first_response_id,"
        " coalesce(p.last_response_id, p.first_response_id)"
        " FROM outputs AS o JOIN posts AS p ON p.job_id = o.job_id"
        f" WHERE o.is_latest AND o.response_id {_OF_SPAN}"
    ),
}

# Each job whose latest snapshot is newer than the mark, with the snapshot that was its
# latest at the mark: that one is superseded (outputs_job serves the lookup).
_SUPERSEDED = """
    SELECT was, job_id, response_id FROM (
        SELECT (SELECT max(p.response_id) FROM outputs AS p
                WHERE p.job_id = o.job_id AND p.response_id <= ?) AS was,
               o.job_id, o.response_id
        FROM outputs AS o WHERE o.is_latest AND o.response_id > ?)
    WHERE was IS NOT NULL ORDER BY response_id"""


@dataclass(frozen=True, slots=True)
class StoreMark:
    """Where a store stands, for a dataset to be checked against and to keep."""

    identity: str  # the store's own: the first migration's name and time, hashed
    schema: str  # the last migration applied
    watermark: int  # the last response stored (0: none)
    outputs_through: int  # snapshots derived at or below the watermark


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive snapshots fetched in one month: `first` to `last`, inclusive."""

    month: str  # YYYY-MM
    first: int
    last: int


@contextmanager
def reading(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around the block: one state of the store, whatever is
    written meanwhile. Never a write lock."""
    conn.execute("BEGIN")  # deferred: the first read takes the snapshot
    try:
        yield
    finally:
        conn.execute("ROLLBACK")  # nothing was written; ends the read


def store_mark(conn: sqlite3.Connection) -> StoreMark:
    first = conn.execute(
        "SELECT name, applied_at FROM _sqlite_migrations ORDER BY id LIMIT 1"
    ).fetchone()
    last = conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id DESC LIMIT 1").fetchone()
    born = "" if first is None else f"{first[0]} {first[1]}"
    watermark = int(conn.execute("SELECT coalesce(max(id), 0) FROM responses").fetchone()[0])
    return StoreMark(
        hashlib.sha256(born.encode()).hexdigest()[:32],
        "" if last is None else str(last[0]),
        watermark,
        outputs_through(conn, watermark),
    )


def outputs_through(conn: sqlite3.Connection, watermark: int) -> int:
    """Snapshots derived at or below `watermark`: one that is derived later (`harvester
    derive` after `store.derive = false`) changes it, and a dataset past it would miss
    its rows."""
    found = conn.execute("SELECT count(*) FROM outputs WHERE response_id <= ?", (watermark,))
    return int(found.fetchone()[0])


def declared(conn: sqlite3.Connection, table: str) -> dict[str, str]:
    """Each column of a table or view with the type SQLite declares for it ('' for
    none): a view's columns take theirs from its first SELECT."""
    return {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info({table})")}


def spans(
    conn: sqlite3.Connection, source: SpanSource, since: int, size: int = SPAN_SNAPSHOTS
) -> Iterator[Span]:
    """The snapshots after `since` (responses, derived outputs, or the latest of each
    output) in spans of one month and at most `size` snapshots."""
    cursor = conn.execute(_SPAN_IDS[source], (since,))
    span: list[Any] | None = None  # [month, first, last, count]
    while chunk := cursor.fetchmany(FETCH_ROWS):
        for snapshot, month in chunk:
            if span is not None and (span[0] != month or span[3] == size):
                yield Span(span[0], span[1], span[2])
                span = None
            if span is None:
                span = [month, snapshot, snapshot, 0]
            span[2] = snapshot
            span[3] += 1
    if span is not None:
        yield Span(span[0], span[1], span[2])


def span_rows(conn: sqlite3.Connection, table: str, span: Span) -> Iterator[Chunk]:
    """The rows of `table` (a dataset table, or `tweets` and `posts` for its mentions)
    whose snapshot lies in `span`, in chunks."""
    cursor = conn.execute(_SPAN_ROWS[table], (span.first, span.last))
    while chunk := cursor.fetchmany(FETCH_ROWS):
        yield chunk


def superseded(conn: sqlite3.Connection, since: int) -> Iterator[Chunk]:
    """(response_id, job_id, superseded_by): each output's latest snapshot at `since`
    that a later one has replaced since."""
    if not since:
        return
    cursor = conn.execute(_SUPERSEDED, (since, since))
    while chunk := cursor.fetchmany(FETCH_ROWS):
        yield chunk


def all_rows(conn: sqlite3.Connection, table: str) -> Iterator[Chunk]:
    """Every row of a table that a dataset copies whole (`jobs`), in key order."""
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
    while chunk := cursor.fetchmany(FETCH_ROWS):
        yield chunk
