"""Shared fixtures: real SQLite files in a temporary directory."""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from sqlite_utils import Database
from yarl import URL

from harvester.model import iso_utc
from harvester.store import Store
from harvester.store.schema import migrations


def stored_responses(db_path: Path) -> list[tuple[str, str, str, int, str, bytes]]:
    """Every stored response as (type, identifier, state, status, sha256, body), the
    body uncompressed by the store, as `show` and `export` see it."""
    with Store(db_path, read_only=True) as store:
        rows = store.conn.execute(
            """SELECT r.id, j.id_type, j.identifier, j.state, r.http_status, r.sha256
               FROM responses AS r JOIN jobs AS j ON j.id = r.job_id ORDER BY r.id"""
        ).fetchall()
        return [(*row[1:], store.bodies.of_response(row[0])) for row in rows]


def build_pre_compression_store(db_path: Path, bodies: list[bytes]) -> None:
    """A store as versions before schema m004 left it: raw bodies inside `responses`.
    A body of b"Not Found" is stored as a 404, any other as a done 200."""
    database = Database(db_path)
    migrations.apply(database, stop_before="m004_compressed_bodies")
    now = iso_utc(time.time())
    for n, body in enumerate(bodies, start=1):
        status = 404 if body == b"Not Found" else 200
        database.execute(
            "INSERT INTO jobs (id, id_type, identifier, state, next_attempt_at, created_at,"
            " updated_at) VALUES (?, 'doi', ?, ?, ?, ?, ?)",
            (n, f"10.5150/old.{n}", "done" if status == 200 else "not_found", now, now, now),
        )
        database.execute(
            "INSERT INTO responses (job_id, http_status, sha256, size_bytes, request_params,"
            " fetched_at, body) VALUES (?, ?, ?, ?, '{}', ?, ?)",
            (n, status, hashlib.sha256(body).hexdigest(), len(body), now, body),
        )
    database.conn.commit()
    database.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's new `stream_writer`
    argument (pnuckowski/aioresponses#289); supply a finished writer so it works on
    both sides of that change."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


@pytest.fixture
def mock_api() -> Iterator[aioresponses]:
    """aioresponses, with every mocked answer built by the compatible response class."""
    with aioresponses() as mocked:
        add = mocked.add

        def add_compatible(url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("response_class", _CompatResponse)
            add(url, method, *args, **kwargs)

        mocked.add = add_compatible  # type: ignore[method-assign]
        yield mocked
