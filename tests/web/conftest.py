"""Fixtures of the web tests: a store whose bodies use every codec, Datasette over a
store in this process (closed again, every connection, when the test ends), and
`harvester serve` run as users run it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from datasette.app import Datasette
from helpers import serve_store, served_url, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.store.bodies import BodyStore
from harvester.web.app import make_datasette

ANSWERS = 60  # a dictionary is trained after the 40th: 40 plain zstd, 20 with it
TRAINED_AFTER = 40


@pytest.fixture
def bodies_store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store of `ANSWERS` answers of the simulator's universe (DOIs 10.5150/web.N),
    the later ones compressed with a zstd dictionary, and one 404 (`Not Found`, stored
    as it is): every codec there is."""
    monkeypatch.setattr(BodyStore, "train_after_bodies", TRAINED_AFTER)
    pool = universe.body_pool(ANSWERS)
    with Store(db_path) as store:
        for n, body in enumerate(pool[:TRAINED_AFTER]):
            store_answer(store, Identifier("doi", f"10.5150/web.{n}"), body)
        assert store.bodies.finish_training(timeout_s=60)
        for n, body in enumerate(pool[TRAINED_AFTER:], start=TRAINED_AFTER):
            store_answer(store, Identifier("doi", f"10.5150/web.{n}"), body)
        store_answer(store, Identifier("doi", "10.5150/web.missing"), b"Not Found", status=404)
    return db_path


@pytest.fixture
async def datasette_of() -> AsyncIterator[Callable[[Path, Path | None], Datasette]]:
    """`open(store, search_index)`: Datasette as `harvester serve` makes it, without the
    server and its threads, so that every connection it opened can be closed at the end
    (Python 3.13 warns of any left to the garbage collector)."""
    opened: list[Datasette] = []

    def open_datasette(store: Path, index: Path | None = None) -> Datasette:
        datasette = make_datasette(store, index, sql_threads=0)
        opened.append(datasette)
        return datasette

    yield open_datasette
    for served in opened:
        for database in served.databases.values():
            database.close()
            for conn in (database._read_connection, database._write_connection):
                if conn is not None:
                    conn.close()


@pytest.fixture
def serving(
    tmp_path: Path,
) -> Callable[[Path], AbstractContextManager[tuple[str, subprocess.Popen[str]]]]:
    """`serving(store)`: `harvester serve --port 0` on `store` while the block runs, as a
    process (its URL, and the process); its search index in `tmp_path/cache`
    ($XDG_CACHE_HOME). Killed at the end if the test did not stop it."""

    @contextlib.contextmanager
    def serve(store: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
        with serve_store(store, tmp_path / "cache") as (line, process):
            yield served_url(line), process

    return serve
