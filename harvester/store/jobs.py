"""The job queue: one row per (type, identifier), leased to one run at a time.

Promises, each kept by one statement or one short transaction:
- `add` queues identifiers once each; re-adding is a no-op, never a reset.
- `claim` moves runnable jobs to `in_progress` under a fresh lease token, atomically.
- `apply` (inside `Store.record`) finishes a job only while its lease token still
  matches, so one claim stores at most one response.
- Bulk changes (`retry`, `requeue_done`) go in batches, each its own short
  transaction, so a running daemon never waits long for the write lock.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

from harvester.identifiers import Identifier
from harvester.model import ClaimedJob, EnqueueCounts, JobOutcome, JobState, QuotaMode, iso_utc
from harvester.store.connection import transaction


class JobQueue:
    """The `jobs` table, as a queue."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # -- adding ------------------------------------------------------------------------

    def add(
        self,
        identifiers: Iterable[Identifier],
        *,
        priority: int = 0,
        batch_size: int = 200_000,
        on_batch: Callable[[int], None] | None = None,
    ) -> EnqueueCounts:
        """Queue identifiers as pending jobs; those already queued are left as they are."""
        added = seen = 0
        source = iter(identifiers)
        while batch := list(islice(source, batch_size)):
            added += self._insert(batch, priority)
            seen += len(batch)
            if on_batch:
                on_batch(seen)
        return EnqueueCounts(added=added, already_queued=seen - added)

    def _insert(self, batch: list[Identifier], priority: int) -> int:
        """Insert one batch: for each type, its identifiers sorted, in one statement.

        A type's identifiers reach SQLite as one JSON array that SQLite reads in its
        own loop: no Python round trip per row, no staging table, no sort in SQL. In
        key order the merge walks the unique index page by page instead of at random,
        so a running daemon waits a fraction of a second per batch for the write
        lock. Jobs queued together therefore run in (type, identifier) order;
        --priority is the way to order work.
        """
        by_type: dict[str, list[str]] = {}
        for id_type, value in batch:
            by_type.setdefault(id_type, []).append(value)
        # Python orders str by code point, as SQLite's BINARY collation orders UTF-8.
        arrays = [
            (id_type, json.dumps(sorted(values), ensure_ascii=False))
            for id_type, values in sorted(by_type.items())
        ]
        now = iso_utc(time.time())
        with transaction(self._conn) as conn:
            before = conn.total_changes
            for id_type, array in arrays:
                conn.execute(
                    "INSERT OR IGNORE INTO jobs (id_type, identifier, priority, next_attempt_at,"
                    " created_at, updated_at) SELECT ?, value, ?, ?, ?, ? FROM json_each(?)"
                    # An output the store holds under another identifier: no second job
                    # (a shared one, like a book's ISBN its chapters carry, names none).
                    " WHERE NOT EXISTS (SELECT 1 FROM aliases"
                    " WHERE aliases.id_type = ? AND aliases.identifier = value"
                    " AND NOT aliases.shared)",
                    (id_type, priority, now, now, now, array, id_type),
                )
            return conn.total_changes - before

    # -- leasing -----------------------------------------------------------------------

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
        rows = self._conn.execute(
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
        return [
            ClaimedJob(job_id, id_type, identifier, attempts, token, bool(needs_full))
            for job_id, id_type, identifier, attempts in rows
        ]

    def apply(self, conn: sqlite3.Connection, outcome: JobOutcome, now: str) -> bool:
        """Finish a claimed job as `outcome` says, inside the caller's transaction;
        False (and nothing changed) if the lease was lost meanwhile."""
        full_response = outcome.response is not None and outcome.response.mode == QuotaMode.FULL
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
        return cursor.rowcount == 1

    def release(self, claims: Iterable[ClaimedJob]) -> int:
        """Return claimed jobs to `pending` without counting an attempt."""
        pairs = [(claim.id, claim.lease_token) for claim in claims]
        now = iso_utc(time.time())
        with transaction(self._conn) as conn:
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
        cursor = self._conn.execute(
            "UPDATE jobs SET state = 'pending', lease_token = NULL, lease_expires_at = NULL,"
            f" updated_at = :now WHERE state = 'in_progress' {condition}"
            " AND lease_token NOT IN (SELECT value FROM json_each(:keep))",
            {"now": now, "keep": json.dumps(sorted(keep_tokens))},
        )
        return cursor.rowcount

    # -- requeueing finished jobs ------------------------------------------------------

    def retry(self, state: str, batch_size: int = 20_000) -> int:
        """Put every job in `state` back to `pending` with a fresh attempt budget."""
        now = iso_utc(time.time())
        total = 0
        while True:
            changed = self._conn.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = :now,"
                " updated_at = :now WHERE id IN (SELECT id FROM jobs WHERE state = :state"
                " LIMIT :batch)",
                {"now": now, "state": state, "batch": batch_size},
            ).rowcount
            total += changed
            if changed < batch_size:
                return total

    def requeue_done(self, job_ids: Sequence[int], batch_size: int = 5_000) -> int:
        """Put these jobs back to `pending` for a new snapshot, if they are `done`;
        jobs that changed state meanwhile are left alone."""
        now = iso_utc(time.time())
        total = 0
        for start in range(0, len(job_ids), batch_size):
            chunk = list(job_ids[start : start + batch_size])
            with transaction(self._conn) as conn:
                total += conn.execute(
                    f"""UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?,
                           last_error = NULL, updated_at = ?
                        WHERE state = 'done' AND id IN ({", ".join("?" * len(chunk))})""",
                    (now, now, *chunk),
                ).rowcount
        return total

    def queue_backfill(self) -> int:
        """Queue every done job whose latest response is degraded for a full re-fetch."""
        now = iso_utc(time.time())
        cursor = self._conn.execute(
            """UPDATE jobs SET state = 'pending', needs_full = 1, attempts = 0,
                   next_attempt_at = :now, last_error = NULL, updated_at = :now
               WHERE state = 'done'
                 AND id IN (SELECT job_id FROM responses INDEXED BY responses_degraded
                            WHERE mode IN ('original_tweets', 'no_twitter'))
                 AND (SELECT mode FROM responses WHERE job_id = jobs.id
                      ORDER BY id DESC LIMIT 1) IN ('original_tweets', 'no_twitter')""",
            {"now": now},
        )
        return cursor.rowcount

    # -- looking -----------------------------------------------------------------------

    def outlook(self, *, backfill: bool = False) -> tuple[int, str | None]:
        """(jobs in progress, next attempt time of the first pending job in claim order).

        Cheap at any queue size: it walks each runnable index to its first entry. The
        second value is None when no job is pending (backfill jobs count only when
        `backfill` is true, as only then could they run).
        """
        in_progress = self._conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'in_progress'"
        ).fetchone()[0]
        indexes = {"jobs_runnable": 0, "jobs_backfill": 1} if backfill else {"jobs_runnable": 0}
        firsts = []
        for index, needs_full in indexes.items():
            row = self._conn.execute(
                f"SELECT next_attempt_at FROM jobs INDEXED BY {index} WHERE state = 'pending'"
                f" AND needs_full = {needs_full} ORDER BY priority DESC, next_attempt_at LIMIT 1"
            ).fetchone()
            if row:
                firsts.append(row[0])
        return in_progress, min(firsts) if firsts else None

    def counts_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(JobState, 0)
        for state, count in self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[JobState(state)] = count
        return {str(state): count for state, count in counts.items()}

    def any(self) -> bool:
        """Whether the queue holds any job at all."""
        return bool(self._conn.execute("SELECT EXISTS (SELECT 1 FROM jobs)").fetchone()[0])

    def top_errors(self, limit: int = 5) -> list[tuple[str, str, int]]:
        """The commonest last errors of unfinished or failed jobs: (state, error, count)."""
        return self._conn.execute(
            """SELECT state, last_error, count(*) AS n FROM jobs
               WHERE last_error IS NOT NULL AND state IN ('pending', 'failed')
               GROUP BY state, last_error ORDER BY n DESC LIMIT ?""",
            (limit,),
        ).fetchall()

    def find(self, identifier: Identifier) -> sqlite3.Row | None:
        self._conn.row_factory = sqlite3.Row
        try:
            row: sqlite3.Row | None = self._conn.execute(
                "SELECT * FROM jobs WHERE id_type = ? AND identifier = ?",
                (identifier.id_type, identifier.value),
            ).fetchone()
            return row
        finally:
            self._conn.row_factory = None


