"""Shared fixtures: real SQLite files in a temporary directory."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from yarl import URL

from harvester.store import Store


def stored_responses(db_path: Path) -> list[tuple[str, str, str, int, str, bytes]]:
    """Every stored response as (type, identifier, state, status, sha256, body), the
    body uncompressed by the store, as `show` and `export` see it."""
    with Store(db_path, read_only=True) as store:
        rows = store.conn.execute(
            """SELECT r.id, j.id_type, j.identifier, j.state, r.http_status, r.sha256
               FROM responses AS r JOIN jobs AS j ON j.id = r.job_id ORDER BY r.id"""
        ).fetchall()
        return [(*row[1:], store.body_of_response(row[0])) for row in rows]


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
