"""`harvester query "SQL"`: one statement on a read-only connection (the store's
`tables.run_query` guards it), its rows printed as a table, CSV or JSON."""

from __future__ import annotations

import sys
from typing import Literal

from harvester.commands.context import Invocation
from harvester.commands.formats import rows_as_csv, rows_as_json, rows_as_table
from harvester.errors import CommandError
from harvester.model import ExitCode
from harvester.store.tables import run_query

QueryFormat = Literal["table", "csv", "json"]


def cmd_query(invocation: Invocation, sql: str, *, output_format: QueryFormat) -> ExitCode:
    """`harvester query SQL [--format table|csv|json]`: exit 1 if SQLite refuses it."""
    if not sql.strip():
        raise CommandError('no SQL given (e.g. harvester query "SELECT count(*) FROM jobs")')
    writers = {"table": rows_as_table, "csv": rows_as_csv, "json": rows_as_json}
    with invocation.open_store(read_only=True) as store:
        rows = run_query(store, sql)
        if not rows.columns:  # comments, `;`, or a statement that returns nothing
            raise CommandError(
                "the SQL holds no statement that returns rows (only comments or ';'?)"
            )
        writers[output_format](rows, sys.stdout, lambda _count: None)
    return ExitCode.OK
