"""`harvester export --dataset DIR [--rebuild]`: the store as a Parquet dataset
(`harvester.dataset`): every table a researcher queries the first time, then what the
store gained since the last run. Progress on a terminal; the last line says what the
run added and up to which response. A directory that is a file, or holds something
other than a dataset (the store's own folder, say), is refused before anything is
written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harvester.commands.context import Invocation
from harvester.dataset import export_dataset
from harvester.logs import say
from harvester.model import ExitCode
from harvester.progress import ProgressLine


def cmd_export_dataset(invocation: Invocation, directory: Path, *, rebuild: bool) -> ExitCode:
    store_path = invocation.settings().store.path
    progress = ProgressLine("export dataset")
    try:
        summary = export_dataset(
            store_path,
            directory,
            rebuild=rebuild,
            on_rows=lambda table, rows: progress.update(rows, table),
        )
    finally:
        progress.close()
    if summary.recovered:
        say(f"harvester export: {summary.recovered}", priority="info")
    print(summary.line(), file=sys.stderr)
    return ExitCode.OK
