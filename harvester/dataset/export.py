"""One run of `export --dataset DIR`: the store's tables into a Parquet dataset, or what
the store gained since the dataset's last run (`tables` says how each table grows,
`commit` how a run lands whole or not at all).

The store is read in one read transaction (`increments.reading`): a daemon goes on
harvesting meanwhile and is never held up, and every table comes from one state of the
store. The run's watermark is the last response stored in that state; the next run
starts after it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.dataset.commit import (
    Journal,
    commit,
    exclusive,
    recover,
    refuse_foreign,
    staging_area,
)
from harvester.dataset.manifest import Manifest, check, check_derived, load
from harvester.dataset.parquet import (
    TableWriter,
    WrittenFile,
    arrow_schema,
    pyarrow,
    to_batch,
    tweets_batch,
)
from harvester.dataset.tables import TABLES, Kind, Table, columns_of, partition_column
from harvester.errors import DatasetError, counted
from harvester.model import iso_utc
from harvester.store import Store
from harvester.store.increments import (
    Span,
    SpanSource,
    StoreMark,
    all_rows,
    declared,
    outputs_through,
    reading,
    span_rows,
    spans,
    store_mark,
    superseded,
)

OnRows = Callable[[str, int], None]  # (table, rows written so far in the run)


@dataclass(frozen=True)
class ExportSummary:
    """What a run did, for the command's last line and the daemon's log."""

    directory: str
    run: int
    started_over: bool  # the first run, or --rebuild
    since: int  # the watermark it started after
    watermark: int  # the last response it includes
    rows: dict[str, int]
    files: int
    size_bytes: int
    seconds: float
    recovered: str | None  # what it did first about a run stopped before it

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "run": self.run,
            "started_over": self.started_over,
            "since": self.since,
            "watermark": self.watermark,
            "rows": self.rows,
            "files": self.files,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "recovered": self.recovered,
        }

    def line(self) -> str:
        tables = ", ".join(f"{name} {rows:,}" for name, rows in self.rows.items())
        after = "from the start" if self.started_over else f"after response {self.since:,}"
        return (
            f"exported run {self.run} to {self.directory}:"
            f" {counted(sum(self.rows.values()), 'row')} in {counted(self.files, 'file')}"
            f" ({tables}), {after} to response {self.watermark:,}"
        )


def export_dataset(
    store_path: Path, directory: Path, *, rebuild: bool = False, on_rows: OnRows | None = None
) -> ExportSummary:
    """Write the dataset at `directory` (made if missing, in an existing folder) from
    the store at `store_path`: everything the first time or with `rebuild`, else what
    the store gained since the manifest's watermark."""
    pyarrow()  # before anything is made: said at once when the extra is missing
    started_s = time.monotonic()  # after the imports: the run's own time
    with Store(store_path, read_only=True) as store:
        _prepare(directory)
        with exclusive(directory):
            recovered = recover(directory)
            refuse_foreign(directory, {table.name for table in TABLES})
            manifest = _previous(directory, rebuild)
            with reading(store.conn):
                mark = store_mark(store.conn)
                if manifest is not None:
                    check(manifest, mark, directory)
                    through = outputs_through(store.conn, manifest.watermark)
                    check_derived(manifest, through, directory)
                run = _Run(store, directory, mark, manifest, on_rows)
                written = run.write_all()
            seconds = time.monotonic() - started_s
            commit(directory, run.journal(written, str(store.opened_as), seconds))
    new_rows = {name: sum(file.rows for file in files) for name, files in written.items()}
    return ExportSummary(
        str(directory),
        run.number,
        manifest is None,
        run.since,
        mark.watermark,
        new_rows,
        sum(len(files) for files in written.values()),
        sum(file.size_bytes for files in written.values() for file in files),
        time.monotonic() - started_s,
        recovered,
    )


