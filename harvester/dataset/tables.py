"""The dataset's tables: which the store gives, how each grows from run to run, how to
read it right, and each column's Arrow type and description (the words Datasette shows,
`store.descriptions`).

Four kinds of table:

- snapshots (`responses`, `outputs`, `counts`, `readers`, `score_context`): a row never
  changes once written, so each run appends the rows of the snapshots stored since the
  last, in the month folders of their `fetched_at`;
- latest (`latest_outputs`, `outputs_wide`, `mentions`): a row holds an output as its
  latest snapshot (`response_id`) showed it when exported. A newer snapshot of that
  output adds new rows, in its own month, and a mark in `superseded`; a row whose
  `response_id` is marked there is out of date, and an anti-join leaves it out;
- marks (`superseded`): appended, one file a run;
- state (`jobs`, the queue as it stands): written whole each run, small beside the rest
  (one row per output), and swapped in as one folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from harvester.store.descriptions import TABLES as STORE_TABLES
from harvester.store.increments import (
    MENTION_COLUMNS,
    OUTPUT_COLUMNS,
    RESPONSE_COLUMNS,
    SpanSource,
)

PARTITION = "fetched_month"  # Hive-style folders: fetched_month=2026-11/

# Times the store keeps as ISO 8601 text, typed as UTC timestamps in the dataset: the
# harvester's own, and the dates answers carry (with their offsets, turned to UTC).
TIME_COLUMNS = frozenset(
    (
        "fetched_at", "first_seen_at", "pubdate", "posted_on", "created_at", "updated_at",
        "next_attempt_at", "lease_expires_at",
    )
)  # fmt: skip


class Kind(StrEnum):
    SNAPSHOTS = "snapshots"
    LATEST = "latest"
    MARKS = "marks"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    kind: Kind
    spans: SpanSource | None  # what its month folders follow; None: not partitioned
    description: str
    extra: tuple[tuple[str, str, str], ...] = ()  # (column, declared type, description)

    @property
    def partitioned(self) -> bool:
        return self.spans is not None

    def read(self, path: str = "DIR") -> str:
        """How to read it right, in DuckDB's words (the manifest and the README say so)."""
        files = f"read_parquet('{path}/{self.name}/**/*.parquet', hive_partitioning = true)"
        if not self.partitioned:
            files = f"read_parquet('{path}/{self.name}/*.parquet')"
        if self.kind is Kind.LATEST:
            marks = f"read_parquet('{path}/superseded/*.parquet')"
            return (
                f"SELECT * FROM {files} AS t ANTI JOIN {marks} AS s"
                " ON t.response_id = s.response_id"
            )
        return f"SELECT * FROM {files}"


_AS_OF = (
    "the output's latest snapshot when this row was written (responses.id): the row is"
    " current unless superseded lists it"
)

TABLES: tuple[Table, ...] = (
    Table(
        "responses",
        Kind.SNAPSHOTS,
        "responses",
        "Every answer stored, without its bytes (bodies stay in the store:"
        " `harvester show` gives them).",
    ),
    Table(
        "outputs",
        Kind.SNAPSHOTS,
        "outputs",
        "One row per snapshot of an output, as in the store but for is_latest:"
        " latest_outputs holds the latest.",
    ),
    Table("counts", Kind.SNAPSHOTS, "outputs", STORE_TABLES["counts"].description),
    Table("readers", Kind.SNAPSHOTS, "outputs", STORE_TABLES["readers"].description),
    Table("score_context", Kind.SNAPSHOTS, "outputs", STORE_TABLES["score_context"].description),
    Table(
        "latest_outputs",
        Kind.LATEST,
        "latest",
        "The latest snapshot of each output, in the month folder of its fetched_at:"
        " read it without the rows superseded lists.",
    ),
    Table(
        "outputs_wide",
        Kind.LATEST,
        "latest",
        STORE_TABLES["outputs_wide"].description.removesuffix(" (a view).")
        + "; read it without the rows superseded lists.",
    ),
    Table(
        "mentions",
        Kind.LATEST,
        "latest",
        "One row per output and post, as of the output's latest snapshot (response_id),"
        " in that snapshot's month folder: read it without the rows superseded lists.",
        (("response_id", "INTEGER", _AS_OF),),
    ),
    Table(
        "superseded",
        Kind.MARKS,
        None,
        "Snapshots that were an output's latest in an earlier export and are no longer:"
        " rows of latest_outputs, outputs_wide and mentions with this response_id are"
        " out of date.",
        (
            ("response_id", "INTEGER", "the snapshot no longer latest (responses.id)"),
            ("job_id", "INTEGER", "its output's job (jobs.id)"),
            ("superseded_by", "INTEGER", "the output's latest snapshot now (responses.id)"),
        ),
    ),
    Table("jobs", Kind.STATE, None, STORE_TABLES["jobs"].description),
)

BY_NAME = {table.name: table for table in TABLES}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    declared: str  # SQLite's declared type ('' for none)
    description: str

    @property
    def type_name(self) -> str:
        """The Arrow type, by SQLite's affinity rules; times as UTC timestamps."""
        if self.name in TIME_COLUMNS:
            return "timestamp[us, tz=UTC]"
        declared = self.declared.upper()
        if "INT" in declared:
            return "int64"
        if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
            return "double"
        if "BLOB" in declared:
            return "binary"
        return "string"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type_name, "description": self.description}


def columns_of(table: Table, declared: dict[str, dict[str, str]]) -> list[Column]:
    """`table`'s columns, in the order its files hold them. `declared` gives each store
    table's and view's columns with their declared types (`increments.declared`)."""
    if table.name == "superseded":
        return [Column(*extra) for extra in table.extra]
    if table.name == "mentions":
        source = "mentions"
        names: tuple[str, ...] = MENTION_COLUMNS
    elif table.name == "outputs":
        source, names = "outputs", OUTPUT_COLUMNS
    elif table.name == "responses":
        source, names = "responses", RESPONSE_COLUMNS
    else:
        source, names = table.name, tuple(declared[table.name])
    described = STORE_TABLES[source].columns
    extra = {name: (kind, words) for name, kind, words in table.extra}
    found = []
    for name in names:
        kind, words = extra.get(name, (declared[source].get(name, ""), described.get(name, "")))
        found.append(Column(name, kind, words))
    return found


def partition_column() -> dict[str, Any]:
    return {
        "name": PARTITION,
        "type": "string",
        "description": "the snapshot's month, YYYY-MM (a folder, fetched_month=2026-11/)",
    }
