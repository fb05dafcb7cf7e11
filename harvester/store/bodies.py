"""The bodies of answers in the store: each distinct answer once, compressed.

Part of the store (schema m004): `Store` holds one `BodyStore` on its connection and
calls `put` inside its own transactions. Readers get the bytes back exactly as they
were received, or `BodyCorrupt`; `iter_checks` is what `verify` walks.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager

from harvester.errors import BodyCorrupt
from harvester.model import iso_utc
from harvester.store.codec import (
    TRAIN_AFTER_BODIES,
    TRAIN_SAMPLE_BODIES,
    BodyCodec,
    Dictionary,
    train_dictionary,
)

# What `BodyStore.decompress` takes, selected from `bodies AS b`, in this order.
BODY_COLUMNS = "b.codec, b.dictionary_id, b.data, b.size_bytes"


class BodyStore:
    """Compressed bodies on one connection, and the dictionary they are compressed with."""

    damaged_reads = 0  # bodies that failed to decompress on this connection
    train_after_bodies = TRAIN_AFTER_BODIES  # tests lower it to see training happen
    train_sample_bodies = TRAIN_SAMPLE_BODIES

    def __init__(
        self,
        conn: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
        *,
        writable: bool,
    ) -> None:
        self.conn = conn
        self._transaction = transaction
        self.codec = self._load_codec()
        # Until a dictionary exists, count new bodies towards training one.
        self._untrained = self.count() if writable and self.codec.dictionary is None else 0
        self._training: Future[tuple[bytes, int]] | None = None  # under way, if any

    def _load_codec(self) -> BodyCodec:
        return codec_with(self.dictionaries())

    def dictionaries(self) -> list[Dictionary]:
        """Every zstd dictionary in the store, oldest first (the newest compresses)."""
        rows = self.conn.execute("SELECT id, data FROM zstd_dictionaries ORDER BY id")
        return [Dictionary(*row) for row in rows]

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM bodies").fetchone()[0])

    def put(self, body: bytes, sha256: str) -> int:
        """The id of the body with these bytes, stored (compressed) if new. The caller
        holds the write transaction."""
        row = self.conn.execute("SELECT id FROM bodies WHERE sha256 = ?", (sha256,)).fetchone()
        if row is not None:
            return int(row[0])
        compressed = self.codec.compress(body)
        self._untrained += 1
        cursor = self.conn.execute(
            "INSERT INTO bodies (sha256, size_bytes, codec, dictionary_id, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (sha256, len(body), *compressed),
        )
        return int(cursor.lastrowid or 0)

    def decompress(
        self, codec: str, dictionary_id: int | None, data: bytes, size_bytes: int
    ) -> bytes:
        """The bytes as received (BodyCorrupt if damaged); takes BODY_COLUMNS."""
        if not self.codec.knows(dictionary_id):
            self.codec = self._load_codec()  # trained by the daemon since we opened
        try:
            return self.codec.decompress(codec, dictionary_id, data, size_bytes)
        except BodyCorrupt:
            self.damaged_reads += 1  # readers that skip a damaged body can say so
            raise

    def of_response(self, response_id: int) -> bytes:
        row = self.conn.execute(
            f"""SELECT {BODY_COLUMNS} FROM responses AS r
               JOIN bodies AS b ON b.id = r.body_id WHERE r.id = ?""",
            (response_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no response {response_id}")
        return self.decompress(*row)

    def iter_checks(self) -> Iterator[tuple[int, str | None]]:
        """(body id, problem) for every stored body; the problem is None when its
        bytes decompress and hash to the sha256 stored with them."""
        cursor = self.conn.execute(
            f"SELECT b.id, b.sha256, {BODY_COLUMNS} FROM bodies AS b ORDER BY b.id"
        )
        while rows := cursor.fetchmany(500):
            for body_id, stored, *columns in rows:
                try:
                    raw = self.decompress(*columns)
                except BodyCorrupt as error:
                    yield body_id, f"does not decompress: {error}"
                    continue
                actual = hashlib.sha256(raw).hexdigest()
                yield body_id, None if actual == stored else "sha256 of the bytes differs"

    def train_if_due(self) -> bool:
        """Train a zstd dictionary on recent bodies once there are enough; True once it
        is in use. The training (~0.1 s of CPU for 1,000 bodies; it once took a second
        on the daemon's store thread, stalling every request) runs on a thread of its
        own, where zstd releases the GIL: the caller only reads the samples, then goes
        on compressing with plain zstd, and a later call stores the dictionary and
        compresses with it from then on. Bodies stored
        before it keep plain zstd (they decompress without it). Optional work: whatever
        goes wrong, nothing stored is touched, and the next try waits for as many new
        bodies again."""
        if self.codec.dictionary is not None:
            return False
        if self._training is not None:
            return self._adopt_if_trained()
        if self._untrained < self.train_after_bodies:
            return False
        self._untrained = 0
        try:
            samples = self._recent_samples()
        except sqlite3.Error:  # the store was busy: later
            return False
        self._training = train_in_background(samples)
        return False

    def finish_training(self, timeout_s: float | None = None) -> bool:
        """Wait for a training under way (up to `timeout_s`) and put its dictionary to
        use; True if a dictionary is in use now. For callers that would rather wait
        than compress the next bodies without it (the tests)."""
        if self._training is not None:
            concurrent.futures.wait([self._training], timeout=timeout_s)
            self._adopt_if_trained()
        return self.codec.dictionary is not None

    def _adopt_if_trained(self) -> bool:
        """Store the dictionary trained in the background and compress with it, if the
        training has ended; a failed training is forgotten (the next waits again)."""
        training = self._training
        if training is None or not training.done():
            return False
        self._training = None
        try:
            data, samples = training.result()
            with self._transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO zstd_dictionaries (trained_at, sample_count, size_bytes, data)"
                    " VALUES (?, ?, ?, ?)",
                    (_now_text(), samples, len(data), data),
                )
        except Exception:  # zstd refused the samples, or the store was busy: later
            return False
        self.codec.use_dictionary(Dictionary(int(cursor.lastrowid or 0), data))
        return True

    def _recent_samples(self) -> list[bytes]:
        rows = self.conn.execute(
            f"SELECT {BODY_COLUMNS} FROM bodies AS b WHERE size_bytes > 256"
            " ORDER BY id DESC LIMIT ?",
            (self.train_sample_bodies,),
        ).fetchall()
        samples = []
        for row in rows:
            with contextlib.suppress(BodyCorrupt):  # a damaged body is no sample
                samples.append(self.decompress(*row))
        return samples


def train_in_background(samples: list[bytes]) -> Future[tuple[bytes, int]]:
    """(dictionary, samples used), trained on a daemon thread: a process that exits
    meanwhile does not wait for it (the next one trains again)."""
    future: Future[tuple[bytes, int]] = Future()

    def train() -> None:
        try:
            future.set_result((train_dictionary(samples), len(samples)))
        except Exception as error:  # reported through the future, not the thread
            future.set_exception(error)

    threading.Thread(target=train, name="zstd-training", daemon=True).start()
    return future


def codec_with(dictionaries: list[Dictionary]) -> BodyCodec:
    """A codec that reads bodies compressed with any of `dictionaries`."""
    codec = BodyCodec()
    for dictionary in dictionaries:
        codec.use_dictionary(dictionary)
    return codec


def _now_text() -> str:
    return iso_utc(time.time())  # the one format of the store's times
