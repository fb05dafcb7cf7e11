"""The plugin of `harvester serve`: answers shown decompressed as JSON on the bodies
page and in queries, `harvester_body(body_id)` in SQL, and a store Datasette can only
read (while the daemon may be writing it)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import rows, store_answer, stored_responses
from markupsafe import escape

from harvester.errors import StoreError
from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.web.plugin import pretty

OpenDatasette = Callable[[Path, Path | None], Datasette]


def bodies_by_id(store: Path) -> dict[int, bytes]:
    """Each body as received, by its id, as the store reads it back."""
    with Store(store, read_only=True) as opened:
        found = opened.conn.execute(
            "SELECT b.id, b.codec, b.dictionary_id, b.data, b.size_bytes FROM bodies AS b"
        ).fetchall()
        return {row[0]: opened.bodies.decompress(*row[1:]) for row in found}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_the_bodies_page_shows_every_answer_as_json(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    datasette = datasette_of(bodies_store, None)
    page = (await datasette.client.get("/store/bodies?_size=100")).text
    bodies = bodies_by_id(bodies_store)
    codecs = rows(bodies_store, "SELECT DISTINCT codec, dictionary_id IS NULL FROM bodies")
    assert set(codecs) == {("zstd", 1), ("zstd", 0), ("identity", 1)}  # every codec
    for body in bodies.values():
        assert str(escape(pretty(body))) in page
    assert "Not Found" in page
    assert '"altmetric_id": ' in pretty(bodies[1])  # indented JSON, not the bytes
    assert "&lt;Binary" not in page


async def test_a_body_row_page_and_a_query_selecting_bodies_show_the_answer_too(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    datasette = datasette_of(bodies_store, None)
    bodies = bodies_by_id(bodies_store)
    newest = max(bodies)  # compressed with the dictionary
    assert rows(bodies_store, f"SELECT dictionary_id FROM bodies WHERE id = {newest - 1}") == [(1,)]
    shown = str(escape(pretty(bodies[newest - 1])))
    assert shown in (await datasette.client.get(f"/store/bodies/{newest - 1}")).text
    query = f"SELECT codec, dictionary_id, size_bytes, data FROM bodies WHERE id = {newest - 1}"
    response = await datasette.client.get("/store", params={"sql": query})
    assert shown in response.text


async def test_harvester_body_gives_each_answer_as_received(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    datasette = datasette_of(bodies_store, None)
    sql = "SELECT harvester_body(body_id) AS body FROM responses ORDER BY id"
    response = await datasette.client.get("/store.json", params={"sql": sql, "_shape": "array"})
    got = [row["body"] for row in response.json()]
    assert got == [body.decode() for *_, body in stored_responses(bodies_store)]
    assert got[-1] == "Not Found"
    sql = (
        "SELECT harvester_body(12345) AS missing,"
        " json_extract(harvester_body(1), '$.citation.title') AS t"
    )
    response = await datasette.client.get("/store.json", params={"sql": sql, "_shape": "array"})
    [row] = response.json()
    assert row["missing"] is None
    assert row["t"] == rows(bodies_store, "SELECT title FROM outputs WHERE response_id = 1")[0][0]


async def test_a_damaged_body_is_named_as_such_not_shown(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    with sqlite3.connect(bodies_store) as conn:
        conn.execute("UPDATE bodies SET data = zeroblob(40) WHERE id = 2")
    conn.close()
    datasette = datasette_of(bodies_store, None)
    page = (await datasette.client.get("/store/bodies/2")).text
    assert "damaged, does not decompress: zstd" in page
    sql = "SELECT harvester_body(2) AS body"
    response = await datasette.client.get("/store.json", params={"sql": sql, "_shape": "array"})
    assert response.json() == [{"body": None}]


async def test_datasette_can_only_read_the_store(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    before = sha256_of(bodies_store)
    datasette = datasette_of(bodies_store, None)
    database = datasette.get_database("store")
    with pytest.raises(StoreError, match="read-only"):
        await database.execute_write("DELETE FROM jobs")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # query_only, mode=ro
        await database.execute_fn(lambda conn: conn.execute("CREATE TEMP TABLE t (a)"))
    response = await datasette.client.get("/store", params={"sql": "DELETE FROM jobs"})
    assert response.status_code == 400
    for path in ("/store", "/store/jobs", "/store/bodies", "/store/latest-answer"):
        assert (await datasette.client.get(path)).status_code == 200
    assert sha256_of(bodies_store) == before


async def test_what_the_daemon_stores_meanwhile_is_shown_at_once(
    bodies_store: Path, datasette_of: OpenDatasette
) -> None:
    """Read-only, not immutable: the store may change under Datasette (WAL)."""
    datasette = datasette_of(bodies_store, None)
    sql = {"sql": "SELECT count(*) AS n FROM latest_outputs", "_shape": "array"}
    assert (await datasette.client.get("/store.json", params=sql)).json() == [{"n": 60}]
    with Store(bodies_store) as store:
        store_answer(store, Identifier("doi", "10.5150/web.late"), universe.body_pool(61)[60])
    assert (await datasette.client.get("/store.json", params=sql)).json() == [{"n": 61}]
