"""Rows into Parquet: typed Arrow batches, and each table's files of bounded size, one
folder a month.

pyarrow (the `parquet` extra) does the work: typing, zstd compression, statistics
readers prune row groups by. A file holds at most FILE_ROW_GROUPS row groups of at
most ROW_GROUP_ROWS rows or ROW_GROUP_BYTES of Arrow data, so a reader can split a
large table across many workers, and memory stays bounded: each month keeps at most
one row group waiting (a month's rows are written when the next month's begin, as
snapshots come in fetch order), and all of them together at most BUFFERED_BYTES (past
it, the largest is written, smaller).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harvester.dataset.tables import PARTITION, Column
from harvester.errors import ParquetUnavailable

ROW_GROUP_ROWS = 131_072
ROW_GROUP_BYTES = 64 << 20
FILE_ROW_GROUPS = 8  # ~1M rows a file
BUFFERED_BYTES = 64 << 20
COMPRESSION = "zstd"


@functools.cache
def pyarrow() -> tuple[ModuleType, ModuleType, ModuleType]:
    """pyarrow, pyarrow.parquet and pyarrow.compute, or a message saying how to get them.
    Its first `pa.array` of Python values imports pandas, when installed, to ask whether
    they are pandas' (0.17 s here): done now, so a run's clock starts after it."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(
            "a Parquet dataset needs pyarrow: pip install 'altmetric-harvester[parquet]'"
        ) from None
    pa.array((), pa.int64())
    return pa, pq, pc


def arrow_schema(columns: list[Column]) -> Any:
    """The Arrow schema of a table's files, each field carrying its description."""
    pa, _, _ = pyarrow()
    return pa.schema(
        [
            pa.field(
                column.name,
                _arrow_type(pa, column.type_name),
                metadata={"description": column.description},
            )
            for column in columns
        ]
    )


def _arrow_type(pa: Any, name: str) -> Any:
    types = {
        "int64": pa.int64(),
        "double": pa.float64(),
        "binary": pa.binary(),
        "string": pa.string(),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    }
    return types[name]


