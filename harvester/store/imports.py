"""Records of Altmetric's JSON dump, stored as answers (`harvester import`).

A record is a fetch-shaped answer that did not come through the API: its exact bytes
are stored like an answer's (sha256, compressed, derived into the same tables), with
`mode = 'dump'`, `fetched_at` the dump's date, and `request_params` naming where in the
dump it was (`{"source": "dump", "member": ..., "line": ...}`). It charges nothing to
the tweet ledger.

A record becomes a snapshot of its output's job (`store.aliases`: the job of its
Altmetric ID, or of another identifier of its own, never one of another output's, nor
one an ISBN alone names); else a new `done` job under its best identifier of its own.
A pending job that gets a record is done: the record is its answer (so is one the API
had answered 404 or that failed), and `refresh` asks the API again. A batch is one
transaction, with the position in the dump it reached and the run's totals so far
(`daemon_state`), so a killed import resumes there and ends as one clean run would
(the same counts, rejects and exit code), and a record whose bytes its job already
holds from the dump is present, not added: importing a dump twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from harvester.identifiers import Identifier
from harvester.model import Endpoint, JobState, StoredResponse, iso_utc
from harvester.store.aliases import (
    NO_IDENTIFIER_OF_ITS_OWN,
    add_aliases,
    job_of_answer,
    named_identifiers,
)
from harvester.store.derived import derive_answers
from harvester.store.responses import Responses
from harvester.store.snapshot import Answer

DUMP_MODE = "dump"
POSITION_KEY = "import_position"  # daemon_state: where the last import stopped
REJECTS_KEPT = 20  # rejected records whose messages a run shows (and a resumed one again)


class ImportedRecord(NamedTuple):
    """One record to store: its bytes, the dump's date for it, and where it was."""

    body: bytes
    fetched_at: str  # ISO 8601 UTC, like every time the harvester writes
    member: str
    line: int


class ImportCounts(NamedTuple):
    imported: int
    present: int  # its job already holds these bytes from the dump, or a newer answer
    rejected: list[str]  # "member:line: why", one per record that could not be stored
    underived: list[str]  # stored raw, but not derived (for `harvester derive`): why


def import_batch(
    conn: sqlite3.Connection,
    responses: Responses,
    records: Sequence[ImportedRecord],
    position: str | None = None,
) -> ImportCounts:
    """Store a batch of records in the caller's transaction, and `position` (a JSON
    text saying where the dump was read up to) with them. Its `totals`, if it has them,
    are the run's before this batch (`ImportTotals`): they are saved with this batch's
    counts added."""
    imported, present, rejected = 0, 0, []
    to_derive: list[Answer] = []
    now = iso_utc(time.time())
    for record in records:
        identifiers, problem = named_identifiers(record.body)
        job_id = None if problem else _job_for(conn, identifiers, now)
        if job_id is None:
            rejected.append(f"{record.member}:{record.line}: {problem or NO_IDENTIFIER_OF_ITS_OWN}")
            continue
        sha256 = hashlib.sha256(record.body).hexdigest()
        if _already_holds(conn, job_id, record, sha256):
            present += 1
            continue
        response_id = responses.insert(conn, job_id, _response(record), sha256)
        to_derive.append(Answer(response_id, job_id, record.fetched_at, DUMP_MODE, record.body))
        add_aliases(conn, [(job_id, identifiers)])
        imported += 1
    # No event loop shares this process's GIL: no pauses while reading.
    underived = derive_answers(conn, to_derive, yielding=False).problems if to_derive else []
    counts = ImportCounts(imported, present, rejected, underived)
    if position is not None:
        conn.execute(
            "INSERT OR REPLACE INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?)",
            (POSITION_KEY, _with_totals(position, counts), now),
        )
    return counts


