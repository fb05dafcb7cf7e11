"""Schema m012: one job per output, never two outputs in one job.

Before, an answer from the dump or a discovery joined the job of the first identifier
the store knew for it, and identifiers several outputs carry made one job of them:
three book chapters (their own DOIs and Altmetric IDs, their book's ISBN) became one
job with three snapshots, `latest_outputs` showed only the last chapter, and the
others' DOIs were "already queued". From now on an answer's Altmetric ID is its
output's identity (`store.aliases`); this upgrade repairs what was merged before:

- `aliases` gets its `shared` column and an index of each job's Altmetric IDs.
- Every job holding answers of more than one Altmetric ID is split. It keeps the
  output the API answered its own identifier with (its latest fetch or counts
  answer), else the one output that carries its identifier, else its first; each
  other output moves to a job of its own, `done`, under its best identifier that no
  other output of the job carries and no job or other output holds (doi, pmid, ...,
  the Altmetric ID last), or to the job its Altmetric ID already has. A job whose
  identifier several of its outputs carry (a book's ISBN) and that the API never
  answered keeps none of them and goes back to `pending`, for its own answer.
- The moved answers' responses follow them; their derived rows (snapshots, counts,
  readers, contexts, mentions) and aliases are written again from the stored bytes,
  with the derive code of this version, so `is_latest` and every mention's first and
  last snapshot are what a store that never merged would hold.
- Every identifier the latest answers of two outputs carry is marked shared.

The counts go to the log (`store.upgrade.outputs_split`). Nothing is lost: every
response, body and tweet charge stays, only `job_id`s change.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlite_utils import Database

from harvester.errors import BodyCorrupt
from harvester.identifiers import Identifier
from harvester.logs import get_logger
from harvester.model import Endpoint, JobState, iso_utc
from harvester.store import aliases
from harvester.store.bodies import BODY_COLUMNS, codec_with
from harvester.store.codec import BodyCodec, Dictionary
from harvester.store.derived import derive_answers
from harvester.store.snapshot import Answer
from harvester.store.upgrade import UpgradeProgress

log = get_logger("harvester.store")
OUTPUTS_PER_STEP = 5_000
_API_ENDPOINTS = (Endpoint.FETCH, Endpoint.COUNTS)  # answers to the job's own identifier
# Each identifier type's place in the order a new job takes the first one found.
_RANK: dict[str, int] = {}
for _rank, (_, _id_type) in enumerate(aliases.ALIAS_FIELDS):
    _RANK.setdefault(_id_type, _rank)


@dataclass
class Split:
    """What the upgrade did."""

    jobs: int = 0  # jobs that held more than one output
    outputs: int = 0  # outputs moved out of them
    responses: int = 0  # responses moved with those outputs
    requeued: int = 0  # jobs left with none of their outputs, pending again
    shared: int = 0  # identifiers marked shared


@dataclass
class _Stored:
    """One stored 200 answer of a merged job."""

    response_id: int
    fetched_at: str
    mode: str
    endpoint: str
    body: bytes
    identifiers: list[Identifier]

    @property
    def altmetric_id(self) -> str | None:
        return aliases.altmetric_id_of(self.identifiers)


@dataclass
class _Output:
    """The answers of one Altmetric ID within a merged job, and its identifiers (the
    best first)."""

    altmetric_id: str
    answers: list[_Stored] = field(default_factory=list)

    def identifiers(self) -> list[Identifier]:
        found = dict.fromkeys(i for answer in reversed(self.answers) for i in answer.identifiers)
        return sorted(found, key=lambda identifier: _RANK[identifier.id_type])


def migrate(db: Database) -> Split:
    conn = db.conn
    conn.execute(aliases.SHARED_COLUMN)
    conn.execute(aliases.OUTPUT_INDEX)
    split = Split()
    merged = _merged_jobs(conn)
    codec = codec_with([Dictionary(*row) for row in conn.execute(_DICTIONARIES)])
    with UpgradeProgress("outputs merged into one job", len(merged)) as progress:
        for job_id in merged:
            _split_job(conn, codec, job_id, split)
            progress.advance(1)
    latest = int(conn.execute("SELECT count(*) FROM outputs WHERE is_latest").fetchone()[0])
    with UpgradeProgress("identifiers several outputs carry", latest) as progress:
        for batch in _latest_outputs(conn):
            aliases.add_aliases(conn, aliases.outputs_named(batch))
            progress.advance(len(batch))
    split.shared = int(conn.execute("SELECT count(*) FROM aliases WHERE shared").fetchone()[0])
    if latest or merged:
        log.info(
            "store.upgrade.outputs_split",
            merged_jobs=split.jobs,
            outputs_moved=split.outputs,
            responses_moved=split.responses,
            jobs_requeued=split.requeued,
            identifiers_shared=split.shared,
        )
    return split


_DICTIONARIES = "SELECT id, data FROM zstd_dictionaries ORDER BY id"


def _merged_jobs(conn: sqlite3.Connection) -> list[int]:
    """Jobs whose derived snapshots name more than one Altmetric ID, and jobs holding
    more than one answer of which one from the dump or a discovery is not derived (its
    bytes will tell)."""
    derived = conn.execute(
        """SELECT job_id FROM outputs WHERE altmetric_id IS NOT NULL
           GROUP BY job_id HAVING min(altmetric_id) != max(altmetric_id)"""
    ).fetchall()
    underived = conn.execute(
        """SELECT DISTINCT r.job_id FROM responses AS r
           WHERE r.http_status = 200 AND r.endpoint IN (?, ?)
             AND NOT EXISTS (SELECT 1 FROM outputs AS o WHERE o.response_id = r.id)
             AND (SELECT count(*) FROM responses AS other
                  WHERE other.job_id = r.job_id AND other.http_status = 200) > 1""",
        (Endpoint.DUMP, Endpoint.CITATIONS),
    ).fetchall()
    return sorted({int(row[0]) for row in [*derived, *underived]})


def _split_job(conn: sqlite3.Connection, codec: BodyCodec, job_id: int, split: Split) -> None:
    """Give each output of the job its own job (see the module's docstring)."""
    answers = _answers_of(conn, codec, job_id)
    outputs: dict[str, _Output] = {}
    for answer in answers:
        if answer.altmetric_id is not None:
            outputs.setdefault(answer.altmetric_id, _Output(answer.altmetric_id))
            outputs[answer.altmetric_id].answers.append(answer)
    if len(outputs) < 2:
        return
    split.jobs += 1
    job = Identifier(*conn.execute(_JOB, (job_id,)).fetchone())
    kept = _kept(job, answers, outputs)
    carried = _carried_by_several(outputs.values())
    targets = {answer.response_id: job_id for answer in answers}
    for output in outputs.values():
        if output.altmetric_id == kept:
            continue
        target = _target(conn, job_id, job, output, carried)
        if target is None:
            log.warning(
                "store.upgrade.output_left", job_id=job_id, altmetric_id=output.altmetric_id
            )
            continue
        split.outputs += 1
        split.responses += len(output.answers)
        targets.update((answer.response_id, target) for answer in output.answers)
    _forget_derived(conn, job_id, answers)
    for response_id, target in targets.items():
        conn.execute("UPDATE responses SET job_id = ? WHERE id = ?", (target, response_id))
    derive_answers(
        conn,
        [
            Answer(a.response_id, targets[a.response_id], a.fetched_at, a.mode, a.body)
            for a in answers
        ],
        yielding=False,
    )
    if kept is None:
        split.requeued += _requeue(conn, job_id)


_JOB = "SELECT id_type, identifier FROM jobs WHERE id = ?"


def _answers_of(conn: sqlite3.Connection, codec: BodyCodec, job_id: int) -> list[_Stored]:
    """The job's stored 200 answers, oldest first (a damaged body names nothing)."""
    found = []
    for response_id, fetched_at, mode, endpoint, *columns in conn.execute(
        f"""SELECT r.id, r.fetched_at, r.mode, r.endpoint, {BODY_COLUMNS}
            FROM responses AS r JOIN bodies AS b ON b.id = r.body_id
            WHERE r.job_id = ? AND r.http_status = 200 ORDER BY r.id""",
        (job_id,),
    ).fetchall():
        try:
            body = codec.decompress(*columns)
        except BodyCorrupt:
            continue  # stays where it is, for `verify` to report
        identifiers, _ = aliases.named_identifiers(body)
        found.append(_Stored(response_id, fetched_at, mode, endpoint, body, identifiers))
    return found


def _kept(job: Identifier, answers: list[_Stored], outputs: dict[str, _Output]) -> str | None:
    """The Altmetric ID of the output the job keeps: the one the API answered its
    identifier with last; else the only one carrying its identifier; none if several
    carry it (which is the job's, only the API can say); else its first."""
    from_api = [a for a in answers if a.endpoint in _API_ENDPOINTS and a.altmetric_id]
    if from_api:
        return from_api[-1].altmetric_id
    carriers = [o.altmetric_id for o in outputs.values() if job in o.identifiers()]
    if len(carriers) > 1:
        return None
    return carriers[0] if carriers else next(iter(outputs))


def _carried_by_several(outputs: Iterable[_Output]) -> set[Identifier]:
    seen: set[Identifier] = set()
    several: set[Identifier] = set()
    for output in outputs:
        for identifier in output.identifiers():
            (several if identifier in seen else seen).add(identifier)
    return several


def _target(
    conn: sqlite3.Connection,
    job_id: int,
    job: Identifier,
    output: _Output,
    carried: set[Identifier],
) -> int | None:
    """The job an output moves to: a new `done` one under its best identifier that
    no other output of the merged job carries, no job is queued under and no other
    job's answer named; else the job its Altmetric ID has elsewhere; else None."""
    for identifier in output.identifiers():
        if identifier in carried or identifier == job:
            continue
        if conn.execute(
            "SELECT 1 FROM jobs WHERE id_type = ? AND identifier = ?", identifier
        ).fetchone():
            continue
        alias = conn.execute(
            "SELECT job_id, shared FROM aliases WHERE id_type = ? AND identifier = ?", identifier
        ).fetchone()
        if alias is not None and (alias[1] or alias[0] != job_id):
            continue
        now = iso_utc(time.time())
        cursor = conn.execute(
            """INSERT INTO jobs (id_type, identifier, state, priority, next_attempt_at,
                   created_at, updated_at)
               SELECT ?, ?, 'done', priority, ?, ?, ? FROM jobs WHERE id = ?""",
            (*identifier, now, now, now, job_id),
        )
        return int(cursor.lastrowid or 0)
    elsewhere = conn.execute(
        """SELECT id FROM jobs WHERE id_type = 'id' AND identifier = ?
           UNION ALL SELECT job_id FROM aliases WHERE id_type = 'id' AND identifier = ?""",
        (output.altmetric_id, output.altmetric_id),
    ).fetchall()
    return next((int(row[0]) for row in elsewhere if row[0] != job_id), None)


def _forget_derived(conn: sqlite3.Connection, job_id: int, answers: list[_Stored]) -> None:
    """The merged job's derived rows and the aliases its answers gave it: all written
    again as its answers are derived under their own jobs."""
    for table in ("outputs", "counts", "readers", "score_context"):
        conn.executemany(
            f"DELETE FROM {table} WHERE response_id = ?", [(a.response_id,) for a in answers]
        )
    conn.execute("DELETE FROM tweets WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM posts WHERE job_id = ?", (job_id,))
    named = {identifier for answer in answers for identifier in answer.identifiers}
    conn.executemany(
        "DELETE FROM aliases WHERE id_type = ? AND identifier = ? AND job_id = ? AND NOT shared",
        [(*identifier, job_id) for identifier in named],
    )


def _requeue(conn: sqlite3.Connection, job_id: int) -> int:
    """Back to `pending` for the API's answer to its own identifier (one a running
    daemon holds is left to it)."""
    now = iso_utc(time.time())
    return conn.execute(
        """UPDATE jobs SET state = ?, attempts = 0, next_attempt_at = ?, last_error = NULL,
               updated_at = ? WHERE id = ? AND state IN ('done', 'not_found', 'failed')""",
        (JobState.PENDING, now, now, job_id),
    ).rowcount


def _latest_outputs(conn: sqlite3.Connection) -> Iterator[list[tuple[object, ...]]]:
    """Every output's latest derived snapshot, in steps."""
    rows = conn.execute("SELECT * FROM outputs WHERE is_latest ORDER BY response_id")
    while batch := rows.fetchmany(OUTPUTS_PER_STEP):
        yield batch
