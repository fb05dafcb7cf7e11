"""One output, one job, whichever of its identifiers it is known by.

An answer names its output by several identifiers (a DOI, a PubMed ID, an arXiv ID,
handles, ISBNs, its Altmetric ID...). Each of them, normalised as `enqueue` normalises
what users type, is kept in `aliases` with the job whose answer named it, so that an
output imported from the dump under its DOI is found again when someone enqueues its
PubMed ID, and no output gets two jobs. Aliases are written with the derived rows: a
store with `store.derive = false` learns them at `harvester derive`.
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

SCHEMA = """CREATE TABLE aliases (
    id_type TEXT NOT NULL,
    identifier TEXT NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (id_type, identifier)
) WITHOUT ROWID"""


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


def output_aliases(outputs: Sequence[Sequence[Any]]) -> Iterator[tuple[str, str, int]]:
    """(id_type, identifier, job_id) for derived `outputs` rows: their `identifiers`
    JSON (column 7) and `altmetric_id` (column 3)."""
    for row in outputs:
        fields = json.loads(row[6])
        if row[2] is not None:
            fields["altmetric_id"] = row[2]
        for identifier in identifiers_in(fields):
            yield identifier.id_type, identifier.value, row[1]


def add_aliases(conn: sqlite3.Connection, aliases: Iterable[tuple[str, str, int]]) -> None:
    """Keep these aliases; an identifier already known keeps its first job."""
    conn.executemany("INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", aliases)


def job_known_as(conn: sqlite3.Connection, identifiers: Sequence[Identifier]) -> int | None:
    """The job of the first of `identifiers` the store knows: queued under it, or named
    by an answer stored for another job."""
    for id_type, value in identifiers:
        row = conn.execute(
            "SELECT id FROM jobs WHERE id_type = ? AND identifier = ?", (id_type, value)
        ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT job_id FROM aliases WHERE id_type = ? AND identifier = ?",
                (id_type, value),
            ).fetchone()
        if row is not None:
            return int(row[0])
    return None


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
