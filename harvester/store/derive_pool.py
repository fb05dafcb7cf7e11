"""Reading stored answers into rows on every core, for `harvester derive`.

Reading an answer (decompressing it, reading its JSON into rows) is most of the work
of deriving it, and needs nothing but its bytes and the store's zstd dictionaries. So
a large `derive` hands batches of compressed bodies to worker processes, keeps a few
batches in flight, and writes the rows they send back on the store's one connection,
in order. The daemon does not use this: it derives each batch as it stores it.

No SQL here: `derived.derive_missing` selects and writes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, NamedTuple

from harvester.errors import BodyCorrupt
from harvester.store.bodies import codec_with
from harvester.store.codec import BodyCodec, Dictionary
from harvester.store.snapshot import Answer, Read, read_answers

# Below this many answers to derive, starting processes costs more than it saves.
POOL_FROM_ANSWERS = 20_000
# A stored answer as selected: (response id, job id, fetched_at, mode, codec,
# dictionary id, compressed bytes, size).
StoredRow = tuple[Any, ...]


class ReadBatch(NamedTuple):
    read: Read
    unreadable: int  # damaged bodies (`verify` names them)


def read_batch(codec: BodyCodec, rows: Sequence[StoredRow]) -> ReadBatch:
    """Decompress and read one batch of stored answers."""
    answers = []
    unreadable = 0
    for response_id, job_id, fetched_at, mode, *stored in rows:
        try:
            body = codec.decompress(*stored)
        except BodyCorrupt:
            unreadable += 1
            continue
        answers.append(Answer(response_id, job_id, fetched_at, mode, body))
    return ReadBatch(read_answers(answers), unreadable)


def worker_count(answers: int) -> int:
    """Processes worth starting for this many answers: 0 (read here) when few; else
    one per core but the one this process writes on."""
    if answers < POOL_FROM_ANSWERS:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


class BatchReader:
    """Reads batches here (`workers` = 0) or in worker processes; `submit` gives a
    future either way, so the caller's loop is the same."""

    def __init__(self, dictionaries: list[Dictionary], workers: int) -> None:
        self.workers = workers
        self._executor: Executor | None = None
        self._codec = codec_with(dictionaries)
        if workers:
            # spawn, not fork: a fork of a process with threads may inherit held locks.
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(dictionaries,),
            )

    def submit(self, rows: list[StoredRow]) -> Future[ReadBatch]:
        if self._executor is not None:
            return self._executor.submit(_read_in_worker, rows)
        future: Future[ReadBatch] = Future()
        future.set_result(read_batch(self._codec, rows))
        return future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_worker_codec: BodyCodec | None = None


def _start_worker(dictionaries: list[Dictionary]) -> None:
    global _worker_codec
    _worker_codec = codec_with(dictionaries)


def _read_in_worker(rows: list[StoredRow]) -> ReadBatch:
    assert _worker_codec is not None, "the pool's initializer sets it"
    return read_batch(_worker_codec, rows)