def _job_for(conn: sqlite3.Connection, identifiers: Sequence[Identifier], now: str) -> int | None:
    """The job of the output these identifiers name: a known one (done now, if it was
    pending, or ended without an answer: the record is one), else a new `done` job
    under its best identifier of its own; None if it has none."""
    found = job_of_answer(conn, identifiers, JobState.DONE, now)
    if found is None:
        return None
    job_id, new = found
    if new:
        return job_id
    conn.execute(  # not one a running daemon holds: its answer will follow this one
        """UPDATE jobs SET state = 'done', last_error = NULL, updated_at = ?
           WHERE id = ? AND state IN ('pending', 'not_found', 'failed')""",
        (now, job_id),
    )
    return job_id


def _already_holds(
    conn: sqlite3.Connection, job_id: int, record: ImportedRecord, sha256: str
) -> bool:
    """Whether the job holds these very bytes (`sha256`) from the dump, or an answer
    fetched after the dump's date (a dump record must not pass for the latest snapshot
    then)."""
    row = conn.execute(
        """SELECT 1 FROM responses WHERE job_id = ?
               AND ((mode = ? AND sha256 = ?) OR fetched_at > ?) LIMIT 1""",
        (job_id, DUMP_MODE, sha256, record.fetched_at),
    ).fetchone()
    return row is not None


def _response(record: ImportedRecord) -> StoredResponse:
    # ASCII JSON: a member name that was not UTF-8 (surrogate escapes) stays writable.
    params = json.dumps({"source": "dump", "member": record.member, "line": record.line})
    return StoredResponse(
        200, record.body, params, DUMP_MODE, record.fetched_at, endpoint=Endpoint.DUMP
    )


def saved_position(conn: sqlite3.Connection) -> dict[str, object] | None:
    """Where the last import stopped, if it saved a position this version can read."""
    row = conn.execute("SELECT value FROM daemon_state WHERE key = ?", (POSITION_KEY,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ImportTotals:
    """What an import has done so far, saved with its position (`totals`) so that the
    import resumed after a kill ends with the counts, rejects and exit code of one
    clean run."""

    imported: int = 0
    present: int = 0
    rejected: int = 0
    shown: tuple[str, ...] = ()  # the first REJECTS_KEPT rejected records' messages

    def rejecting(self, messages: Sequence[str]) -> ImportTotals:
        room = max(REJECTS_KEPT - len(self.shown), 0)
        shown = (*self.shown, *messages[:room])
        return replace(self, rejected=self.rejected + len(messages), shown=shown)

    def adding(self, counts: ImportCounts) -> ImportTotals:
        added = replace(
            self, imported=self.imported + counts.imported, present=self.present + counts.present
        )
        return added.rejecting(counts.rejected)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "shown": list(self.shown)}

    @classmethod
    def from_json(cls, value: object) -> ImportTotals:
        """The totals saved with a position; zeros if they do not read."""
        if not isinstance(value, dict):
            return cls()
        counts = [value.get(name) for name in ("imported", "present", "rejected")]
        shown = value.get("shown")
        if not isinstance(shown, list) or not all(isinstance(n, int) and n >= 0 for n in counts):
            return cls()
        imported, present, rejected = (int(n or 0) for n in counts)
        return cls(imported, present, rejected, tuple(map(str, shown[:REJECTS_KEPT])))


def _with_totals(position: str, counts: ImportCounts) -> str:
    """The position to save: its `totals` (the run's before the batch) with the
    batch's counts added."""
    try:
        saved = json.loads(position)
    except ValueError:
        return position
    if not isinstance(saved, dict) or "totals" not in saved:
        return position
    saved["totals"] = ImportTotals.from_json(saved["totals"]).adding(counts).to_json()
    return json.dumps(saved)


def saved_totals(conn: sqlite3.Connection) -> ImportTotals:
    """What the import that saved the last position had done (zeros if nothing)."""
    saved = saved_position(conn) or {}
    return ImportTotals.from_json(saved.get("totals"))
