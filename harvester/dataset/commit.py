"""How a run changes a dataset so that, stopped at any point (Ctrl-C, SIGKILL, a full
disk, a power cut), the dataset stays what it was or the next run finishes the change.

Every new file is written aside, in `DIR/.staging/` (a sibling of the tables, so no
table's glob sees it), and synced to disk. Then the journal, `.staging/commit.json`,
says what moves where and holds the new manifest; once it is on disk the run is
committed: the files are renamed into their tables (a rename, atomic, on the same
filesystem), the manifest is replaced, and only then are the files it no longer
lists removed (the queue's earlier file; everything before a rebuild). A run that
finds a journal (the last one was stopped while moving) finishes those steps first;
a staging area without one (stopped while writing) is thrown away, and the dataset
is as it was.

Readers that follow the manifest always see whole runs. Readers that glob the folders
see a committed run's files a few milliseconds before its manifest, and the files it
replaces a few milliseconds after (only while the renames run, or, if the process
dies among them, until the next run finishes them); no table's folder is ever
missing. One export at a time writes a dataset: `exclusive` holds a lock beside it
(`DIR/.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.dataset.manifest import MANIFEST, write_atomically
from harvester.dataset.parquet import synced
from harvester.errors import DatasetError

STAGING = ".staging"
JOURNAL = "commit.json"
LOCK = ".lock"


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """The dataset's lock, held for the block; another export holding it is an error."""
    handle = (directory / LOCK).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(
                f"another export is writing {directory} (the daemon's schedule, or another"
                " `harvester export --dataset`): try again when it is done"
            ) from None
        yield
    finally:
        handle.close()


@dataclass(frozen=True)
class Journal:
    """What a committed run changes: the new files to move in (paths under the staging
    area and the dataset alike) and the manifest to write, which lists every file the
    dataset keeps."""

    moves: list[str]
    manifest: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"moves": self.moves, "manifest": self.manifest})


def recover(directory: Path) -> str | None:
    """Finish a committed run or discard an uncommitted one; what was done, if anything."""
    staging = directory / STAGING
    if not staging.exists():
        return None
    journal = staging / JOURNAL
    if journal.exists():
        value = json.loads(journal.read_text(encoding="utf-8"))
        apply(directory, Journal(value["moves"], value["manifest"]))
        return "finished the moves of a run stopped after it was committed"
    shutil.rmtree(staging)
    return "discarded the files of a run stopped before it was committed"


def staging_area(directory: Path) -> Path:
    staging = directory / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def commit(directory: Path, journal: Journal) -> None:
    """Make the run's change: the journal on disk first, then `apply`."""
    write_atomically(directory / STAGING / JOURNAL, journal.to_json())
    apply(directory, journal)


def apply(directory: Path, journal: Journal) -> None:
    """Move every new file in (over a file of the same name, for a rebuild), write the
    manifest, then remove what it no longer lists (the queue's earlier files, or all
    of a rebuild's predecessor) and the staging area. Safe to run again after a stop
    at any point: what is done is skipped. No table's folder is ever missing."""
    staging = directory / STAGING
    folders: set[Path] = set()
    for name in journal.moves:
        source, target = staging / name, directory / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            folders.add(target.parent)
    for folder in folders:
        synced(folder)
    write_atomically(directory / MANIFEST, json.dumps(journal.manifest, indent=1) + "\n")
    _remove_unlisted(directory, journal.manifest["tables"])
    shutil.rmtree(staging)


def _remove_unlisted(directory: Path, tables: dict[str, Any]) -> None:
    for table, described in tables.items():
        listed = set(described["files"])
        folder = directory / table
        for path in sorted(folder.rglob("*.parquet")):
            if str(path.relative_to(directory)) not in listed:
                path.unlink()
        for empty in sorted(folder.glob("*/"), reverse=True):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()


def refuse_foreign(directory: Path, tables: set[str]) -> None:
    """A directory that holds something other than a dataset is not written into (a
    mistyped DIR must not fill someone's home folder, nor --rebuild empty it)."""
    ours = {*tables, MANIFEST, LOCK, STAGING, f".{MANIFEST}.partial"}
    foreign = sorted(entry.name for entry in directory.iterdir() if entry.name not in ours)
    if foreign and not (directory / MANIFEST).exists():
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise DatasetError(
            f"{directory} is not empty and holds no dataset ({shown}): give a new or empty"
            " directory"
        )
