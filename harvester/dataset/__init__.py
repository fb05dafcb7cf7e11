"""The store as a Parquet dataset (`harvester export --dataset DIR`), for Spark, DuckDB,
polars, pyarrow, R's arrow and whatever else reads a folder of Parquet files: every
table a researcher queries, one folder each, snapshot tables in month folders
(`fetched_month=2026-11/`), typed columns, zstd, and a manifest (`_dataset.json`) with
each column's description and the last response included. Run again, it adds only what
the store gained since, in new files; stopped at any point, the dataset stays readable.

Its rooms: `tables` (which tables, their kinds and columns), `parquet` (rows into
bounded files), `manifest`, `commit` (files aside, a journal, renames, the manifest
last), `export` (one run) and `__main__` (the run as a child process of the daemon,
`[schedule] export_every`). The SQL is the store's (`store.increments`); pyarrow, the
`parquet` extra, is imported only when a dataset is written.
"""

from __future__ import annotations

from harvester.dataset.export import ExportSummary, export_dataset

__all__ = ["ExportSummary", "export_dataset"]