# Pending jobs of one runnable index (jobs_runnable or jobs_backfill) not due by :now,
# and the earliest of their times. The index is ordered by priority first, so a plain
# scan would read every pending job; this walks the priorities in use (a seek each, a
# skip-scan SQLite does not do by itself) and reads each one's waiting tail.
_WAITING = """
    WITH RECURSIVE priorities (priority) AS (
        SELECT (SELECT max(priority) FROM jobs INDEXED BY {index}
                WHERE state = 'pending' AND needs_full = {needs_full})
        UNION ALL
        SELECT (SELECT max(jobs.priority) FROM jobs INDEXED BY {index}
                WHERE state = 'pending' AND needs_full = {needs_full}
                  AND jobs.priority < priorities.priority)
        FROM priorities WHERE priorities.priority IS NOT NULL)
    SELECT count(*), min(jobs.next_attempt_at)
    FROM priorities JOIN jobs INDEXED BY {index} ON jobs.priority = priorities.priority
    WHERE jobs.state = 'pending' AND jobs.needs_full = {needs_full}
      AND jobs.next_attempt_at > :now"""


def waiting_jobs(conn: sqlite3.Connection, now: str) -> tuple[int, str | None]:
    """(pending jobs that may not run before a later time (a retry's backoff, a
    Retry-After), the earliest such time), as of `now` (ISO 8601 UTC).

    Cheap whatever the queue holds: per priority in use, an index seek to the waiting
    end of its range, so only the waiting jobs are read."""
    waiting, first = 0, None
    for index, needs_full in (("jobs_runnable", 0), ("jobs_backfill", 1)):
        count, earliest = conn.execute(
            _WAITING.format(index=index, needs_full=needs_full), {"now": now}
        ).fetchone()
        waiting += count
        if earliest is not None and (first is None or earliest < first):
            first = earliest
    return waiting, first


# Done jobs due for a new snapshot (`refresh`'s own conditions; its --where is
# never part of this statement).
_REFRESH_CANDIDATES = """
    SELECT id FROM jobs
    WHERE state = 'done'
      AND (SELECT max(fetched_at) FROM responses WHERE responses.job_id = jobs.id) < ?
    ORDER BY id"""


def refresh_cutoff(older_than_s: float) -> str:
    """The time before which a latest answer is due for a new snapshot. An age beyond
    the epoch selects nothing, rather than a date that cannot be written."""
    return iso_utc(max(time.time() - older_than_s, 0.0))


def stale_job_ids(conn: sqlite3.Connection, cutoff: str, chunk: int) -> Iterator[list[int]]:
    """Done jobs whose latest answer was fetched before `cutoff`, in chunks of ids."""
    cursor = conn.execute(_REFRESH_CANDIDATES, (cutoff,))
    while rows := cursor.fetchmany(chunk):
        yield [job_id for (job_id,) in rows]
