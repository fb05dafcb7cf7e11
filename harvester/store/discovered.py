"""Results of the citations call (`harvester discover`), stored as counts snapshots.

Each result on a page is a counts-shaped answer: its exact bytes (a slice of the page)
are stored like an answer's, with `endpoint = 'citations'`, `mode = 'counts'` and
`request_params` naming the query and page, and derived into the same tables.

A result becomes a snapshot of its output's job (`store.aliases`: the job of its
Altmetric ID, or of another identifier of its own, never one of another output's, nor
one an ISBN alone names): an output never gets a second job, nor a job a second
output. Otherwise it gets a new job under its best identifier of its own (doi, pmid,
arxiv, ads, handle, isbn, uri, ..., the Altmetric ID last), `pending` when the harvest
has more to ask for it (the fetch call's mentions) or `done` when the snapshot is
already what the counts call would answer. With the fetch call, a known output that
was done (or had no attention data then) is queued again: being listed says its
attention changed, so its mentions did; with the counts call, a known output still
waiting for its answer is done.

A page and the position after it, with the discovery's totals so far, are one
transaction, so a killed discovery resumes at the next page, stores no result twice,
and ends with the counts and exit code of one clean run (`DiscoverTotals`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

from harvester.model import COUNTS_MODE, Endpoint, JobState, StoredResponse
from harvester.store.aliases import (
    NO_IDENTIFIER_OF_ITS_OWN,
    add_aliases,
    job_of_answer,
    named_identifiers,
)
from harvester.store.derived import derive_answers
from harvester.store.responses import Responses
from harvester.store.snapshot import Answer

POSITION_PREFIX = "discover_position:"  # daemon_state: where a discovery stopped, per query
REJECTS_KEPT = 20  # rejected results whose messages a run shows (and a resumed one again)


class DiscoveredPage(NamedTuple):
    """One page's results to store, and the position to save with them."""

    results: Sequence[bytes]  # each result's exact bytes
    fetched_at: str
    request_params: str  # JSON: the query and page (never the key)
    new_job_state: str  # "pending" (fetch mode: mentions to ask for) or "done"
    position_key: str  # the daemon_state key of this discovery's position
    position: str | None  # JSON for daemon_state, or None to clear it (the last page);
    # its `totals` are the discovery's before this page (`DiscoverTotals`), saved with
    # this page's counts added


class PageCounts(NamedTuple):
    stored: int  # snapshots stored
    queued: int  # outputs new to the store: a job each
    known: int  # outputs the store already had a job for...
    requeued: int  # ...of which this many were queued again for a new fetch
    rejected: list[str]  # "page P, result N: why", for results that name no output
    underived: list[str]  # stored raw, not derived (for `harvester derive`): why


def record_page(
    conn: sqlite3.Connection, responses: Responses, page: DiscoveredPage, *, derive: bool
) -> PageCounts:
    """Store a page's results and its position in the caller's transaction."""
    queued = known = requeued = 0
    now = page.fetched_at
    where = _page_of(page.request_params)
    rejected: list[str] = []
    to_derive: list[Answer] = []
    for number, body in enumerate(page.results, start=1):
        identifiers, problem = named_identifiers(body)
        found = None if problem else job_of_answer(conn, identifiers, page.new_job_state, now)
        if found is None:
            rejected.append(f"{where}result {number}: {problem or NO_IDENTIFIER_OF_ITS_OWN}")
            continue
        job_id, new = found
        if new:
            queued += 1
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
        add_aliases(conn, [(job_id, identifiers)])
    underived = derive_answers(conn, to_derive).problems if derive and to_derive else []
    counts = PageCounts(len(to_derive), queued, known, requeued, rejected, underived)
    _save_position(conn, page.position_key, _with_totals(page.position, counts), now)
    return counts


def _page_of(request_params: str) -> str:
    """Where a page's rejects are: "page P, " (its `request_params` name the page)."""
    try:
        page = json.loads(request_params).get("page")
    except (ValueError, AttributeError):
        return ""
    return f"page {page}, " if page else ""


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


@dataclass(frozen=True)
class DiscoverTotals:
    """What a discovery has done so far, saved with its position (`totals`) so that
    the discovery resumed after a kill or a failure ends as one clean run would."""

    pages: int = 0
    stored: int = 0
    queued: int = 0
    known: int = 0
    requeued: int = 0
    rejected: int = 0
    shown: tuple[str, ...] = ()  # the first REJECTS_KEPT rejected results' messages

    def adding(self, counts: PageCounts) -> DiscoverTotals:
        room = max(REJECTS_KEPT - len(self.shown), 0)
        return replace(
            self,
            pages=self.pages + 1,
            stored=self.stored + counts.stored,
            queued=self.queued + counts.queued,
            known=self.known + counts.known,
            requeued=self.requeued + counts.requeued,
            rejected=self.rejected + len(counts.rejected),
            shown=(*self.shown, *counts.rejected[:room]),
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "shown": list(self.shown)}

    @classmethod
    def from_json(cls, value: object) -> DiscoverTotals:
        """The totals saved with a position; zeros if they do not read."""
        if not isinstance(value, dict):
            return cls()
        numbers = {f.name: value.get(f.name) for f in fields(cls) if f.name != "shown"}
        shown = value.get("shown")
        if not isinstance(shown, list) or not all(
            isinstance(n, int) and n >= 0 for n in numbers.values()
        ):
            return cls()
        counted = {name: int(n or 0) for name, n in numbers.items()}
        return cls(**counted, shown=tuple(map(str, shown[:REJECTS_KEPT])))


def _with_totals(position: str | None, counts: PageCounts) -> str | None:
    """The position to save: its `totals` (the discovery's before the page) with the
    page's counts added."""
    saved = json.loads(position) if position else None
    if not isinstance(saved, dict) or "totals" not in saved:
        return position
    saved["totals"] = DiscoverTotals.from_json(saved["totals"]).adding(counts).to_json()
    return json.dumps(saved)
