"""One output, one job, whichever of its identifiers it is known by; never two outputs
in one job.

An answer names its output by several identifiers (a DOI, a PubMed ID, an arXiv ID,
handles, ISBNs, its Altmetric ID...). Each of them, normalised as `enqueue` normalises
what users type, is kept in `aliases` with the job whose answer named it, so that an
output imported from the dump under its DOI is found again when someone enqueues its
PubMed ID, and no output gets two jobs. Aliases are written with the derived rows: a
store with `store.derive = false` learns them at `harvester derive`.

An answer's Altmetric ID is its output's identity. Other identifiers can be carried by
several outputs: a book's ISBN by each of its chapters too, or any identifier two
answers with different Altmetric IDs both carry. So:
- an answer from the dump or a discovery joins the job of its Altmetric ID; failing
  that, the job of another of its identifiers only when that job's output is not
  known to be another one (and never by an ISBN alone: `SHAREABLE_TYPES`);
- an identifier found carried by two outputs is marked `shared` (schema m012) and
  finds neither from then on: `enqueue` queues it as a job of its own (the API's
  answer for it is that job's), and answers carrying it join no job through it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from harvester.errors import IdentifierError
from harvester.identifiers import Identifier, normalise

# An answer's identifier fields and their types, in the order a new job takes the first
# one found (the order: doi, pmid, arxiv, ads, handle, isbn, uri, then the rest,
# the Altmetric ID last).
ALIAS_FIELDS: tuple[tuple[str, str], ...] = (
    ("doi", "doi"),
    ("pmid", "pmid"),
    ("arxiv_id", "arxiv"),
    ("ads_id", "ads"),
    ("handle", "handle"),
    ("handles", "handle"),
    ("isbn", "isbn"),
    ("isbns", "isbn"),
    ("uri", "uri"),
    ("ssrn", "ssrn"),
    ("repec_id", "repec"),
    ("urn", "urn"),
    ("nct_id", "nct_id"),
    ("dimensions_publication_id", "dimensions_publication_id"),
    ("altmetric_id", "id"),
)

# Identifiers that name a book and each of its chapters alike: one of them alone never
# makes an answer from the dump or a discovery join a job (`job_of_output`).
SHAREABLE_TYPES = frozenset({"isbn"})

SCHEMA = """CREATE TABLE aliases (
    id_type TEXT NOT NULL,
    identifier TEXT NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (id_type, identifier)
) WITHOUT ROWID"""  # schema m009; m012 adds SHARED_COLUMN and OUTPUT_INDEX
SHARED_COLUMN = "ALTER TABLE aliases ADD COLUMN shared INTEGER NOT NULL DEFAULT 0"
# A job's output as its answers named it (their Altmetric IDs): one row an output.
OUTPUT_INDEX = "CREATE INDEX aliases_output ON aliases (job_id) WHERE id_type = 'id'"


def identifiers_in(fields: Mapping[str, Any]) -> list[Identifier]:
    """The identifiers of an answer's identifier fields (`citation`'s, or the top
    level's), normalised, in ALIAS_FIELDS order, each once. A value that would not pass
    `enqueue` (malformed, a checksum that fails) is left out: nobody can enqueue it."""
    found: dict[Identifier, None] = {}
    for name, id_type in ALIAS_FIELDS:
        value = fields.get(name)
        for raw in value if isinstance(value, list) else [value]:
            if isinstance(raw, int) and not isinstance(raw, bool):
                raw = str(raw)
            if not isinstance(raw, str) or not raw.strip():
                continue
            try:
                found.setdefault(normalise(id_type, raw), None)
            except IdentifierError:
                continue
    return list(found)


def answer_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """An answer's identifier fields: its `citation`'s, with the top level's where the
    citation lacks one (as the derived `outputs.identifiers` reads them)."""
    citation = document.get("citation")
    fields = dict(citation) if isinstance(citation, dict) else {}
    for name, _ in ALIAS_FIELDS:
        if fields.get(name) in (None, "") and name in document:
            fields[name] = document[name]
    return fields


def outputs_named(outputs: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Identifier]]]:
    """(job_id, identifiers) of derived `outputs` rows: their `identifiers` JSON
    (column 7) and `altmetric_id` (column 3)."""
    for row in outputs:
        fields = json.loads(row[6])
        if row[2] is not None:
            fields["altmetric_id"] = row[2]
        yield row[1], identifiers_in(fields)


def output_aliases(outputs: Sequence[Sequence[Any]]) -> Iterator[tuple[str, str, int]]:
    """(id_type, identifier, job_id) for derived `outputs` rows (schema m009's fill)."""
    for job_id, identifiers in outputs_named(outputs):
        for identifier in identifiers:
            yield identifier.id_type, identifier.value, job_id


def altmetric_id_of(identifiers: Sequence[Identifier]) -> str | None:
    """The Altmetric ID among an answer's identifiers (`identifiers_in` puts it last)."""
    for identifier in reversed(identifiers):
        if identifier.id_type == "id":
            return identifier.value
    return None


# The aliases of a batch that are known for another job (each once, not shared): the
# batch goes in as a JSON array of [id_type, identifier, job_id, altmetric_id].
# json_extract, not `->>`: that operator needs SQLite 3.38, which not every Python has.
_KNOWN_ELSEWHERE = """
    SELECT DISTINCT a.id_type, a.identifier, a.job_id, json_extract(j.value, '$[3]')
    FROM json_each(?) AS j
    JOIN aliases AS a ON a.id_type = json_extract(j.value, '$[0]')
        AND a.identifier = json_extract(j.value, '$[1]')
    WHERE NOT a.shared AND a.job_id != json_extract(j.value, '$[2]')
        AND json_extract(j.value, '$[3]') IS NOT NULL"""


def add_aliases(conn: sqlite3.Connection, named: Iterable[tuple[int, Sequence[Identifier]]]) -> int:
    """Keep the identifiers answers stored for these jobs named (`(job_id, identifiers)`
    each), in the caller's transaction; how many became shared.

    An identifier new to the store is the job's. One already known for another job
    keeps that job when that job's output is this answer's (two jobs of one output,
    queued before either was answered) or is not known; known for another output, it
    is marked shared and finds neither from now on. A shared one stays shared."""
    rows = [
        (identifier.id_type, identifier.value, job_id, altmetric_id_of(identifiers))
        for job_id, identifiers in named
        for identifier in identifiers
    ]
    if not rows:
        return 0
    conn.executemany(
        "INSERT OR IGNORE INTO aliases (id_type, identifier, job_id) VALUES (?, ?, ?)",
        [row[:3] for row in rows],
    )
    shared = 0
    for id_type, value, job_id, altmetric_id in conn.execute(
        _KNOWN_ELSEWHERE, (json.dumps(rows),)
    ).fetchall():
        if same_output(conn, job_id, str(altmetric_id)) is False:
            shared += conn.execute(
                "UPDATE aliases SET shared = 1 WHERE id_type = ? AND identifier = ? AND NOT shared",
                (id_type, value),
            ).rowcount
    return shared


def same_output(conn: sqlite3.Connection, job_id: int, altmetric_id: str) -> bool | None:
    """Whether the job's output is the one with this Altmetric ID (True), another one
    (False), or not known (None: it has no answer naming an Altmetric ID yet)."""
    row = conn.execute(
        "SELECT job_id FROM aliases WHERE id_type = 'id' AND identifier = ?", (altmetric_id,)
    ).fetchone()
    if row is not None and row[0] == job_id:
        return True
    job = conn.execute("SELECT id_type, identifier FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if job is not None and job[0] == "id":
        return bool(job[1] == altmetric_id)
    named = {
        str(found)
        for (found,) in conn.execute(
            """SELECT identifier FROM aliases WHERE job_id = ? AND id_type = 'id'
               UNION SELECT altmetric_id FROM outputs
               WHERE job_id = ? AND altmetric_id IS NOT NULL""",
            (job_id, job_id),
        )
    }
    return altmetric_id in named if named else None


def job_of_output(conn: sqlite3.Connection, identifiers: Sequence[Identifier]) -> int | None:
    """The job of the output an answer names by `identifiers` (`identifiers_in`'s):
    the job queued under its Altmetric ID or holding an answer that named it; else the
    job of the first of its other identifiers (queued under it, or named by an answer
    stored for it) whose output is this one or not known yet, an ISBN only when the
    output is this one; else None. Shared identifiers find nothing."""
    altmetric_id = altmetric_id_of(identifiers)
    if altmetric_id is not None:
        for job_id in _jobs_under(conn, Identifier("id", altmetric_id)):
            return job_id
    for identifier in identifiers:
        if identifier.id_type == "id":
            continue
        for job_id in _jobs_under(conn, identifier):
            same = None if altmetric_id is None else same_output(conn, job_id, altmetric_id)
            if same or (same is None and identifier.id_type not in SHAREABLE_TYPES):
                return job_id
    return None


def _jobs_under(conn: sqlite3.Connection, identifier: Identifier) -> list[int]:
    """The job queued under `identifier`, then the job an answer named it for, unless
    it is shared (each once)."""
    alias = conn.execute(
        "SELECT job_id, shared FROM aliases WHERE id_type = ? AND identifier = ?", identifier
    ).fetchone()
    if alias is not None and alias[1]:
        return []
    queued = conn.execute(
        "SELECT id FROM jobs WHERE id_type = ? AND identifier = ?", identifier
    ).fetchone()
    found = [int(row[0]) for row in (queued, alias) if row is not None]
    return list(dict.fromkeys(found))


def job_identifier(
    conn: sqlite3.Connection, identifiers: Sequence[Identifier]
) -> Identifier | None:
    """The identifier to queue a new job of this output under: the first of
    `identifiers` (the best first) that no job is queued under and no answer of another
    output named (nor shared); None if there is none (an answer with no Altmetric ID
    whose identifiers all belong to others)."""
    for identifier in identifiers:
        if conn.execute(
            "SELECT 1 FROM jobs WHERE id_type = ? AND identifier = ?", identifier
        ).fetchone():
            continue
        if conn.execute(
            "SELECT 1 FROM aliases WHERE id_type = ? AND identifier = ?", identifier
        ).fetchone():
            continue
        return identifier
    return None


def job_of_answer(
    conn: sqlite3.Connection, identifiers: Sequence[Identifier], state: str, now: str
) -> tuple[int, bool] | None:
    """(job, whether it is new) for an answer from the dump or a discovery that names
    its output by `identifiers`: its output's job (`job_of_output`), else a new job in
    `state` under its best identifier of its own (`job_identifier`); None when it has
    none."""
    job_id = job_of_output(conn, identifiers)
    if job_id is not None:
        return job_id, False
    best = job_identifier(conn, identifiers)
    if best is None:
        return None
    cursor = conn.execute(
        """INSERT INTO jobs (id_type, identifier, state, next_attempt_at, created_at,
               updated_at) VALUES (?, ?, ?, ?, ?, ?)""",
        (best.id_type, best.value, state, now, now, now),
    )
    return int(cursor.lastrowid or 0), True


NO_IDENTIFIER_OF_ITS_OWN = "no identifier of its own (each is another output's, or shared)"


class _Naming(msgspec.Struct):
    """What of a record names its output: msgspec skips the rest (posts, images...)
    in C, a fraction of decoding the whole record."""

    citation: Any = None
    altmetric_id: Any = None
    doi: Any = None
    pmid: Any = None
    arxiv_id: Any = None
    ads_id: Any = None
    handle: Any = None
    handles: Any = None
    isbn: Any = None
    isbns: Any = None
    uri: Any = None
    ssrn: Any = None
    repec_id: Any = None
    urn: Any = None
    nct_id: Any = None
    dimensions_publication_id: Any = None


_NAMING = msgspec.json.Decoder(_Naming)
_NAMING_FIELDS = _Naming.__struct_fields__


def named_identifiers(body: bytes) -> tuple[list[Identifier], str]:
    """The identifiers a record (an answer from the dump or a discovery page) names its
    output by, or why it cannot be stored: not a JSON object, or no identifier an output
    could be found by."""
    try:
        naming = _NAMING.decode(body)
    except msgspec.DecodeError:
        return [], _not_an_object(body)
    document = {name: value for name in _NAMING_FIELDS if (value := getattr(naming, name))}
    identifiers = identifiers_in(answer_fields(document))
    if not identifiers:
        return [], "no identifier (doi, pmid, arxiv, ads, handle, isbn, uri, altmetric_id...)"
    return identifiers, ""


def _not_an_object(body: bytes) -> str:
    """Why a record that is not a JSON object is refused, in a few words."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        return f"not JSON ({error})"
    return f"not a JSON object (a {type(document).__name__})"
