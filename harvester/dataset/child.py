"""The export as a process of its own, for the daemon's `[schedule] export_every`:
`python -m harvester.dataset STORE DIR`. The daemon's event loop awaits it, its memory
(pyarrow, row groups) is never the daemon's, it runs at a lower priority than the
harvest (`--nice`), and it reads the store read-only, so it never holds the writer.

It prints one JSON line, the run's summary, on stdout and exits 0; or one line saying
why on stderr, exit 1. SIGTERM (the daemon stopping) ends it like Ctrl-C: the files
it had written aside are dropped, or, once committed, the next run finishes the moves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from types import FrameType

from harvester.dataset.export import export_dataset
from harvester.errors import HarvesterError
from harvester.store.connection import explain_sqlite_error

NICE = 10  # below the harvest's priority: its workers and store thread come first


def command(store_path: Path, directory: str) -> list[str]:
    """The command line that runs one export of `store_path` into `directory`."""
    return [
        sys.executable, "-m", "harvester.dataset", str(store_path), directory,
        "--nice", str(NICE),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harvester.dataset")
    parser.add_argument("store", type=Path)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        summary = export_dataset(args.store, args.directory.expanduser(), rebuild=args.rebuild)
    except HarvesterError as error:
        return _failed(str(error))
    except sqlite3.Error as error:
        return _failed(explain_sqlite_error(error))
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        return _failed(f"{error.strerror or error}{where}")
    except KeyboardInterrupt:
        return _failed("stopped before the run was committed: the dataset is as it was")
    print(json.dumps(summary.to_dict()), flush=True)
    return 0


def _failed(message: str) -> int:
    print(message, file=sys.stderr, flush=True)
    return 1


def _terminated(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds: the staging area is dropped on the way out
