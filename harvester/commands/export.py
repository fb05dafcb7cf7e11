"""`harvester export`: every row of a table or view (optionally filtered), as JSON
lines, CSV or Parquet; or, without `--table`, one record per job with a response.

The file named by `--output` never overwrites the store and appears only once it is
whole (see `output`); without `--output`, rows go to stdout. A damaged body is written
as null, the export goes on to the end, and then fails (exit 1) saying how many.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from harvester.commands.context import Invocation
from harvester.commands.formats import parse_body, rows_as_csv, rows_as_jsonl, rows_as_parquet
from harvester.commands.output import refuse_store_files, replace_on_success, text_output
from harvester.errors import CommandError, counted
from harvester.logs import say
from harvester.model import ExitCode
from harvester.progress import ProgressLine
from harvester.store import Store
from harvester.store.tables import count_rows, export_rows

ExportFormat = Literal["jsonl", "csv", "parquet"]

EXPORT_FIELDS = ("type", "identifier", "state", "http_status", "sha256", "fetched_at", "mode")


def cmd_export(
    invocation: Invocation,
    output_format: ExportFormat,
    *,
    table: str | None,
    where: str | None,
    output: Path | None,
) -> ExitCode:
    """`harvester export --format F [--table NAME] [--where SQL] [--output FILE]`."""
    path = invocation.settings().store.path
    if output is not None:
        # Before anything is opened for writing: never over the store's own files.
        refuse_store_files(output, path)
        if not output.resolve().parent.is_dir():
            raise CommandError(f"cannot write {output}: no directory {output.parent}")
    if table is None:
        return _export_jobs(path, output_format, where=where, output=output)
    writers = {"jsonl": rows_as_jsonl, "csv": rows_as_csv}
    with Store(path, read_only=True) as store:
        rows = export_rows(store, table, where, typed=output_format == "parquet")
        progress = ProgressLine(f"export {table}")
        if progress.enabled:
            progress.total = count_rows(store, table, where)
        if output_format == "parquet":
            if output is None:
                raise CommandError("--format parquet needs --output FILE")
            with replace_on_success(output) as partial:
                count = rows_as_parquet(rows, str(partial), progress.update)
        else:
            with text_output(output) as out:
                count = writers[output_format](rows, out, progress.update)
        progress.close()
        damaged = store.bodies.damaged_reads
    print(f"exported {counted(count, 'row')} of {table}", file=sys.stderr)
    return _verdict(damaged)


def _export_jobs(
    path: Path, output_format: ExportFormat, *, where: str | None, output: Path | None
) -> ExitCode:
    """Without --table: one record per job with a response (the original export)."""
    if where is not None or output_format == "parquet":
        raise CommandError("--where and --format parquet need --table NAME")
    writer = write_jsonl if output_format == "jsonl" else write_csv
    with Store(path, read_only=True) as store:
        progress = ProgressLine("export")
        if progress.enabled:  # a scan: only when a bar will show it
            progress.total = store.responses.count_jobs()
        with text_output(output) as out:
            count = writer(store, out, progress.update)
        progress.close()
        damaged = store.bodies.damaged_reads
    print(f"exported {counted(count, 'record')}", file=sys.stderr)
    return _verdict(damaged)


def _verdict(damaged: int) -> ExitCode:
    """A damaged body is exported as null rather than stopping the export, so the file
    holds every row; but it is not what was stored, so the export fails (exit 1), in
    one line that says how many."""
    if not damaged:
        return ExitCode.OK
    say(
        f"harvester export: {damaged:,} stored bodies are damaged and were exported as null "
        "(`harvester verify` lists them, and how to fetch them again)"
    )
    return ExitCode.FAILURE


def export_records(store: Store, *, with_body: bool) -> Iterator[dict[str, Any]]:
    """One record per job that has a response, from its latest response."""
    for (
        id_type,
        identifier,
        state,
        status,
        sha256,
        fetched_at,
        mode,
        body,
    ) in store.responses.iter_latest(with_body=with_body):
        record: dict[str, Any] = {
            "type": id_type,
            "identifier": identifier,
            "state": state,
            "http_status": status,
            "sha256": sha256,
            "fetched_at": fetched_at,
            "mode": mode,
        }
        if with_body:
            record["body"] = parse_body(body)
        yield record


def write_jsonl(store: Store, out: IO[str], on_record: Callable[[int], None]) -> int:
    count = 0
    for count, record in enumerate(export_records(store, with_body=True), start=1):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        on_record(count)
    return count


def write_csv(store: Store, out: IO[str], on_record: Callable[[int], None]) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for count, record in enumerate(export_records(store, with_body=False), start=1):
        writer.writerow(record)
        on_record(count)
    return count
