"""Full-text search on titles, for `harvester serve`: an FTS5 index of the latest
snapshot of every output (title, DOI, journal), in a small SQLite file of its own.

The store is opened read-only and never gets an index written into it: the index
lives in the user's cache directory (`$XDG_CACHE_HOME/altmetric-harvester/`), one file
per store, and is attached read-only to every connection Datasette makes to the store
(`harvester.web.app`), where `latest_outputs` searches it by `response_id`.

`refresh` brings the index up to the store: the outputs whose latest snapshot is newer
than what it holds are put in (their older snapshot taken out), in one transaction, so
a serve started again after a harvest only indexes the new answers. When the counts
disagree after that (a `derive --rebuild`, answers derived late, another store at the
same path), it is rebuilt whole, in the same transaction: readers see the old index or
the new one, never half of one. It runs before serving and then every minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from harvester.errors import StoreError
from harvester.store.connection import reader_uri

SCHEMA_VERSION = "1"  # a file of another version is rebuilt

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One row per output (its job): the latest snapshot's title, DOI and journal.
    """CREATE TABLE titles (
        job_id INTEGER PRIMARY KEY,
        response_id INTEGER NOT NULL UNIQUE,
        doi TEXT,
        title TEXT,
        journal TEXT
    )""",
    # External content: the text is kept once, in `titles`; the rowid is response_id,
    # which is what `latest_outputs` is searched by. Diacritics folded: "muller" finds
    # "Müller".
    """CREATE VIRTUAL TABLE titles_fts USING fts5(
        title, doi, journal, content='titles', content_rowid='response_id',
        tokenize='unicode61 remove_diacritics 2'
    )""",
)

_LATEST = """SELECT job_id, response_id, doi, title, journal FROM store.outputs
             WHERE is_latest AND response_id > ?"""


class Refreshed(NamedTuple):
    """What a refresh did: outputs indexed now, and those it (re)indexed."""

    outputs: int
    indexed: int
    rebuilt: bool


def index_path(store_path: Path, environ: dict[str, str] | None = None) -> Path:
    """Where the search index of `store_path` lives: the cache directory, named after
    the store and a hash of its full path (two stores never share one)."""
    environ = dict(os.environ) if environ is None else environ
    cache = environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    resolved = str(store_path.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    return Path(cache) / "altmetric-harvester" / f"{store_path.stem}-{digest}.search.db"


def refresh(store_path: Path, path: Path) -> Refreshed:
    """Bring the index at `path` up to the store's latest outputs (made if missing). A
    file there that is no index (damaged, or something else) is a cache: it is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _refresh_file(store_path, path)
    except _NotAnIndex:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return _refresh_file(store_path, path)


class _NotAnIndex(Exception):
    pass


def _refresh_file(store_path: Path, path: Path) -> Refreshed:
    with _connect(path) as conn:
        store_id = str(store_path.resolve())
        if _meta(conn, "version") != SCHEMA_VERSION or _meta(conn, "store") != store_id:
            _create(conn, store_id)
        conn.execute("ATTACH DATABASE ? AS store", (reader_uri(store_path),))  # ro or immutable
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _refresh(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE store")
    return result


def _refresh(conn: sqlite3.Connection) -> Refreshed:
    watermark = int(_meta(conn, "watermark") or 0)
    conn.execute(f"CREATE TEMP TABLE fresh AS {_LATEST}", (watermark,))
    indexed = conn.execute("SELECT count(*) FROM temp.fresh").fetchone()[0]
    conn.execute(
        """INSERT INTO titles_fts (titles_fts, rowid, title, doi, journal)
           SELECT 'delete', t.response_id, t.title, t.doi, t.journal
           FROM titles AS t JOIN temp.fresh USING (job_id)"""
    )
    conn.execute("INSERT OR REPLACE INTO titles SELECT * FROM temp.fresh")
    conn.execute(
        """INSERT INTO titles_fts (rowid, title, doi, journal)
           SELECT response_id, title, doi, journal FROM temp.fresh"""
    )
    conn.execute("DROP TABLE temp.fresh")
    outputs = conn.execute("SELECT count(*) FROM store.outputs WHERE is_latest").fetchone()[0]
    rebuilt = conn.execute("SELECT count(*) FROM titles").fetchone()[0] != outputs
    if rebuilt:
        conn.execute("INSERT INTO titles_fts (titles_fts) VALUES ('delete-all')")
        conn.execute("DELETE FROM titles")
        conn.execute(f"INSERT INTO titles {_LATEST}", (0,))
        conn.execute("INSERT INTO titles_fts (titles_fts) VALUES ('rebuild')")
        indexed = outputs
    newest = conn.execute("SELECT max(response_id) FROM titles").fetchone()[0]
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('watermark', ?)", (str(newest or 0),))
    return Refreshed(outputs, indexed, rebuilt)


def _create(conn: sqlite3.Connection, store_id: str) -> None:
    """An empty index for the store `store_id`, in place of whatever the file held."""
    conn.execute("BEGIN IMMEDIATE")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN"
        " ('meta', 'titles', 'titles_fts')"
    ).fetchall():
        conn.execute(f"DROP TABLE {name}")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)", (("version", SCHEMA_VERSION), ("store", store_id))
    )
    conn.execute("COMMIT")


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # no meta table: a new (or foreign) file
        return None
    except sqlite3.DatabaseError as error:  # not an SQLite file at all
        raise _NotAnIndex(str(error)) from None
    return None if row is None else str(row[0])


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """The index's one writer. WAL: Datasette's connections read it meanwhile."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}", uri=True)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the search index {path}: {error}") from None
    conn.isolation_level = None  # transactions are explicit
    try:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as error:  # "file is not a database"
            raise _NotAnIndex(str(error)) from None
        conn.execute("PRAGMA busy_timeout = 10000")
        yield conn
    except sqlite3.DatabaseError as error:
        raise StoreError(f"the search index {path} failed: {error}") from None
    finally:
        conn.close()
