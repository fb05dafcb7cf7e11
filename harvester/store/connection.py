"""Opening SQLite the way the store needs it, and its one kind of write transaction.

A reader opens the store `mode=ro`: it reads the log (`-wal`) a writer keeps beside
it, through the index (`-shm`) they share, and so it sees every commit at once. Where
the store's directory cannot be written (a read-only filesystem or directory), SQLite
cannot make that index, and a reader reads the file as immutable instead
(`immutable=1`: no lock, no log), which is right only because nothing can be writing
it there: no writer can make its log either. A log that holds changes, beside a store
that cannot be read through it, is refused rather than ignored.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harvester.errors import NO_STORE_HINT, StoreError
from harvester.logs import say


def connect(path: Path, *, read_only: bool, immutable: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas; read-only ones cannot write at all, and
    `immutable` ones (see `reads_immutable`) read the file alone."""
    if read_only:
        conn = sqlite3.connect(
            read_uri(path, immutable=immutable), uri=True, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
    with closed_on_error(conn):  # e.g. a file that is not SQLite
        # Autocommit: each statement is its own transaction unless we open one explicitly.
        conn.isolation_level = None
        # Long enough to wait out an admin command's transaction (enqueue, backfill).
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA foreign_keys = ON")
        # WAL + NORMAL: a crash never corrupts; a power cut may undo the last commits,
        # which only returns those jobs to the queue.
        conn.execute("PRAGMA synchronous = NORMAL")
        if not read_only:
            # 8 MiB of page cache (SQLite's default is 2). 64 MiB bought nothing measurable
            # (enqueue of 1M jobs into a fresh or a 2M-job store, a 100,000-output harvest,
            # derive --rebuild) and was ~60 MB of the daemon's RSS: the pages a write
            # misses are in the OS's cache, a read() away.
            conn.execute("PRAGMA cache_size = -8192")
            # Savepoints (one per derived answer) journal the pages they touch: in
            # memory that costs ~20 us an answer, in a temp file ~250 us. Readers keep
            # temp files, so a user's huge ORDER BY does not fill the memory.
            conn.execute("PRAGMA temp_store = MEMORY")
    return conn


@contextmanager
def closed_on_error(conn: sqlite3.Connection) -> Iterator[None]:
    """Close `conn` if the block raises: a store that cannot be opened leaves no
    connection behind for the garbage collector (Python 3.13 warns of each one)."""
    try:
        yield
    except BaseException:
        conn.close()
        raise


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction that takes the write lock up front (no deadlock
    between two writers that both started as readers)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_SQLITE_ADVICE = (
    ("database is locked", "the store stayed locked by another process for 60 s: try again"),
    ("database or disk is full", "the disk holding the store is full: free some space"),
    ("disk i/o error", "the disk failed while reading or writing the store"),
    ("file is not a database", "the store file is not an SQLite database"),
    ("database disk image is malformed", "the store file is damaged (see `harvester verify`)"),
    ("unable to open database", "cannot open the store: check the path and its permissions"),
    ("readonly database", "the store is read-only for this user: check the file's permissions"),
    ("not authorized", "SQLite refused the statement: only reads are allowed here"),
    ("interrupted", "interrupted"),
)


def explain_sqlite_error(error: Exception) -> str:
    """SQLite's terse message, in words a user can act on (SQLite's own kept after)."""
    text = str(error)
    for fragment, advice in _SQLITE_ADVICE:
        if fragment in text.lower():
            return f"{advice} ({text})"
    return f"the store failed: {text}"


def check_store_path(path: Path, *, must_exist: bool) -> None:
    """A mistyped path must never become a new, empty store: only `enqueue` creates
    one, and only in a directory that already exists."""
    if str(path) in ("", "."):
        raise StoreError("no store path: --db or store.path is empty")
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file")
    if must_exist and not path.exists():
        raise StoreError(f"no store at {path} ({NO_STORE_HINT})")
    if not path.parent.is_dir():
        raise StoreError(f"no directory {path.parent} for the store {path.name}")


def check_is_store(path: Path, tables: list[str], *, existed: bool) -> None:
    """Refuse someone else's database (our migrations would add tables to it) and any
    file that was there already but is no store, an empty one included: only a file
    this very open creates becomes a new store."""
    if not tables and not existed:
        return  # a new store
    if not {"jobs", "_sqlite_migrations"} <= set(tables):
        raise StoreError(f"{path} is not a harvester store (it has no jobs or migrations table)")


def reads_immutable(path: Path) -> bool:
    """Whether a reader of the store at `path` must read it as an immutable file: its
    directory cannot be written (`os.access` says so of a read-only filesystem too,
    even to root), so SQLite cannot make the `-shm` a `mode=ro` reader needs, and no
    writer can make the log it would write either. With a `-wal` and a `-shm` both
    there, SQLite reads through them (a writer that was there first may still be at
    work), so it does. A log with changes in it but no `-shm` cannot be read here,
    and ignoring it would show the store as it was before them: StoreError."""
    if os.access(path.parent, os.W_OK):
        return False
    log, index = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if log.exists() and index.exists():
        return False
    if _size(log):
        raise StoreError(
            f"{path}: its -wal holds changes that need a -shm this read-only directory cannot"
            " hold: copy both somewhere writable"
        )
    return True


def read_uri(path: Path, *, immutable: bool) -> str:
    """The URI a reader opens the store at `path` by (`mode=ro`, and `immutable=1`
    where `reads_immutable` says so)."""
    return f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if immutable else ''}"


def reader_uri(path: Path) -> str:
    """The URI for a reader of the store at `path` that opens it itself (the search
    index attaches it): `read_uri`, immutable where `reads_immutable` says so."""
    return read_uri(path, immutable=reads_immutable(path))


def say_immutable(path: Path) -> None:
    say_once(
        f"reading {path} as an immutable file: its directory is read-only, so nothing can"
        " be writing it",
        priority="info",
    )


_said: set[str] = set()


def say_once(text: str, *, priority: str) -> None:
    """A notice on stderr (`logs.say`), once a process: a command may open its store
    more than once."""
    if text not in _said:
        _said.add(text)
        say(text, priority=priority)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
