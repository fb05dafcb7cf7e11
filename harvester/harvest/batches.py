"""Outcomes on their way to the store, handed to the writer in batches.

Each `Store.record` is one transaction, and a transaction costs the store thread a
fixed price (the write lock, the ledger's prune, the commit's WAL pages) on top of
its outcomes: a commit of 32 answers costs about as much again per answer as one of
256. So the writer takes a batch once `target` outcomes wait, or `linger_s` after it
found fewer, whichever comes first, or at once when told nothing else is coming
(`flush`: every job claimed has its outcome waiting, as at the end of a drain).
Kept short, the linger bounds what a kill -9 can lose: answers fetched but not yet
written are fetched again after a restart (their jobs are still leased), and none is
ever stored twice, as each batch commits whole.
"""

from __future__ import annotations

import asyncio

from harvester.model import JobOutcome


class OutcomeBatches:
    """A buffer of outcomes the workers add to and the writer takes batches from."""

    def __init__(self, *, target: int, linger_s: float, max_size: int) -> None:
        self._target = target
        self._linger_s = linger_s
        self._max_size = max_size
        self._items: list[JobOutcome] = []
        self._waiting = asyncio.Event()  # set: some outcome waits (or closed)
        self._full = asyncio.Event()  # set: `target` outcomes wait (or closed)
        self._closed = False
        self._now = False  # `flush` was called: no lingering for the next batch

    def __len__(self) -> int:
        return len(self._items)

    def add(self, outcome: JobOutcome) -> None:
        items = self._items
        items.append(outcome)
        if len(items) == 1:
            self._waiting.set()
        if len(items) >= self._target:
            self._full.set()

    def flush(self) -> None:
        """Hand out what waits without lingering: no other outcome is coming soon."""
        self._now = True
        self._full.set()

    def close(self) -> None:
        """No more outcomes will come: hand out the rest at once, then None."""
        self._closed = True
        self._waiting.set()
        self._full.set()

    async def next_batch(self) -> list[JobOutcome] | None:
        """The next batch to write (at most `max_size`); None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._waiting.clear()
            await self._waiting.wait()
        if len(self._items) < self._target and not (self._closed or self._now):
            self._full.clear()
            try:
                async with asyncio.timeout(self._linger_s):
                    await self._full.wait()
            except TimeoutError:
                pass  # lingered long enough: write what there is
        self._now = False
        batch = self._items[: self._max_size]
        del self._items[: self._max_size]
        return batch
