"""The SQLite store: the job queue, the raw responses and the daemon's state.

SQL lives here and in the store's other modules: `schema` (migrations), `bodystore`
(compressed bodies), `derived` (the derived tables) and `tables` (read-only query
and export).

Promises, each kept by one statement or one short transaction:
- `add_jobs` queues identifiers once each; re-adding is a no-op, never a reset.
- `claim` moves runnable jobs to `in_progress` under a fresh lease token, atomically.
- `record` writes outcomes; an outcome whose lease token no longer matches (the job
  was released or re-claimed meanwhile) is discarded, so one claim stores at most one
  response.
- Raw bodies are stored with the sha256 of the bytes as received, once per distinct
  answer, compressed; they decompress to exactly those bytes, and nothing rewrites them.

Times are ISO 8601 UTC text of fixed width (`2026-11-21T13:53:09.123456Z`), so they
sort and compare as strings and read well in Datasette and the sqlite3 shell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlite_utils import Database

from harvester.identifiers import Identifier
from harvester.store import derived
from harvester.store.bodies import BODY_COLUMNS, BodyStore
from harvester.store.codec import BodyCorrupt
from harvester.store.schema import FINAL_STATES as FINAL_STATES
from harvester.store.schema import JOB_STATES as JOB_STATES
from harvester.store.schema import migrations

_second_text: tuple[int, str] = (-1, "")


def iso_utc(timestamp_s: float) -> str:
    """Fixed-width ISO 8601 UTC text for a Unix time.

    Called for every response, so the text of the current second is reused."""
    global _second_text
    whole_s = int(timestamp_s // 1)
    cached_s, text = _second_text  # one read: the store thread calls this too
    if cached_s != whole_s:
        text = datetime.fromtimestamp(whole_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (whole_s, text)
    micros = min(int((timestamp_s - whole_s) * 1_000_000), 999_999)
    return f"{text}.{micros:06d}Z"


def parse_iso(text: str) -> float:
    """The Unix time of a timestamp written by `iso_utc`."""
    return datetime.fromisoformat(text).timestamp()


def pending_migrations(path: Path) -> list[str]:
    """The schema migrations opening `path` for writing would run (none for a new or
    current store). Some take minutes on a large store: the daemon tells systemd."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        database = Database(conn, execute_plugins=False)
        if "_sqlite_migrations" not in database.table_names():
            return []
        return [migration.name for migration in migrations.pending(database)]
    except sqlite3.DatabaseError:
        return []  # opening it for real reports what is wrong
    finally:
        conn.close()


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked."""


_SQLITE_ADVICE = (
    ("database is locked", "the store stayed locked by another process for 60 s: try again"),
    ("database or disk is full", "the disk holding the store is full: free some space"),
    ("disk i/o error", "the disk failed while reading or writing the store"),
    ("file is not a database", "the store file is not an SQLite database"),
    ("database disk image is malformed", "the store file is damaged (see `harvester verify`)"),
    ("unable to open database", "cannot open the store: check the path and its permissions"),
    ("readonly database", "the store is read-only for this user: check the file's permissions"),
    ("not authorized", "SQLite refused the statement: only reads are allowed here"),
    ("interrupted", "interrupted"),
)


def explain_sqlite_error(error: Exception) -> str:
    """SQLite's terse message, in words a user can act on (SQLite's own kept after)."""
    text = str(error)
    for fragment, advice in _SQLITE_ADVICE:
        if fragment in text.lower():
            return f"{advice} ({text})"
    return f"the store failed: {text}"


def _check_store_path(path: Path, *, must_exist: bool) -> None:
    """A mistyped path must never become a new, empty store: only `enqueue` creates
    one, and only in a directory that already exists."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file")
    if must_exist and not path.exists():
        raise StoreError(f"no store at {path} (check --db or store.path; `enqueue` creates one)")
    if not path.parent.is_dir():
        raise StoreError(f"no directory {path.parent} for the store {path.name}")


