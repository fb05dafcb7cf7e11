"""The schema: plain SQL in WAL mode, each migration once, older stores upgraded."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers import build_pre_compression_store, rows, run_on_a_terminal, store_answer
from sqlite_utils import Database

from harvester.cli import main
from harvester.errors import StoreError
from harvester.identifiers import Identifier
from harvester.model import iso_utc
from harvester.sim import universe
from harvester.store import Store, version
from harvester.store.schema import migrations


def test_schema_is_plain_sql_with_wal(store: Store, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "responses"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_reader_tells_a_current_store_without_loading_the_migrations(
    store: Store, db_path: Path
) -> None:
    """store.version names the migrations, so a read-only open (status, query) need
    not import sqlite-utils (issue 24); they must be the migrations that run."""
    with closing(sqlite3.connect(":memory:")) as empty:
        names = tuple(migration.name for migration in migrations.pending(Database(empty)))
    assert names == version.MIGRATIONS and migrations.name == version.MIGRATION_SET
    with closing(sqlite3.connect(db_path)) as conn, conn:
        assert version.is_current(conn)
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm003_error_index'")
    with closing(sqlite3.connect(db_path)) as conn:
        assert not version.is_current(conn)
    with pytest.raises(StoreError, match="written by an older version"):
        Store(db_path, read_only=True)


def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as again:
        assert again.jobs.counts_by_state()["pending"] == 0


def test_a_store_from_before_compression_is_upgraded_without_losing_a_byte(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = universe.body_pool(30)
    build_pre_compression_store(db_path, [*pool, b"Not Found", b"Not Found"])

    with pytest.raises(StoreError, match="older version"):
        Store(db_path, read_only=True)  # reading an old store waits for its upgrade
    assert main(["--db", str(db_path), "derive"]) == 0  # a writing command upgrades it
    assert f"derived {len(pool)} answers" in capsys.readouterr().out
    with Store(db_path, read_only=True) as reader:
        for n, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(n) == original
        assert reader.bodies.of_response(len(pool) + 2) == b"Not Found"
        assert rows(reader, "SELECT count(*) FROM bodies") == [(len(pool) + 1,)]
        assert "body" not in {row[1] for row in rows(reader, "PRAGMA table_info(responses)")}
    assert main(["--db", str(db_path), "verify"]) == 0


OLD_MENTIONS = [  # as schema m005 stored them: (job, source, key, url, title, posted_on,
    # author_name, author_id, tweet_id, first, last)
    (1, "twitter", "101", None, None, None, None, "42", 101, 1, 2),
    (1, "twitter", "102", None, None, None, None, "042", 102, 1, 1),
    (1, "twitter", "103", None, None, None, None, None, 103, 2, 2),
    (2, "twitter", "104", "https://twitter.com/x/1", "A titled tweet", None, "X", "7", 104, 3, 3),
    (2, "twitter", "not-a-number", None, None, None, None, "8", None, 3, 3),
    (
        2,
        "blogs",
        "https://blog.example/a",
        "https://blog.example/a",
        "A post",
        "2024-01-02T03:04:05+00:00",
        "Blogger",
        None,
        None,
        3,
        3,
    ),
]


def build_store_before_compact_mentions(db_path: Path) -> None:
    """A store as schema m005 left it, with mentions of every kind."""
    database = Database(db_path)
    migrations.apply(database, stop_before="m006_compact_mentions")
    now = iso_utc(time.time())
    database.execute(
        "INSERT INTO bodies VALUES (1, ?, 2, 'identity', NULL, X'7b7d')",
        (hashlib.sha256(b"{}").hexdigest(),),
    )
    for job_id in (1, 2):
        database.execute(
            "INSERT INTO jobs (id, id_type, identifier, state, next_attempt_at, created_at,"
            " updated_at) VALUES (?, 'doi', ?, 'done', ?, ?, ?)",
            (job_id, f"10.5150/m005.{job_id}", now, now, now),
        )
    for response_id, job_id in ((1, 1), (2, 1), (3, 2)):
        database.execute(
            "INSERT INTO responses VALUES (?, ?, 200, ?, 2, '{}', 'full', ?, 1)",
            (response_id, job_id, hashlib.sha256(b"{}").hexdigest(), now),
        )
    database.conn.executemany(
        "INSERT INTO mentions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_MENTIONS
    )
    database.conn.commit()
    database.close()


def test_mentions_move_into_tweets_and_posts_and_the_view_gives_them_back_unchanged(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_store_before_compact_mentions(db_path)
    assert main(["--db", str(db_path), "derive"]) == 0  # a writing command upgrades it
    assert "store.upgrade.done" in capsys.readouterr().err
    with Store(db_path, read_only=True) as reader:
        view = rows(reader, "SELECT * FROM mentions ORDER BY job_id, source, post_key")
        assert view == sorted(OLD_MENTIONS, key=lambda row: row[:3])
        assert rows(reader, "SELECT tweet_id, typeof(author_id) FROM tweets ORDER BY 1") == [
            (101, "integer"),
            (102, "text"),
            (103, "null"),
        ]
        assert rows(reader, "SELECT count(*) FROM posts") == [(3,)]
        assert rows(reader, "SELECT type FROM sqlite_master WHERE name = 'mentions'") == [("view",)]


def test_an_upgrade_that_moves_rows_shows_its_progress_on_a_terminal(db_path: Path) -> None:
    build_store_before_compact_mentions(db_path)
    code, shown = run_on_a_terminal("--db", str(db_path), "derive")
    assert code == 0, shown
    assert "upgrading the store: mentions into tweets and posts" in shown
    assert "upgrading the store: tweet ledger" not in shown  # nothing to move there
    with Store(db_path, read_only=True) as reader:
        assert rows(reader, "SELECT count(*) FROM mentions") == [(len(OLD_MENTIONS),)]


def test_m010_names_each_answers_endpoint_and_the_dumps_records(db_path: Path) -> None:
    [fetched, imported] = universe.body_pool(2)
    with Store(db_path) as store:
        store_answer(store, Identifier("doi", "10.5150/endpoint.fetched"), fetched)
        store_answer(store, Identifier("doi", "10.5150/endpoint.imported"), imported)
        store.conn.execute("UPDATE responses SET mode = 'dump' WHERE id = 2")
        store.conn.execute("ALTER TABLE responses DROP COLUMN endpoint")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm010_response_endpoint'")
    Store(db_path, must_exist=True).close()  # a writing open applies m010
    assert rows(db_path, "SELECT id, mode, endpoint FROM responses ORDER BY id") == [
        (1, "full", "fetch"),
        (2, "dump", "dump"),
    ]
