"""The Datasette plugin of `harvester serve`: answers shown decompressed, as JSON.

- `render_cell`: a `data` cell of `bodies` (or of any query that selects it with
  `codec`, `dictionary_id` and `size_bytes`) shows the answer as pretty-printed JSON,
  or as its text for a 404 (`Not Found`), instead of Datasette's "<Binary: N bytes>";
  an `answer` column holding JSON text (the `latest-answer` query's) is pretty-printed too.
- `prepare_connection`: the SQL function `harvester_body(body_id)`, the bytes as
  received as text (NULL for a missing or damaged body), so
  `SELECT json_extract(harvester_body(body_id), '$.citation.title') FROM responses` works.

Decompressing is the store's own (`BodyStore`, with the zstd dictionaries of the
store), on `StoreConnection`s only: the connections `harvester.web.app` opens to the
store. A zstd decompressor is not safe to share between threads, and Datasette reads on
several, so each connection has its own.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Awaitable
from contextlib import AbstractContextManager
from typing import Any

from datasette.plugins import pm
from markupsafe import Markup
from pluggy import HookimplMarker

from harvester.errors import BodyCorrupt, StoreError
from harvester.store.bodies import BODY_COLUMNS, BodyStore

hookimpl = HookimplMarker("datasette")  # datasette.hookimpl, with its types
PLUGIN_NAME = "altmetric-harvester"
BODY_FUNCTION = "harvester_body"
ANSWER_COLUMN = "answer"  # the alias of harvester_body() in the latest-answer query
_BODY_ROW = frozenset(("codec", "dictionary_id", "size_bytes"))
_PRE = Markup(
    '<pre class="harvester-body" style="white-space: pre-wrap; max-height: 30em;'
    ' overflow: auto; margin: 0">{}</pre>'
)


class StoreConnection(sqlite3.Connection):
    """A read-only connection to the store, which decompresses the store's bodies."""

    _bodies: BodyStore | None = None

    def bodies(self) -> BodyStore:
        """The store's bodies on this connection (its dictionaries read at first use)."""
        if self._bodies is None:
            self._bodies = BodyStore(self, _no_writes, writable=False)
        return self._bodies

    def body_bytes(self, codec: str, dictionary_id: int | None, data: bytes, size: int) -> bytes:
        """The bytes as received (BodyCorrupt if damaged)."""
        return self.bodies().decompress(codec, dictionary_id, bytes(data), size)

    def body_text(self, body_id: int | None) -> str | None:
        """`harvester_body(body_id)`: the answer's text; None if missing or damaged."""
        row = self.execute(
            f"SELECT {BODY_COLUMNS} FROM bodies AS b WHERE b.id = ?", (body_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            return self.body_bytes(*row).decode("utf-8", "replace")
        except BodyCorrupt:
            return None


def _no_writes() -> AbstractContextManager[sqlite3.Connection]:
    raise StoreError("the store is served read-only")


def register() -> None:
    """Load this plugin into Datasette (once a process)."""
    if pm.get_plugin(PLUGIN_NAME) is None:
        pm.register(sys.modules[__name__], name=PLUGIN_NAME)


def pretty(raw: bytes | str) -> str:
    """An answer for reading: JSON indented, anything else (a 404's text) as it is."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@hookimpl
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    if isinstance(conn, StoreConnection):
        conn.create_function(BODY_FUNCTION, 1, conn.body_text, deterministic=True)


@hookimpl
def render_cell(
    row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any
) -> Awaitable[Markup | None] | Markup | None:
    if column == ANSWER_COLUMN and isinstance(value, str) and value.startswith("{"):
        return _PRE.format(pretty(value))
    if column != "data" or not isinstance(value, bytes):
        return None
    keys = set(row.keys()) if hasattr(row, "keys") else set()
    if not keys >= _BODY_ROW:
        return None
    # An expanded foreign key (the bodies page labels dictionary_id) is a dict.
    fields = [_unlabelled(row[name]) for name in ("codec", "dictionary_id", "size_bytes")]
    codec, dictionary_id, size = fields
    return _render_body(datasette.get_database(database), codec, dictionary_id, value, size)


async def _render_body(
    db: Any, codec: str, dictionary_id: int | None, data: bytes, size: int
) -> Markup | None:
    def decompress(conn: sqlite3.Connection) -> Markup | None:
        if not isinstance(conn, StoreConnection):
            return None  # not the store: leave the cell to Datasette
        try:
            return _PRE.format(pretty(conn.body_bytes(codec, dictionary_id, data, size)))
        except BodyCorrupt as error:
            return Markup("<em>damaged, does not decompress: {}</em>").format(error)

    rendered: Markup | None = await db.execute_fn(decompress)
    return rendered


def _unlabelled(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) else value
