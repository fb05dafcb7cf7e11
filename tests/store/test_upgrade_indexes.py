"""Schema m008: two indexes no query used (`outputs_latest_job`, `counts_source`)
dropped from a store that has them, every row kept, and the queries that looked
outputs up by job served by `outputs_job` instead."""

from __future__ import annotations

from pathlib import Path

from helpers import rows, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store

DROPPED = ("outputs_latest_job", "counts_source")
DERIVED = ("outputs", "counts", "readers", "score_context", "tweets", "posts")


def build_m007_store(db_path: Path, pool: list[bytes]) -> None:
    """A store as schema m007 left it, holding derived answers: written at today's
    schema, then given back the two indexes, with m008 not yet applied."""
    with Store(db_path) as store:
        for n, body in enumerate(pool):
            store_answer(store, Identifier("doi", f"10.5150/idx.{n}"), body)
        store.conn.execute("CREATE INDEX outputs_latest_job ON outputs (job_id) WHERE is_latest")
        store.conn.execute("CREATE INDEX counts_source ON counts (source, posts_count)")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm008_unused_indexes'")


def every_row(source: Path | Store) -> dict[str, list[tuple[object, ...]]]:
    return {table: rows(source, f"SELECT * FROM {table} ORDER BY 1, 2, 3") for table in DERIVED}


def indexes(source: Path | Store) -> set[str]:
    return {name for (name,) in rows(source, "SELECT name FROM sqlite_master WHERE type='index'")}


def test_the_upgrade_drops_the_two_indexes_and_keeps_every_row(db_path: Path) -> None:
    build_m007_store(db_path, universe.body_pool(12))
    before = every_row(db_path)
    assert set(DROPPED) <= indexes(db_path)
    Store(db_path, must_exist=True).close()  # a writing open applies m008
    assert not set(DROPPED) & indexes(db_path)
    assert {"outputs_job", "outputs_latest_journal", "outputs_latest_score"} <= indexes(db_path)
    assert every_row(db_path) == before
    assert sum(len(table) for table in before.values()) > 12 * 5


def test_a_new_store_never_has_them(store: Store) -> None:
    assert not set(DROPPED) & indexes(store)


def test_a_new_snapshot_after_the_upgrade_is_the_only_latest(db_path: Path) -> None:
    pool = universe.body_pool(3)
    build_m007_store(db_path, pool)
    with Store(db_path) as store:
        identifier = Identifier("doi", "10.5150/idx.1")
        newer = store_answer(store, identifier, pool[1])  # a refresh: a second snapshot
        plans = rows(
            store,
            "EXPLAIN QUERY PLAN UPDATE outputs SET is_latest = 0"
            f" WHERE job_id = 2 AND is_latest AND response_id < {newer}",
        )
        assert "outputs_job" in plans[0][-1]
        assert rows(store, "SELECT response_id, is_latest FROM outputs WHERE job_id = 2") == [
            (2, 0),
            (newer, 1),
        ]
        assert rows(store, "SELECT count(*) FROM latest_outputs") == [(3,)]


def test_an_index_made_again_by_hand_is_kept(db_path: Path) -> None:
    with Store(db_path) as store:
        store.conn.execute("CREATE INDEX counts_source ON counts (source, posts_count)")
    with Store(db_path) as again:
        assert "counts_source" in indexes(again)