def _check_is_store(path: Path, tables: list[str], *, must_exist: bool) -> None:
    """Refuse someone else's database (our migrations would add tables to it) and an
    empty file where a store was expected."""
    if not tables and not must_exist:
        return  # a new store
    if not {"jobs", "_sqlite_migrations"} <= set(tables):
        raise StoreError(f"{path} is not a harvester store (it has no jobs or migrations table)")


class ClaimedJob(NamedTuple):
    id: int
    id_type: str
    identifier: str
    attempts: int
    lease_token: str
    needs_full: bool = False  # queued by backfill: fetch only in full mode


class StoredResponse(NamedTuple):
    """A response to store. Its sha256 is computed by the store as it writes the bytes
    (on the store's thread: hashlib releases the GIL, so the event loop never pays)."""

    http_status: int
    body: bytes
    request_params: str  # JSON of the query parameters sent, never the key
    mode: str
    fetched_at: str
    tweet_ids: tuple[int, ...] = ()  # charged to the quota ledger with the response


class RecordResult(NamedTuple):
    written: int  # outcomes that still held their lease
    charged: int  # tweet IDs newly charged to the ledger
    pruned: int  # ledger rows that aged out of the window
    underived: tuple[str, ...] = ()  # why answers stored raw could not be derived


class JobOutcome(NamedTuple):
    """What became of one claimed job, ready to be written."""

    job_id: int
    lease_token: str
    state: str
    count_attempt: bool
    next_attempt_at: str | None = None
    error: str | None = None
    response: StoredResponse | None = None


@dataclass(frozen=True, slots=True)
class EnqueueCounts:
    added: int
    already_queued: int


