"""Stored data on its way out, for `export`, `query` and `show`: rows as CSV, JSON
lines, one JSON array, an aligned table or Parquet, and a stored answer parsed.

Every writer streams: rows go out as they are read, never all held. Each returns the
rows it wrote and calls `on_row` with the count so far (a progress bar's feed).
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable
from typing import IO, Any

from harvester import __version__
from harvester.errors import ParquetUnavailable
from harvester.store.tables import Rows

TABLE_MAX_ROWS = 1_000
TABLE_MAX_CELL = 48
PARQUET_BATCH_ROWS = 50_000
PARQUET_BATCH_BYTES = 64 << 20  # big bodies: a row group holds at most ~64 MB of text


def rows_as_csv(rows: Rows, out: IO[str], on_row: Callable[[int], None]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows.columns)
    count = 0
    for count, row in enumerate(rows.rows, start=1):
        writer.writerow([plain_value(value) for value in row])
        on_row(count)
    return count


def rows_as_jsonl(rows: Rows, out: IO[str], on_row: Callable[[int], None]) -> int:
    count = 0
    for count, row in enumerate(rows.rows, start=1):
        record = {name: plain_value(value) for name, value in zip(rows.columns, row, strict=True)}
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        on_row(count)
    return count


def rows_as_json(rows: Rows, out: IO[str], on_row: Callable[[int], None]) -> int:
    """One JSON array of objects, written as it goes."""
    out.write("[")
    count = 0
    for count, row in enumerate(rows.rows, start=1):
        record = {name: plain_value(value) for name, value in zip(rows.columns, row, strict=True)}
        out.write("\n" if count == 1 else ",\n")
        out.write(json.dumps(record, ensure_ascii=False))
        on_row(count)
    out.write("\n]\n" if count else "]\n")
    return count


def rows_as_table(rows: Rows, out: IO[str], on_row: Callable[[int], None]) -> int:
    """Aligned columns for people: the first TABLE_MAX_ROWS rows, long cells cut."""
    shown: list[list[str]] = []
    count = 0
    for count, row in enumerate(rows.rows, start=1):
        if count <= TABLE_MAX_ROWS:
            shown.append([_cell(value) for value in row])
        on_row(count)
    widths = [len(name) for name in rows.columns]
    for cells in shown:
        widths = [max(width, len(cell)) for width, cell in zip(widths, cells, strict=True)]
    out.write(
        "  ".join(
            name.ljust(width) for name, width in zip(rows.columns, widths, strict=True)
        ).rstrip()
        + "\n"
    )
    out.write("  ".join("-" * width for width in widths) + "\n")
    for cells in shown:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
            + "\n"
        )
    more = count - len(shown)
    note = f" (the first {len(shown):,} shown; --format csv or json gives all)" if more else ""
    out.write(f"{count:,} rows{note}\n")
    return count


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(plain_value(value))
    text = text.replace("\n", " ")
    return text if len(text) <= TABLE_MAX_CELL else text[: TABLE_MAX_CELL - 1] + "…"


def rows_as_parquet(rows: Rows, path: Any, on_row: Callable[[int], None]) -> int:
    """Parquet through pyarrow (the `parquet` extra), in row groups of 50,000 rows or
    ~64 MB of text, whichever comes first, so memory stays bounded. Integer columns
    are int64, and the file says so to pandas too (`pandas_metadata`), so that
    `pd.read_parquet` gives them as nullable `Int64`, not as floats that round an ID
    past 2**53 (a tweet ID) wherever the column has a null."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(
            "Parquet export needs pyarrow: pip install 'altmetric-harvester[parquet]'"
        ) from None
    schema = pa.schema(
        [
            (name, _arrow_type(pa, declared))
            for name, declared in zip(rows.columns, rows.types, strict=True)
        ]
    )
    schema = schema.with_metadata({b"pandas": json.dumps(_pandas_metadata(pa, schema))})
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[tuple[Any, ...]] = []
        batch_bytes = 0
        for count, row in enumerate(rows.rows, start=1):
            batch.append(row)
            batch_bytes += sum(len(value) for value in row if isinstance(value, str | bytes))
            if len(batch) == PARQUET_BATCH_ROWS or batch_bytes >= PARQUET_BATCH_BYTES:
                writer.write_table(_arrow_table(pa, schema, batch))
                batch, batch_bytes = [], 0
            on_row(count)
        if batch or count == 0:
            writer.write_table(_arrow_table(pa, schema, batch))
    return count


def _arrow_type(pa: Any, declared: str) -> Any:
    """The Arrow type for a column SQLite declared as `declared` (affinity rules)."""
    name = declared.upper()
    if "INT" in name:
        return pa.int64()
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    if "BLOB" in name:
        return pa.binary()
    return pa.string()


def _pandas_metadata(pa: Any, schema: Any) -> dict[str, Any]:
    """What pandas writes into a Parquet file of a DataFrame (pyarrow reads it back):
    each column's pandas dtype, `Int64` for integers, and no index."""
    dtypes = {pa.int64(): ("int64", "Int64"), pa.float64(): ("float64", "float64")}
    dtypes |= {pa.binary(): ("bytes", "object"), pa.string(): ("unicode", "object")}
    return {
        "index_columns": [],
        "column_indexes": [],
        "columns": [
            {
                "name": field.name,
                "field_name": field.name,
                "pandas_type": dtypes[field.type][0],
                "numpy_type": dtypes[field.type][1],
                "metadata": None,
            }
            for field in schema
        ],
        "creator": {"library": "altmetric-harvester", "version": __version__},
        "pandas_version": "2.0.0",
    }


def _arrow_table(pa: Any, schema: Any, batch: list[tuple[Any, ...]]) -> Any:
    columns = list(zip(*batch, strict=True)) if batch else [() for _ in schema]
    arrays = [
        pa.array([_for_arrow(value, field.type, pa) for value in column], type=field.type)
        for column, field in zip(columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _for_arrow(value: Any, arrow_type: Any, pa: Any) -> Any:
    """SQLite lets any column hold any type; Arrow does not: coerce, never fail."""
    if value is None:
        return None
    if arrow_type == pa.string() and not isinstance(value, str):
        return str(plain_value(value))
    if arrow_type == pa.int64() and not isinstance(value, int):
        return int(value) if isinstance(value, float) and value.is_integer() else None
    if arrow_type == pa.float64() and not isinstance(value, int | float):
        return None
    if arrow_type == pa.binary() and isinstance(value, str):
        return value.encode()
    return value


def parse_body(body: bytes | None) -> Any:
    """The parsed JSON body, or None for a body that is not JSON (a 404's text)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def plain_value(value: Any) -> Any:
    """A cell as JSON and CSV can carry it: BLOBs become base64 text."""
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value
