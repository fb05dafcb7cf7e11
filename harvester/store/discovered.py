"""Results of the citations call (`harvester discover`), stored as counts snapshots.

Each result on a page is a counts-shaped answer: its exact bytes (a slice of the page)
are stored like an answer's, with `endpoint = 'citations'`, `mode = 'counts'` and
`request_params` naming the query and page, and derived into the same tables.

A result becomes a snapshot of the job of an identifier the store already knows for
its output (`store.aliases`): an output never gets a second job. Otherwise it gets a
new job under its best identifier (doi, pmid, arxiv, ads, handle, isbn, uri, ..., the
Altmetric ID last), `pending` when the harvest has more to ask for it (the fetch
call's mentions) or `done` when the snapshot is already what the counts call would
answer. With the fetch call, a known output that was done (or had no attention data
then) is queued again: being listed says its attention changed, so its mentions did;
with the counts call, a known output still waiting for its answer is done.

A page and the position after it are one transaction, so a killed discovery resumes
at the next page and stores no result twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from harvester.model import COUNTS_MODE, Endpoint, JobState, StoredResponse
from harvester.store.aliases import add_aliases, job_known_as, named_identifiers
from harvester.store.derived import derive_answers
from harvester.store.responses import Responses
from harvester.store.snapshot import Answer

POSITION_PREFIX = "discover_position:"  # daemon_state: where a discovery stopped, per query


class DiscoveredPage(NamedTuple):
    """One page's results to store, and the position to save with them."""

    results: Sequence[bytes]  # each result's exact bytes
    fetched_at: str
    request_params: str  # JSON: the query and page (never the key)
    new_job_state: str  # "pending" (fetch mode: mentions to ask for) or "done"
    position_key: str  # the daemon_state key of this discovery's position
    position: str | None  # JSON for daemon_state, or None to clear it (the last page)


class PageCounts(NamedTuple):
    stored: int  # snapshots stored
    queued: int  # outputs new to the store: a job each
    known: int  # outputs the store already had a job for...
    requeued: int  # ...of which this many were queued again for a new fetch
    rejected: list[str]  # "result N: why", for results that name no output
    underived: list[str]  # stored raw, not derived (for `harvester derive`): why


def record_page(
    conn: sqlite3.Connection, responses: Responses, page: DiscoveredPage, *, derive: bool
) -> PageCounts:
    """Store a page's results and its position in the caller's transaction."""
    queued = known = requeued = 0
    rejected: list[str] = []
    to_derive: list[Answer] = []
    for number, body in enumerate(page.results, start=1):
        identifiers, problem = named_identifiers(body)
        if problem:
            rejected.append(f"result {number}: {problem}")
            continue
        job_id = job_known_as(conn, identifiers)
        if job_id is None:
            queued += 1
            best = identifiers[0]
            job_id = _new_job(conn, best.id_type, best.value, page.new_job_state, page.fetched_at)
        else:
            known += 1
            if page.new_job_state == JobState.PENDING:
                requeued += _queue_again(conn, job_id, page.fetched_at)
            else:
                _answered(conn, job_id, page.fetched_at)
        response = StoredResponse(
            200,
            body,
            page.request_params,
            COUNTS_MODE,
            page.fetched_at,
            endpoint=Endpoint.CITATIONS,
        )
        sha256 = hashlib.sha256(body).hexdigest()
        response_id = responses.insert(conn, job_id, response, sha256)
        to_derive.append(Answer(response_id, job_id, page.fetched_at, COUNTS_MODE, body))
        add_aliases(conn, ((i.id_type, i.value, job_id) for i in identifiers))
    underived = derive_answers(conn, to_derive).problems if derive and to_derive else []
    _save_position(conn, page.position_key, page.position, page.fetched_at)
    return PageCounts(len(to_derive), queued, known, requeued, rejected, underived)


def _new_job(conn: sqlite3.Connection, id_type: str, value: str, state: str, now: str) -> int:
    cursor = conn.execute(
        """INSERT INTO jobs (id_type, identifier, state, next_attempt_at, created_at,
               updated_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (id_type, value, state, now, now, now),
    )
    return int(cursor.lastrowid or 0)


def _queue_again(conn: sqlite3.Connection, job_id: int, now: str) -> int:
    """Back to `pending` with a fresh attempt budget, if it had ended done or without
    attention data (one pending, running or failed is left alone); 1 if it was."""
    return conn.execute(
        """UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?,
               last_error = NULL, updated_at = ?
           WHERE id = ? AND state IN ('done', 'not_found')""",
        (now, now, job_id),
    ).rowcount


def _answered(conn: sqlite3.Connection, job_id: int, now: str) -> None:
    """With the counts call, the result is the job's answer: a job waiting for one, or
    that ended without one, is done (one a running daemon holds is left to it)."""
    conn.execute(
        """UPDATE jobs SET state = 'done', last_error = NULL, updated_at = ?
           WHERE id = ? AND state IN ('pending', 'not_found', 'failed')""",
        (now, job_id),
    )


def _save_position(conn: sqlite3.Connection, key: str, position: str | None, now: str) -> None:
    if position is None:
        conn.execute("DELETE FROM daemon_state WHERE key = ?", (key,))
        return
    conn.execute(
        "INSERT OR REPLACE INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)",
        (key, position, now),
    )