def _prepare(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise DatasetError(f"{directory} is a file: --dataset names a directory")
    if not directory.exists():
        if not directory.parent.is_dir():
            raise DatasetError(f"cannot make {directory}: no directory {directory.parent}")
        directory.mkdir()


def _previous(directory: Path, rebuild: bool) -> Manifest | None:
    """The manifest to continue from: none for a new dataset or a rebuild (which starts
    over even from a manifest this version cannot read)."""
    if rebuild:
        return None
    return load(directory)


class _Run:
    """The new files of one run, written into the staging area."""

    def __init__(
        self,
        store: Store,
        directory: Path,
        mark: StoreMark,
        manifest: Manifest | None,
        on_rows: OnRows | None,
    ) -> None:
        self.conn = store.conn
        self.directory = directory
        self.mark = mark
        self.manifest = manifest
        self.since = 0 if manifest is None else manifest.watermark
        self.number = 1 if manifest is None else manifest.next_run
        self.on_rows = on_rows
        self.rows = 0
        sources = {"mentions", *(table.name for table in TABLES if table.kind is not Kind.MARKS)}
        self.declared = {name: declared(self.conn, name) for name in sources}
        self.columns = {table.name: columns_of(table, self.declared) for table in TABLES}
        self._spans: dict[SpanSource, list[Span]] = {}

    def write_all(self) -> dict[str, list[WrittenFile]]:
        staging = staging_area(self.directory)
        this_month = time.strftime("%Y-%m", time.gmtime())
        written: dict[str, list[WrittenFile]] = {}
        try:
            for table in TABLES:
                written[table.name] = self._write(table, staging, this_month)
        except BaseException:
            # Nothing named these files: the next run discards them (`commit.recover`),
            # and so does this one on its way out where it can.
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return written

    def _write(self, table: Table, staging: Path, this_month: str) -> list[WrittenFile]:
        schema = arrow_schema(self.columns[table.name])
        writer = TableWriter(
            staging / table.name, schema, run=self.number, partitioned=table.partitioned
        )
        try:
            for month, batch in self._batches(table, schema):
                writer.write(month, batch)
                self.rows += batch.num_rows
                if self.on_rows is not None:
                    self.on_rows(table.name, self.rows)
            # A new dataset has every table, if only as an empty file: readers find it.
            return writer.close(empty_month=this_month if self.manifest is None else None)
        except BaseException:
            writer.abort()
            raise

    def _batches(self, table: Table, schema: Any) -> Iterator[tuple[str, Any]]:
        if table.kind is Kind.MARKS:
            for chunk in superseded(self.conn, self.since):
                yield "", to_batch(schema, chunk)
        elif table.kind is Kind.STATE:
            for chunk in all_rows(self.conn, table.name):
                yield "", to_batch(schema, chunk)
        else:
            assert table.spans is not None
            if table.spans not in self._spans:  # a few per 5,000 snapshots: kept
                self._spans[table.spans] = list(spans(self.conn, table.spans, self.since))
            for span in self._spans[table.spans]:
                if table.name == "mentions":
                    for chunk in span_rows(self.conn, "tweets", span):
                        yield span.month, tweets_batch(schema, chunk)
                    for chunk in span_rows(self.conn, "posts", span):
                        yield span.month, to_batch(schema, chunk)
                else:
                    for chunk in span_rows(self.conn, table.name, span):
                        yield span.month, to_batch(schema, chunk)

    def journal(
        self, written: dict[str, list[WrittenFile]], store_path: str, seconds: float
    ) -> Journal:
        """The moves and swaps that land this run, and the manifest that says so."""
        before = self.manifest
        moves: list[str] = []
        tables: dict[str, dict[str, Any]] = {}
        for table in TABLES:
            files = [f"{table.name}/{file.path}" for file in written[table.name]]
            rows = sum(file.rows for file in written[table.name])
            moves += files
            if before is not None and table.kind is not Kind.STATE:
                files = [*before.tables[table.name]["files"], *files]
                rows += int(before.tables[table.name]["rows"])
            tables[table.name] = self._described(table, rows, files)
        runs = [] if before is None else list(before.runs)
        runs.append(
            {
                "run": self.number,
                "at": iso_utc(time.time()),
                "since": self.since,
                "watermark": self.mark.watermark,
                "rows": {name: sum(file.rows for file in files) for name, files in written.items()},
                "seconds": round(seconds, 3),
            }
        )
        manifest = Manifest(
            self.mark.identity,
            store_path,
            self.mark.schema,
            self.mark.watermark,
            self.mark.outputs_through,
            tables,
            runs,
        )
        return Journal(moves, manifest.to_dict())

    def _described(self, table: Table, rows: int, files: list[str]) -> dict[str, Any]:
        columns = [column.to_dict() for column in self.columns[table.name]]
        return {
            "kind": str(table.kind),
            "description": table.description,
            "partitioning": [partition_column()] if table.partitioned else [],
            "columns": columns,
            "read": table.read(),
            "rows": rows,
            "files": files,
        }