class Store:
    """One connection to the store file. Use it from one thread at a time (the daemon
    gives it a thread of its own so SQLite never blocks the event loop)."""

    def __init__(
        self, path: Path, *, read_only: bool = False, must_exist: bool = False, derive: bool = True
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.derive = derive  # fill the derived tables in `record`
        self._underived: list[str] = []
        _check_store_path(path, must_exist=read_only or must_exist)
        try:
            self.conn = self._connect(path, read_only)
            self.db = Database(self.conn, execute_plugins=False)
            _check_is_store(path, self.db.table_names(), must_exist=read_only or must_exist)
            if not read_only:
                self.db.enable_wal()
                migrations.apply(self.db)
            elif migrations.pending(self.db):
                raise StoreError(
                    f"{path} was written by an older version: run any writing command "
                    "(e.g. `harvester derive`) once to upgrade it"
                )
            self.bodies = BodyStore(self.conn, self.transaction, writable=not read_only)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open store {path}: {explain_sqlite_error(error)}") from None

    @staticmethod
    def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
        if read_only:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, check_same_thread=False)
        # Autocommit: each statement is its own transaction unless we open one explicitly.
        conn.isolation_level = None
        # Long enough to wait out an admin command's transaction (enqueue, backfill).
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA foreign_keys = ON")
        # WAL + NORMAL: a crash never corrupts; a power cut may undo the last commits,
        # which only returns those jobs to the queue.
        conn.execute("PRAGMA synchronous = NORMAL")
        if not read_only:
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: the unique index stays hot
            # Savepoints (one per derived answer) journal the pages they touch: in
            # memory that costs ~20 us an answer, in a temp file ~250 us. Readers keep
            # temp files, so a user's huge ORDER BY does not fill the memory.
            conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def close(self) -> None:
        self.conn.close()

    def has_jobs(self) -> bool:
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM jobs)").fetchone()[0])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock up front."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- the queue -------------------------------------------------------------------

    def add_jobs(
        self,
        identifiers: Iterable[Identifier],
        *,
        priority: int = 0,
        batch_size: int = 200_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> EnqueueCounts:
        """Queue identifiers as pending jobs; those already queued are left as they are."""
        added = seen = 0
        batch: list[tuple[str, str]] = []
        for identifier in identifiers:
            batch.append(identifier)
            if len(batch) >= batch_size:
                added += self._insert_jobs(batch, priority)
                seen += len(batch)
                batch.clear()
                if on_batch:
                    on_batch(seen)
        if batch:
            added += self._insert_jobs(batch, priority)
            seen += len(batch)
            if on_batch:
                on_batch(seen)
        return EnqueueCounts(added=added, already_queued=seen - added)

    def _insert_jobs(self, batch: list[Identifier], priority: int) -> int:
        """Insert one batch: staged in a TEMP table, then merged in one sorted statement.

        Staging takes no lock on the store; the merge runs in SQLite's own loop and
        reaches the unique index in key order instead of at random pages, so a
        running daemon waits a fraction of a second per batch. Jobs queued together
        therefore run in identifier order; --priority is the way to order work.
        """
        now = iso_utc(time.time())
        conn = self.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (id_type TEXT, identifier TEXT)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO temp.incoming VALUES (?, ?)", batch)
        conn.execute("COMMIT")
        try:
            with self.transaction():
                before = conn.total_changes
                conn.execute(
                    "INSERT OR IGNORE INTO jobs (id_type, identifier, priority, next_attempt_at,"
                    " created_at, updated_at) SELECT id_type, identifier, ?, ?, ?, ?"
                    " FROM temp.incoming ORDER BY id_type, identifier",
                    (priority, now, now, now),
                )
                return conn.total_changes - before
        finally:
            conn.execute("DELETE FROM temp.incoming")

    def claim(self, limit: int, lease_s: float, *, backfill: bool = False) -> list[ClaimedJob]:
        """Atomically lease up to `limit` runnable jobs, highest priority and oldest first.

        Backfill jobs (which want full mode) are claimed only when `backfill` is true,
        and after the ordinary ones.
        """
        claimed = self._claim_from("jobs_runnable", limit, lease_s)
        if backfill and len(claimed) < limit:
            claimed += self._claim_from("jobs_backfill", limit - len(claimed), lease_s)
        return claimed

    def _claim_from(self, index: str, limit: int, lease_s: float) -> list[ClaimedJob]:
        now_s = time.time()
        token = secrets.token_hex(8)
        needs_full = 1 if index == "jobs_backfill" else 0
        rows = self.conn.execute(
            f"""UPDATE jobs SET state = 'in_progress', lease_token = :token,
                   lease_expires_at = :expires, updated_at = :now
               WHERE id IN (SELECT id FROM jobs INDEXED BY {index}
                            WHERE state = 'pending' AND needs_full = {needs_full}
                              AND next_attempt_at <= :now
                            ORDER BY priority DESC, next_attempt_at LIMIT :limit)
               RETURNING id, id_type, identifier, attempts""",
            {
                "token": token,
                "expires": iso_utc(now_s + lease_s),
                "now": iso_utc(now_s),
                "limit": limit,
            },
        ).fetchall()
        return [ClaimedJob(*row, token, bool(needs_full)) for row in rows]

    def record(
        self, outcomes: Sequence[JobOutcome], ledger_window_s: float | None = None
    ) -> RecordResult:
        """Write outcomes, and charge their tweet IDs, in one transaction.

        With `ledger_window_s`, ledger rows older than the window are pruned first, so
        every row left is inside it and an ID already there costs nothing again.
        """
        now_s = time.time()
        now = iso_utc(now_s)
        written = charged = pruned = 0
        self._underived = []
        with self.transaction() as conn:
            if ledger_window_s is not None:
                pruned = conn.execute(
                    "DELETE FROM tweet_ledger WHERE charged_at_s < ?", (now_s - ledger_window_s,)
                ).rowcount
            for outcome in outcomes:
                if self._apply_outcome(conn, outcome, now):
                    written += 1
                    charged += self._charge(conn, outcome.response, now_s)
        self.bodies.train_if_due()
        return RecordResult(written, charged, pruned, tuple(self._underived))

    @staticmethod
    def _charge(conn: sqlite3.Connection, response: StoredResponse | None, now_s: float) -> int:
        if response is None or not response.tweet_ids:
            return 0
        # One statement per response: SQLite walks the JSON array itself.
        return conn.execute(
            "INSERT OR IGNORE INTO tweet_ledger (tweet_id, charged_at_s)"
            " SELECT value, ? FROM json_each(?)",
            (now_s, json.dumps(response.tweet_ids)),
        ).rowcount

    def _apply_outcome(self, conn: sqlite3.Connection, outcome: JobOutcome, now: str) -> bool:
        response = outcome.response
        full_response = response is not None and response.mode == "full"
        cursor = conn.execute(
            """UPDATE jobs SET state = ?, attempts = attempts + ?,
                   next_attempt_at = coalesce(?, next_attempt_at), last_error = ?,
                   lease_token = NULL, lease_expires_at = NULL, updated_at = ?,
                   needs_full = needs_full AND NOT ?
               WHERE id = ? AND lease_token = ? AND state = 'in_progress'""",
            (
                outcome.state,
                int(outcome.count_attempt),
                outcome.next_attempt_at,
                outcome.error,
                now,
                full_response,
                outcome.job_id,
                outcome.lease_token,
            ),
        )
        if cursor.rowcount != 1:
            return False
        if response is not None:
            self._insert_response(conn, outcome.job_id, response)
        return True

    def _insert_response(
        self, conn: sqlite3.Connection, job_id: int, response: StoredResponse
    ) -> None:
        """The response, its body (once per distinct bytes) and its derived rows."""
        sha256 = hashlib.sha256(response.body).hexdigest()
        body_id = self.bodies.put(response.body, sha256)
        cursor = conn.execute(
            """INSERT INTO responses (job_id, http_status, sha256, size_bytes,
                   request_params, mode, fetched_at, body_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                job_id,
                response.http_status,
                sha256,
                len(response.body),
                response.request_params,
                response.mode,
                response.fetched_at,
                body_id,
            ),
        )
        if response.http_status == 200 and self.derive:
            problem = derived.derive_answer(
                conn,
                response_id=int(cursor.lastrowid or 0),
                job_id=job_id,
                fetched_at=response.fetched_at,
                mode=response.mode,
                body=response.body,
            )
            if problem:
                self._underived.append(problem)

    # -- the tweet quota -------------------------------------------------------------

    def ledger_count(self, window_s: float) -> int:
        """Unique tweet IDs charged within the last `window_s` seconds."""
        return self.conn.execute(
            "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?", (time.time() - window_s,)
        ).fetchone()[0]

    def ledger_frees_at(self, window_s: float, target_used: int) -> float | None:
        """When (Unix seconds) usage falls to `target_used` as charges age out; None if
        it already has."""
        window_start_s = time.time() - window_s
        used = self.conn.execute(
            "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?", (window_start_s,)
        ).fetchone()[0]
        to_age_out = used - max(target_used, 0)
        if to_age_out <= 0:
            return None
        row = self.conn.execute(
            "SELECT charged_at_s FROM tweet_ledger WHERE charged_at_s >= ?"
            " ORDER BY charged_at_s LIMIT 1 OFFSET ?",
            (window_start_s, to_age_out - 1),
        ).fetchone()
        return row[0] + window_s if row else None

    def ledger_charged_since(self, since_s: float) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM tweet_ledger WHERE charged_at_s >= ?", (since_s,)
        ).fetchone()[0]

    def queue_backfill(self) -> int:
        """Queue every done job whose latest response is degraded for a full re-fetch."""
        now = iso_utc(time.time())
        cursor = self.conn.execute(
            """UPDATE jobs SET state = 'pending', needs_full = 1, attempts = 0,
                   next_attempt_at = :now, last_error = NULL, updated_at = :now
               WHERE state = 'done'
                 AND id IN (SELECT job_id FROM responses INDEXED BY responses_degraded
                            WHERE mode != 'full')
                 AND (SELECT mode FROM responses WHERE job_id = jobs.id
                      ORDER BY id DESC LIMIT 1) != 'full'""",
            {"now": now},
        )
        return cursor.rowcount

    def save_states(self, entries: dict[str, str]) -> None:
        """What the daemon says of itself (heartbeat, quota view), in one commit."""
        now = iso_utc(time.time())
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)",
                [(key, value, now) for key, value in entries.items()],
            )

    def load_state(self, key: str) -> tuple[str, str] | None:
        """(value, updated_at) of a daemon state entry, if any."""
        row = self.conn.execute(
            "SELECT value, updated_at FROM daemon_state WHERE key = ?", (key,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def release(self, claims: Iterable[ClaimedJob]) -> int:
        """Return claimed jobs to `pending` without counting an attempt."""
        pairs = [(claim.id, claim.lease_token) for claim in claims]
        now = iso_utc(time.time())
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_at = NULL,"
                f" updated_at = '{now}' WHERE id = ? AND lease_token = ? AND state = 'in_progress'",
                pairs,
            )
            return conn.total_changes - before

    def requeue_leased(self, *, expired_only: bool, keep_tokens: Iterable[str] = ()) -> int:
        """Return in-progress jobs to `pending`: all of them (a crashed run's), or only
        those whose lease expired; never those leased under `keep_tokens` (the caller's
        own claims, however long they wait for their turn)."""
        now = iso_utc(time.time())
        condition = "AND lease_expires_at <= :now" if expired_only else ""
        cursor = self.conn.execute(
            "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_at = NULL,"
            f" updated_at = :now WHERE state = 'in_progress' {condition}"
            " AND lease_token NOT IN (SELECT value FROM json_each(:keep))",
            {"now": now, "keep": json.dumps(sorted(keep_tokens))},
        )
        return cursor.rowcount

    def retry_jobs(self, state: str, batch_size: int = 20_000) -> int:
        """Put every job in `state` back to `pending` with a fresh attempt budget.

        In batches, each its own short transaction, so a running daemon never waits
        long for the write lock however many jobs there are.
        """
        now = iso_utc(time.time())
        total = 0
        while True:
            changed = self.conn.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = :now,"
                " updated_at = :now WHERE id IN (SELECT id FROM jobs WHERE state = :state"
                " LIMIT :batch)",
                {"now": now, "state": state, "batch": batch_size},
            ).rowcount
            total += changed
            if changed < batch_size:
                return total

    def requeue_done_jobs(self, job_ids: Sequence[int], batch_size: int = 5_000) -> int:
        """Put these jobs back to `pending` for a new snapshot, if they are `done`.

        Batched like `retry_jobs`; jobs that changed state meanwhile are left alone."""
        now = iso_utc(time.time())
        total = 0
        for start in range(0, len(job_ids), batch_size):
            chunk = list(job_ids[start : start + batch_size])
            with self.transaction() as conn:
                total += conn.execute(
                    f"""UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?,
                           last_error = NULL, updated_at = ?
                        WHERE state = 'done' AND id IN ({", ".join("?" * len(chunk))})""",
                    (now, now, *chunk),
                ).rowcount
        return total

    def queue_outlook(self, *, backfill: bool = False) -> tuple[int, str | None]:
        """(jobs in progress, next attempt time of the first pending job in claim order).

        Cheap at any queue size: it walks each runnable index to its first entry. The
        second value is None when no job is pending (backfill jobs count only when
        `backfill` is true, as only then could they run).
        """
        in_progress = self.conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'in_progress'"
        ).fetchone()[0]
        indexes = {"jobs_runnable": 0, "jobs_backfill": 1} if backfill else {"jobs_runnable": 0}
        firsts = []
        for index, needs_full in indexes.items():
            row = self.conn.execute(
                f"SELECT next_attempt_at FROM jobs INDEXED BY {index} WHERE state = 'pending'"
                f" AND needs_full = {needs_full} ORDER BY priority DESC, next_attempt_at LIMIT 1"
            ).fetchone()
            if row:
                firsts.append(row[0])
        return in_progress, min(firsts) if firsts else None

    # -- reading ---------------------------------------------------------------------

    def counts_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATES, 0)
        for state, count in self.conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = count
        return counts

    def responses_since(self, since_s: float) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM responses WHERE fetched_at >= ?", (iso_utc(since_s),)
        ).fetchone()[0]

    def top_errors(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """The commonest last errors of unfinished or failed jobs: (state, error, count)."""
        return self.conn.execute(
            """SELECT state, last_error, count(*) AS n FROM jobs
               WHERE last_error IS NOT NULL AND state IN ('pending', 'failed')
               GROUP BY state, last_error ORDER BY n DESC LIMIT ?""",
            (limit,),
        ).fetchall()

    def find_job(self, identifier: Identifier) -> sqlite3.Row | None:
        self.conn.row_factory = sqlite3.Row
        try:
            return self.conn.execute(
                "SELECT * FROM jobs WHERE id_type = ? AND identifier = ?",
                (identifier.id_type, identifier.value),
            ).fetchone()
        finally:
            self.conn.row_factory = None

    def latest_response(self, job_id: int) -> dict[str, Any] | None:
        """The job's latest response with its body uncompressed (StoreError if damaged)."""
        self.conn.row_factory = sqlite3.Row
        try:
            row = self.conn.execute(
                f"""SELECT r.*, {BODY_COLUMNS} FROM responses AS r
                   JOIN bodies AS b ON b.id = r.body_id
                   WHERE r.job_id = ? ORDER BY r.id DESC LIMIT 1""",
                (job_id,),
            ).fetchone()
        finally:
            self.conn.row_factory = None
        if row is None:
            return None
        response = dict(row)
        stored = (
            response.pop("codec"),
            response.pop("dictionary_id"),
            response.pop("data"),
            response["size_bytes"],
        )
        try:
            response["body"] = self.bodies.decompress(*stored)
        except BodyCorrupt as error:
            raise StoreError(
                f"the body of response {response['id']} is damaged ({error}); "
                "`harvester verify` lists every such body"
            ) from None
        return response

    def iter_latest_responses(self, *, with_body: bool = True) -> Iterator[tuple]:
        """Per job with a response, its latest one, in job order; damaged bodies (and
        every body, without `with_body`) as None.

        Rows: (id_type, identifier, state, http_status, sha256, fetched_at, mode, body).
        """
        cursor = self.conn.execute(
            f"""SELECT j.id_type, j.identifier, j.state, r.http_status, r.sha256,
                      r.fetched_at, r.mode, {BODY_COLUMNS}
               FROM jobs AS j JOIN responses AS r
                 ON r.id = (SELECT max(id) FROM responses WHERE job_id = j.id)
               JOIN bodies AS b ON b.id = r.body_id
               ORDER BY j.id"""
        )
        while rows := cursor.fetchmany(500):
            for row in rows:
                body: bytes | None = None
                if with_body:
                    with contextlib.suppress(BodyCorrupt):
                        body = self.bodies.decompress(*row[7:])
                yield (*row[:7], body)

    def count_responses(self) -> int:
        return self.conn.execute("SELECT count(*) FROM responses").fetchone()[0]

    def responses_of_bodies(self, body_ids: Sequence[int]) -> list[tuple[int, str, str, str]]:
        """(response id, type, identifier, sha256) of the responses with these bodies."""
        found: list[tuple[int, str, str, str]] = []
        for start in range(0, len(body_ids), 500):
            chunk = list(body_ids[start : start + 500])
            found += self.conn.execute(
                f"""SELECT r.id, j.id_type, j.identifier, r.sha256
                    FROM responses AS r JOIN jobs AS j ON j.id = r.job_id
                    WHERE r.body_id IN ({", ".join("?" * len(chunk))}) ORDER BY r.id""",
                chunk,
            ).fetchall()
        return found

    def responses_not_matching_their_body(self) -> list[tuple[int, str, str, str]]:
        """Responses whose sha256 is not their body's: the link itself is damaged."""
        return self.conn.execute(
            """SELECT r.id, j.id_type, j.identifier, r.sha256
               FROM responses AS r JOIN jobs AS j ON j.id = r.job_id
               LEFT JOIN bodies AS b ON b.id = r.body_id
               WHERE b.id IS NULL OR r.sha256 != b.sha256 OR r.size_bytes != b.size_bytes
               ORDER BY r.id"""
        ).fetchall()
