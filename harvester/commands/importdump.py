"""`harvester import PATH [--as-of DATE]`: Altmetric's JSON dump into the store.

The dump streams through `harvester.dump` (never unpacked to disk) in batches; each
batch is one transaction of `store.imports`, with the position it reached, so a
killed import run again resumes after the last batch committed, and the store ends
as one clean run leaves it. Bad records are counted and reported with their member
and line. Before any of that, the file is read whole with every check it carries
(`harvester.dump.verify_dump`): a damaged or cut one stores nothing.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from harvester.commands.context import Invocation, new_store_kept_if_used
from harvester.dump import (
    DumpRecord,
    Rejected,
    Truncated,
    input_size_bytes,
    iter_records,
    verify_dump,
)
from harvester.errors import CommandError, DumpDamaged
from harvester.logs import get_logger
from harvester.model import ExitCode, iso_utc
from harvester.progress import ProgressLine, write_above
from harvester.store import Store
from harvester.store.imports import (
    REJECTS_KEPT,
    ImportedRecord,
    ImportTotals,
    saved_position,
    saved_totals,
)

BATCH_RECORDS = 500
PROGRESS_EVERY_S = 30.0  # off a terminal, an `import.progress` event this often
REJECTS_SHOWN = REJECTS_KEPT  # those a resumed run shows again
MB = 1_000_000

log = get_logger("harvester.commands.importdump")


def cmd_import(invocation: Invocation, path: str, *, as_of: str | None) -> ExitCode:
    """Import the dump at `path`; exit 1 if any record was rejected or it ends early."""
    dump = Path(path)
    fetched_at = _as_of(as_of) if as_of else None
    store_path = invocation.settings().store.path  # and logging configured
    total_bytes = _verify(dump)  # not a dump, or damaged: fails here, before any store
    with new_store_kept_if_used(store_path) as store:
        start_after = _resume_point(store, dump, total_bytes)
        if start_after:
            member, line = start_after
            print(f"harvester import: resuming after {member}:{line}", file=sys.stderr)
        run = ImportRun(store, dump, total_bytes, fetched_at)
        if start_after:
            run.resume(saved_totals(store.conn))
        run.read(iter_records(dump, start_after=start_after))
    return run.finish()


class ImportRun:
    """One import: batches into the store, the progress shown, the tally kept."""

    def __init__(self, store: Store, dump: Path, total_bytes: int, fetched_at: str | None) -> None:
        self._store = store
        self._key = {"path": str(dump.resolve()), "size": total_bytes}
        self._fetched_at = fetched_at
        self._progress = ProgressLine("import", max(1, total_bytes // MB), unit="MB")
        self._logged_s = time.monotonic()
        self.imported = self.present = self.rejected = 0
        self._shown: list[str] = []  # the first rejects, saved with the position
        self.truncated: str | None = None
        self.consumed = 0
        self.members = 0
        self._member: str | None = None

    def read(self, items: Iterator[DumpRecord | Rejected | Truncated]) -> None:
        batch: list[ImportedRecord] = []
        last: tuple[str, int] | None = None
        for item in items:
            self.consumed = item.consumed_bytes
            if isinstance(item, Truncated):
                self.truncated = f"{item.member or 'between members'}: {item.reason}"
                continue
            last = item.position
            if item.member != self._member:
                self._member, self.members = item.member, self.members + 1
            if isinstance(item, Rejected):
                self._reject(f"{item.member}:{item.line}: {item.reason}")
            else:
                batch.append(self._record(item))
            if len(batch) >= BATCH_RECORDS:
                self._store_batch(batch, last)
                batch = []
        self._store_batch(batch, last, finished=self.truncated is None)

    def finish(self) -> ExitCode:
        self._progress.close()
        if self.rejected > REJECTS_SHOWN:
            print(f"... and {self.rejected - REJECTS_SHOWN:,} more rejected", file=sys.stderr)
        if self.truncated:
            print(f"harvester import: the archive ends early ({self.truncated})", file=sys.stderr)
        print(
            f"imported {self.imported:,}, already present {self.present:,}, "
            f"rejected {self.rejected:,}"
        )
        log.info(
            "import.done", imported=self.imported, present=self.present, rejected=self.rejected
        )
        return ExitCode.FAILURE if self.rejected or self.truncated else ExitCode.OK

    def _record(self, item: DumpRecord) -> ImportedRecord:
        fetched_at = self._fetched_at or iso_utc(float(item.mtime_s))
        return ImportedRecord(item.body, fetched_at, item.member, item.line)

    def _reject(self, text: str) -> None:
        self.rejected += 1
        if self.rejected <= REJECTS_SHOWN:
            self._shown.append(text)
            write_above(sys.stderr, f"rejected {text}\n")

    def resume(self, totals: ImportTotals) -> None:
        """Go on from what the killed run had done (saved with its position): its
        counts, and its first rejects shown again, so this run ends as one clean run."""
        self.imported, self.present = totals.imported, totals.present
        for text in totals.shown:
            self._reject(text)
        self.rejected = totals.rejected

    def _totals(self) -> ImportTotals:
        return ImportTotals(self.imported, self.present, self.rejected, tuple(self._shown))

    def _store_batch(
        self, batch: list[ImportedRecord], last: tuple[str, int] | None, *, finished: bool = False
    ) -> None:
        """One transaction: the batch, and where the dump was read up to with the run's
        totals before it (the store adds the batch's), cleared once the whole dump is
        read, so importing it again reads it all and adds nothing."""
        position = None
        if last is not None:
            totals = self._totals().to_json()
            position = {**self._key, "member": last[0], "line": last[1], "totals": totals}
        if finished:
            position = {**self._key, "finished": True}
        counts = self._store.import_records(batch, json.dumps(position) if position else None)
        self.imported += counts.imported
        self.present += counts.present
        for text in counts.rejected:
            self._reject(text)
        for problem in counts.underived:
            log.warning("import.underived", problem=problem)
        self._show()

    def _show(self) -> None:
        records = self.imported + self.present + self.rejected
        self._progress.update(self.consumed // MB, f"{self.members:,} files, {records:,} records")
        now_s = time.monotonic()
        if not self._progress.enabled and now_s - self._logged_s >= PROGRESS_EVERY_S:
            self._logged_s = now_s
            log.info(
                "import.progress",
                files=self.members,
                records=records,
                imported=self.imported,
                read_bytes=self.consumed,
                total_bytes=self._key["size"],
            )


def _resume_point(store: Store, dump: Path, total_bytes: int) -> tuple[str, int] | None:
    """Where an earlier import of this very dump stopped, unless it finished."""
    saved = saved_position(store.conn)
    if not saved or saved.get("path") != str(dump.resolve()) or saved.get("size") != total_bytes:
        return None
    member, line = saved.get("member"), saved.get("line")
    if saved.get("finished") or not isinstance(member, str) or not isinstance(line, int):
        return None
    return member, line


def _as_of(text: str) -> str:
    """--as-of: a date or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--as-of {text!r} is not a date: give YYYY-MM-DD or an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when > datetime.now(UTC):
        raise CommandError(f"--as-of {text!r} is in the future: give the date the dump was made")
    return iso_utc(when.timestamp())


def _verify(dump: Path) -> int:
    """The first pass: the whole file read with every check it carries, before any
    record is stored; a damaged one ends the import with nothing stored. Returns the
    size the progress of reading it counts towards."""
    started_s = time.monotonic()
    try:
        iter_records(dump)  # a missing path, or one that is not a dump, fails at once
        total_bytes = input_size_bytes(dump)
        progress = ProgressLine("verify", max(1, total_bytes // MB), unit="MB")
        try:
            verified = verify_dump(dump, on_progress=lambda read: progress.update(read // MB))
        finally:
            progress.close()
    except DumpDamaged as error:
        raise CommandError(f"{error}: nothing imported") from None
    for caveat in verified.caveats:
        print(
            f"harvester import: {dump}: {caveat}: only its framing could be checked, "
            "not the bytes of the records",
            file=sys.stderr,
        )
    elapsed_s = round(time.monotonic() - started_s, 1)
    log.info("import.verified", compression=verified.compression, seconds=elapsed_s)
    return total_bytes