def to_batch(schema: Any, rows: list[tuple[Any, ...]]) -> Any:
    """Rows (tuples in the schema's order) as one Arrow record batch. SQLite lets any
    column hold any type and Arrow does not: a value that does not fit its column's
    type is converted where it means the same, else null, never an error."""
    pa, _, _ = pyarrow()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [_array(values, field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def tweets_batch(schema: Any, rows: list[tuple[Any, ...]]) -> Any:
    """Plain tweets (`increments.TWEET_COLUMNS` rows) as mentions, completed as the
    store's `mentions` view completes them: source 'twitter', the tweet ID as the key,
    no URL, title, date or author name. Done here, on whole columns, because SQLite
    making a string of every tweet ID and source took a third of a mention's time."""
    pa, _, pc = pyarrow()
    count = len(rows)
    response_id, job_id, tweet_id, author_id, first, last = (
        list(zip(*rows, strict=True)) if rows else [() for _ in range(6)]
    )
    tweets = _array(tweet_id, pa.int64())
    given = {
        "response_id": _array(response_id, pa.int64()),
        "job_id": _array(job_id, pa.int64()),
        "source": pa.repeat(pa.scalar("twitter", pa.string()), count),
        "post_key": pc.cast(tweets, pa.string()),
        "author_id": _array(author_id, pa.string()),
        "tweet_id": tweets,
        "first_response_id": _array(first, pa.int64()),
        "last_response_id": _array(last, pa.int64()),
    }
    arrays = [given.get(field.name, pa.nulls(count, field.type)) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: tuple[Any, ...], arrow_type: Any) -> Any:
    pa, _, pc = pyarrow()
    if pa.types.is_timestamp(arrow_type):
        text = _array(values, pa.string())
        try:  # ISO 8601 with Z or an offset, in C
            return pc.cast(text, arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.array([_moment(value) for value in values], arrow_type)
    try:
        return pa.array(values, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_fitted(value, arrow_type, pa) for value in values], arrow_type)


def _moment(value: Any) -> datetime.datetime | None:
    """A time the fast cast did not read: a date alone, or no offset (taken as UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _fitted(value: Any, arrow_type: Any, pa: Any) -> Any:
    if value is None:
        return None
    if arrow_type == pa.string():
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)
    if arrow_type == pa.int64():
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        return value if isinstance(value, int) and -(2**63) <= value < 2**63 else None
    if arrow_type == pa.float64():
        return float(value) if isinstance(value, int | float) else None
    if arrow_type == pa.binary() and isinstance(value, str):
        return value.encode()
    return value if isinstance(value, bytes) else None


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: str  # under the table's folder: fetched_month=2026-11/part-r00002-00000.parquet
    rows: int
    size_bytes: int


@dataclass
class _Month:
    """One month's rows waiting to become a row group, and the file they go to."""

    batches: list[Any] = field(default_factory=list)
    rows: int = 0
    size_bytes: int = 0
    writer: Any = None
    path: str = ""
    file_rows: int = 0
    file_groups: int = 0


class TableWriter:
    """A table's new files, under `root` (its folder in the staging area).

    Row groups are encoded, compressed and written on a thread of its own, in order,
    while the next is read (pyarrow lets go of the GIL meanwhile, and SQLite while it
    steps): at most one row group is written while the next fills."""

    def __init__(self, root: Path, schema: Any, *, run: int, partitioned: bool) -> None:
        self.root = root
        self.schema = schema
        self.run = run
        self.partitioned = partitioned
        self.rows = 0
        self.files: list[WrittenFile] = []
        self._months: dict[str, _Month] = {}
        self._last_month = ""
        self._sequence = 0
        self._writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self._pending: Future[None] | None = None

    def write(self, month: str, batch: Any) -> None:
        """Add rows; a month ('' where the table has no folders) gets them as its own."""
        if not batch.num_rows:
            return
        if month != self._last_month and self._last_month in self._months:
            # Snapshots come in fetch order: a month that gives way is mostly done
            # with, and its rows need not wait beside the next month's.
            self._flush(self._last_month)
        self._last_month = month
        waiting = self._months.setdefault(month, _Month())
        waiting.batches.append(batch)
        waiting.rows += batch.num_rows
        waiting.size_bytes += batch.nbytes
        self.rows += batch.num_rows
        if waiting.rows >= ROW_GROUP_ROWS or waiting.size_bytes >= ROW_GROUP_BYTES:
            self._flush(month)
        elif sum(other.size_bytes for other in self._months.values()) >= BUFFERED_BYTES:
            self._flush(max(self._months, key=lambda name: self._months[name].size_bytes))

    def close(self, empty_month: str | None = None) -> list[WrittenFile]:
        """Write what waits, close every file; with `empty_month`, a table that got no
        rows still gets one file (no rows, the schema), so readers find it."""
        for month, waiting in list(self._months.items()):
            self._flush(month)
            self._in_order(functools.partial(self._close_file, waiting))
        self._finish()
        if not self.files and empty_month is not None:
            month = empty_month if self.partitioned else ""
            waiting = _Month()
            self._open_file(month, waiting)
            self._close_file(waiting)
        return self.files

    def abort(self) -> None:
        """Close open files without finishing them (the staging area is discarded)."""
        with contextlib.suppress(Exception):
            self._finish()
        self._writing.shutdown(wait=True)
        for waiting in self._months.values():
            if waiting.writer is not None:
                with contextlib.suppress(Exception):
                    waiting.writer.close()
                waiting.writer = None

    def _flush(self, month: str) -> None:
        waiting = self._months[month]
        if not waiting.batches:
            return
        pa, _, _ = pyarrow()
        table = pa.Table.from_batches(waiting.batches, schema=self.schema)
        waiting.batches, waiting.rows, waiting.size_bytes = [], 0, 0
        self._in_order(functools.partial(self._write_group, month, waiting, table))

    def _in_order(self, task: Callable[[], None]) -> None:
        """Run `task` on the writing thread once the one before it is done (its error,
        if it failed, is raised here)."""
        if self._pending is not None:
            self._pending.result()
        self._pending = self._writing.submit(task)

    def _finish(self) -> None:
        """Wait for the writing thread to be done with everything, and stop it."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                pending.result()
        finally:
            self._writing.shutdown(wait=True)

    def _write_group(self, month: str, waiting: _Month, table: Any) -> None:
        if waiting.writer is None:
            self._open_file(month, waiting)
        waiting.writer.write_table(table, row_group_size=max(1, table.num_rows))
        waiting.file_rows += table.num_rows
        waiting.file_groups += 1
        if waiting.file_groups >= FILE_ROW_GROUPS:
            self._close_file(waiting)

    def _open_file(self, month: str, waiting: _Month) -> None:
        _, pq, _ = pyarrow()
        name = f"part-r{self.run:05d}-{self._sequence:05d}.parquet"
        self._sequence += 1
        waiting.path = f"{PARTITION}={month}/{name}" if self.partitioned else name
        target = self.root / waiting.path
        target.parent.mkdir(parents=True, exist_ok=True)
        waiting.writer = pq.ParquetWriter(target, self.schema, compression=COMPRESSION)
        waiting.file_rows = waiting.file_groups = 0

    def _close_file(self, waiting: _Month) -> None:
        if waiting.writer is None:
            return
        waiting.writer.close()
        waiting.writer = None
        target = self.root / waiting.path
        synced(target)
        self.files.append(WrittenFile(waiting.path, waiting.file_rows, target.stat().st_size))


def synced(path: Path) -> None:
    """Its bytes on the disk before anything names it (a file or a folder)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
