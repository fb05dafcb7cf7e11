"""A store's home name: the one name every process opens it by.

SQLite keeps a store's log (`-wal`), its index (`-shm`) and the locks on them beside
the NAME it opens. Two processes that reach one file by two names (a hard link, a file
bind-mounted elsewhere) keep two logs that know nothing of each other, and a later
write through either name replays its own log over pages the other has changed: the
store is damaged. A file cannot tell its names apart, so the store records one, its
home (`StoreHome`, in `daemon_state`): a writer records the name it opened when the
home is missing or no longer names this very file (device and inode), and checkpoints
it into the main file at once.

Every opening of a store (`reach`) reads the home from the main file alone, as an
immutable file (no log read, no lock taken, no file made; under a millisecond, most of
it SQLite reading the schema) and, when it names the same file by another name, opens
the store by that name, saying so once.
With no usable home, a store that has other names (hard links) and a non-empty log
beside the name given is refused: that log may be another name's, left behind.
Symlinks and relative paths resolve to one name; a bind-mounted directory holds the
same log files. The daemon's lock (`lock`) is taken beside the home, so every name
of a store meets one lock, and every other command meets SQLite's own through it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from harvester.errors import StoreError
from harvester.store.connection import say_once
from harvester.store.state import DaemonState

HOME_KEY = "store_home"  # daemon_state: the name every process opens the store by

_READ_ATTEMPTS = 3  # an immutable read may meet a page a checkpoint is rewriting


@dataclass(frozen=True, slots=True)
class StoreHome:
    """The `store_home` entry of `daemon_state`: `{"path": ...}`, the store's resolved
    path as the writer that recorded it opened it."""

    path: str

    def to_json(self) -> str:
        return json.dumps({"path": self.path})

    @classmethod
    def from_json(cls, text: str) -> StoreHome | None:
        """The entry, or None for one this version cannot read."""
        try:
            value = json.loads(text)
        except ValueError:
            return None
        path = value.get("path") if isinstance(value, dict) else None
        return cls(path) if isinstance(path, str) and path else None


def reach(path: Path) -> Path:
    """The name to open the store at `path` by: its home when that is the same file
    (said once if it is another name), else `path` resolved. A StoreError where a log
    beside the name given may be another name's, or the store's own is left beside a
    name it no longer has."""
    real = path.resolve()
    try:
        status = real.stat()
    except OSError:  # a new store (or one that opening will say is unreadable)
        return real
    recorded = read_home(real)
    home = None if recorded is None else Path(recorded.path)
    if home is not None and _is_file(home, status):
        if home != real:
            _say_redirected(path, home, stale_log=_has_log(real))
        return home
    if home is not None and not _exists(home) and _has_log(home):
        raise StoreError(  # opened without it, the store would lose what the log holds
            f"the store was moved from {home}, and its log is still there ({home.name}-wal):"
            f" move it beside {real.name}, or the store back"
        )
    if status.st_nlink > 1 and _has_log(real):
        raise StoreError(
            f"{path}: {status.st_nlink} hard links, no home name, and its -wal may be another"
            " link's log: remove the other links and run again"
        )
    return real


def read_home(real: Path) -> StoreHome | None:
    """The home recorded in the main file of the store at `real` (resolved), read as
    an immutable file, so that no log beside any name is read; None if there is none."""
    uri = f"{real.as_uri()}?mode=ro&immutable=1"
    for attempt in range(_READ_ATTEMPTS):
        try:
            conn = sqlite3.connect(uri, uri=True)
        except sqlite3.Error:
            return None
        try:
            row = conn.execute("SELECT value FROM daemon_state WHERE key = ?", (HOME_KEY,))
            found = row.fetchone()
        except sqlite3.OperationalError:  # no daemon_state: a new file, or not a store
            return None
        except sqlite3.DatabaseError:  # not SQLite, or a page read while it was written
            time.sleep(0.01 * (attempt + 1))
            continue
        finally:
            conn.close()
        return None if found is None else StoreHome.from_json(str(found[0]))
    return None


def record_home(conn: sqlite3.Connection, name: Path) -> None:
    """On a writer's connection, opened by `name` (resolved, as `reach` gave it):
    record `name` as the home unless the home already names this file, and checkpoint
    it into the main file, where `reach` reads it."""
    state = DaemonState(conn)
    saved = state.load(HOME_KEY)
    recorded = None if saved is None else StoreHome.from_json(saved[0])
    if recorded is not None and recorded.path == str(name):
        return
    if recorded is not None and _is_file(Path(recorded.path), name.stat()):
        if _same_log(Path(recorded.path), name):
            return  # one directory by two paths (a bind mount): one log, one home
        raise StoreError(  # recorded meanwhile, by a writer that opened it by that name
            f"another process gave {name.name} a home name ({recorded.path}) while it was"
            " being opened: run again"
        )
    state.save({HOME_KEY: StoreHome(str(name)).to_json()})
    _, frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if checkpointed < frames:  # a reader holds older pages: wait for it (busy timeout)
        conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()


def _is_file(candidate: Path, status: os.stat_result) -> bool:
    """Whether `candidate` names the file whose stat is `status`."""
    try:
        other = candidate.stat()
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (status.st_dev, status.st_ino)


def _same_log(one: Path, other: Path) -> bool:
    """Whether two names of a store keep one log: one name in one directory."""
    try:
        return one.name == other.name and _is_file(one.parent, other.parent.stat())
    except OSError:
        return False


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return False
    return True


def _has_log(name: Path) -> bool:
    """Whether a non-empty `-wal` lies beside `name`."""
    try:
        return name.with_name(name.name + "-wal").stat().st_size > 0
    except OSError:
        return False


def _say_redirected(given: Path, home: Path, *, stale_log: bool) -> None:
    say_once(f"opening {given} by its home name {home} (the same file)", priority="warning")
    if stale_log:
        say_once(
            f"{given}-wal is not this store's log (another program left it): it is not read",
            priority="warning",
        )
