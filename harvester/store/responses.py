"""Stored answers: each response row points at its body (compressed, once per
distinct bytes); a 200's derived rows point back at it. Writing one is part of
`Store.record`'s transaction; reading one gives the bytes back exactly as received."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from harvester.errors import BodyCorrupt, StoreError
from harvester.model import StoredResponse, iso_utc
from harvester.store.bodies import BODY_COLUMNS, BodyStore

LatestRow = tuple[str, str, str, int, str, str, str, bytes | None]


class Responses:
    """The `responses` table, over the bodies it points at."""

    def __init__(self, conn: sqlite3.Connection, bodies: BodyStore) -> None:
        self._conn = conn
        self._bodies = bodies

    def insert(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        response: StoredResponse,
        sha256: str | None = None,
    ) -> int:
        """Store the response and its body (once per distinct bytes) inside the
        caller's transaction; the response's id. `sha256` is the body's, when the
        caller has it already. Deriving is `Store.record`'s."""
        sha256 = sha256 or hashlib.sha256(response.body).hexdigest()
        body_id = self._bodies.put(response.body, sha256)
        cursor = conn.execute(
            """INSERT INTO responses (job_id, http_status, sha256, size_bytes,
                   request_params, mode, fetched_at, body_id, endpoint)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                job_id,
                response.http_status,
                sha256,
                len(response.body),
                response.request_params,
                response.mode,
                response.fetched_at,
                body_id,
                response.endpoint,
            ),
        )
        return int(cursor.lastrowid or 0)

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM responses").fetchone()[0])

    def count_jobs(self) -> int:
        """Jobs with at least one response (one record each in `iter_latest`)."""
        return int(self._conn.execute("SELECT count(DISTINCT job_id) FROM responses").fetchone()[0])

    def since(self, since_s: float) -> int:
        """Responses fetched at or after a Unix time."""
        return int(
            self._conn.execute(
                "SELECT count(*) FROM responses WHERE fetched_at >= ?", (iso_utc(since_s),)
            ).fetchone()[0]
        )

    def latest(self, job_id: int) -> dict[str, Any] | None:
        """The job's latest response with its body uncompressed (StoreError if damaged)."""
        self._conn.row_factory = sqlite3.Row
        try:
            row = self._conn.execute(
                f"""SELECT r.*, {BODY_COLUMNS} FROM responses AS r
                   JOIN bodies AS b ON b.id = r.body_id
                   WHERE r.job_id = ? ORDER BY r.id DESC LIMIT 1""",
                (job_id,),
            ).fetchone()
        finally:
            self._conn.row_factory = None
        if row is None:
            return None
        response = dict(row)
        stored = (
            response.pop("codec"),
            response.pop("dictionary_id"),
            response.pop("data"),
            response["size_bytes"],
        )
        try:
            response["body"] = self._bodies.decompress(*stored)
        except BodyCorrupt as error:
            raise StoreError(
                f"the body of response {response['id']} is damaged ({error}); "
                "`harvester verify` lists every such body"
            ) from None
        return response

    def iter_latest(self, *, with_body: bool = True) -> Iterator[LatestRow]:
        """Per job with a response, its latest one, in job order; damaged bodies (and
        every body, without `with_body`) as None.

        Rows: (id_type, identifier, state, http_status, sha256, fetched_at, mode, body).
        """
        cursor = self._conn.execute(
            f"""SELECT j.id_type, j.identifier, j.state, r.http_status, r.sha256,
                      r.fetched_at, r.mode, {BODY_COLUMNS}
               FROM jobs AS j JOIN responses AS r
                 ON r.id = (SELECT max(id) FROM responses WHERE job_id = j.id)
               JOIN bodies AS b ON b.id = r.body_id
               ORDER BY j.id"""
        )
        while rows := cursor.fetchmany(500):
            for row in rows:
                body: bytes | None = None
                if with_body:
                    with contextlib.suppress(BodyCorrupt):
                        body = self._bodies.decompress(*row[7:])
                yield (*row[:7], body)

    def of_bodies(self, body_ids: Sequence[int]) -> list[tuple[int, str, str, str]]:
        """(response id, type, identifier, sha256) of the responses with these bodies."""
        found: list[tuple[int, str, str, str]] = []
        for start in range(0, len(body_ids), 500):
            chunk = list(body_ids[start : start + 500])
            found += self._conn.execute(
                f"""SELECT r.id, j.id_type, j.identifier, r.sha256
                    FROM responses AS r JOIN jobs AS j ON j.id = r.job_id
                    WHERE r.body_id IN ({", ".join("?" * len(chunk))}) ORDER BY r.id""",
                chunk,
            ).fetchall()
        return found

    def not_matching_their_body(self) -> list[tuple[int, str, str, str]]:
        """Responses whose sha256 is not their body's: the link itself is damaged."""
        return self._conn.execute(
            """SELECT r.id, j.id_type, j.identifier, r.sha256
               FROM responses AS r JOIN jobs AS j ON j.id = r.job_id
               LEFT JOIN bodies AS b ON b.id = r.body_id
               WHERE b.id IS NULL OR r.sha256 != b.sha256 OR r.size_bytes != b.size_bytes
               ORDER BY r.id"""
        ).fetchall()
