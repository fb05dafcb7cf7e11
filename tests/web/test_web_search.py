"""Full-text search on titles: an FTS5 index of the latest outputs in a file of its own
(never in the store), brought up to the store incrementally, searched from the
`latest_outputs` page of Datasette."""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from datasette.app import Datasette
from helpers import rows, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.web import search

OpenDatasette = Callable[[Path, Path | None], Datasette]


def index_rows(index: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(index)) as conn:
        return conn.execute(sql).fetchall()


def assert_consistent(index: Path, store: Path) -> None:
    """The index holds the latest snapshot of every output, and FTS5 agrees with it."""
    assert index_rows(index, "SELECT job_id, response_id, doi, title, journal FROM titles") == (
        rows(
            store,
            "SELECT job_id, response_id, doi, title, journal FROM latest_outputs ORDER BY job_id",
        )
    )
    index_rows(index, "INSERT INTO titles_fts (titles_fts) VALUES ('integrity-check')")


async def searched(datasette: Datasette, query: str) -> list[int]:
    """The response_ids the `latest_outputs` page finds for `query`."""
    response = await datasette.client.get(
        "/store/latest_outputs.json",
        params={"_search": query, "_shape": "array", "_col": "response_id", "_size": "max"},
    )
    assert response.status_code == 200, response.text
    return sorted(row["response_id"] for row in response.json())


def with_word(store: Path, word: str) -> list[int]:
    """The latest outputs whose title has `word` (case aside), as FTS5 splits words."""
    return sorted(
        response_id
        for response_id, title in rows(store, "SELECT response_id, title FROM latest_outputs")
        if word in re.findall(r"\w+", (title or "").lower())
    )


async def test_the_latest_outputs_page_searches_titles_dois_and_journals(
    bodies_store: Path, tmp_path: Path, datasette_of: OpenDatasette
) -> None:
    index = tmp_path / "search.db"
    assert search.refresh(bodies_store, index) == search.Refreshed(60, 60, False)
    assert_consistent(index, bodies_store)
    datasette = datasette_of(bodies_store, index)
    page = (await datasette.client.get("/store/latest_outputs")).text
    assert 'name="_search"' in page  # the search box
    for word in ("policy", "cell", "network"):
        assert await searched(datasette, word) == with_word(bodies_store, word) != []
    [(response_id, doi)] = rows(
        bodies_store, "SELECT response_id, doi FROM latest_outputs WHERE job_id = 7"
    )
    assert await searched(datasette, doi) == [response_id]
    umlauts = [
        response_id
        for response_id, title in rows(bodies_store, "SELECT response_id, title FROM outputs")
        if "müller" in (title or "").lower()
    ]
    assert umlauts and set(umlauts) <= set(await searched(datasette, "muller"))
    assert await searched(datasette, "zzzunheardof") == []


def test_a_refresh_indexes_only_what_changed_and_the_store_is_never_written(
    bodies_store: Path, tmp_path: Path
) -> None:
    index = tmp_path / "cache" / "search.db"
    search.refresh(bodies_store, index)
    store_bytes = hashlib.sha256(bodies_store.read_bytes()).hexdigest()
    beside = sorted(path.name for path in bodies_store.parent.iterdir())
    assert search.refresh(bodies_store, index) == search.Refreshed(60, 0, False)
    assert hashlib.sha256(bodies_store.read_bytes()).hexdigest() == store_bytes
    assert sorted(path.name for path in bodies_store.parent.iterdir()) == beside
    pool = universe.body_pool(62)
    with Store(bodies_store) as store:
        store_answer(store, Identifier("doi", "10.5150/web.3"), pool[60])  # a new snapshot
        store_answer(store, Identifier("doi", "10.5150/web.new"), pool[61])  # a new output
    assert search.refresh(bodies_store, index) == search.Refreshed(61, 2, False)
    assert_consistent(index, bodies_store)


def test_an_index_that_disagrees_with_the_store_is_rebuilt(
    bodies_store: Path, tmp_path: Path
) -> None:
    index = tmp_path / "search.db"
    search.refresh(bodies_store, index)
    with contextlib.closing(sqlite3.connect(index)) as conn, conn:
        conn.execute("DELETE FROM titles WHERE job_id = 5")  # as if derived late
    assert search.refresh(bodies_store, index) == search.Refreshed(60, 60, True)
    assert_consistent(index, bodies_store)


def test_a_file_that_is_no_index_is_replaced(bodies_store: Path, tmp_path: Path) -> None:
    index = tmp_path / "search.db"
    index.write_bytes(b"not a database at all" * 100)
    assert search.refresh(bodies_store, index) == search.Refreshed(60, 60, False)
    assert_consistent(index, bodies_store)
    with contextlib.closing(sqlite3.connect(index)) as conn, conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'version'")  # another version
    assert search.refresh(bodies_store, index) == search.Refreshed(60, 60, False)
    assert_consistent(index, bodies_store)


def test_each_store_has_its_own_index_in_the_cache_directory(tmp_path: Path) -> None:
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    one = search.index_path(tmp_path / "a" / "altmetric.db", environ)
    other = search.index_path(tmp_path / "b" / "altmetric.db", environ)
    assert one.parent == other.parent == tmp_path / "cache" / "altmetric-harvester"
    assert one != other
    assert one.name.startswith("altmetric-") and one.name.endswith(".search.db")
