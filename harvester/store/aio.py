"""The store for the event loop: every SQLite call of the daemon runs on one thread of
its own, in order, behind named async methods.

SQLite calls block, and some (a commit of a large batch, a claim behind a write lock)
take milliseconds to seconds; on a thread of their own they never stall the event
loop. One thread, so the connection is only ever used by one thread at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from harvester.model import ClaimedJob, JobOutcome, RecordResult
from harvester.store.core import Store
from harvester.store.discovered import DiscoveredPage, PageCounts

T = TypeVar("T")


class AsyncStore:
    """What the daemon asks of the store, each call awaited off the event loop."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor | None = None) -> None:
        self.store = store
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    @classmethod
    async def open(cls, path: Path, *, derive: bool) -> AsyncStore:
        """Open (and, if need be, upgrade) the store on its own thread: an upgrade of
        a large store takes minutes, and the event loop must go on meanwhile."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, lambda: Store(path, derive=derive))
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(store, executor)

    async def _run(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: method(*args, **kwargs))

    async def claim(self, limit: int, lease_s: float, *, backfill: bool) -> list[ClaimedJob]:
        return await self._run(self.store.jobs.claim, limit, lease_s, backfill=backfill)

    async def requeue_all_leased(self) -> int:
        """Every in-progress job back to pending (ours, when we hold the daemon lock)."""
        return await self._run(self.store.jobs.requeue_leased, expired_only=False)

    async def requeue_expired(self, keep_tokens: Iterable[str]) -> int:
        """Jobs whose lease expired back to pending, but those leased under `keep_tokens`."""
        keep = list(keep_tokens)
        return await self._run(self.store.jobs.requeue_leased, expired_only=True, keep_tokens=keep)

    async def queue_outlook(self, *, backfill: bool) -> tuple[int, str | None]:
        return await self._run(self.store.jobs.outlook, backfill=backfill)

    async def ledger_count(self, window_s: float) -> int:
        return await self._run(self.store.ledger.count, window_s)

    async def counts_by_state(self) -> dict[str, int]:
        return await self._run(self.store.jobs.counts_by_state)

    async def record(
        self, outcomes: Sequence[JobOutcome], ledger_window_s: float | None
    ) -> RecordResult:
        return await self._run(self.store.record, outcomes, ledger_window_s)

    async def record_discovered(self, page: DiscoveredPage) -> PageCounts:
        return await self._run(self.store.record_discovered, page)

    async def refresh_older_than(self, older_than_s: float) -> int:
        return await self._run(self.store.refresh_older_than, older_than_s)

    async def ledger_frees_at(self, window_s: float, target_used: int) -> float | None:
        return await self._run(self.store.ledger.frees_at, window_s, target_used)

    async def save_states(self, entries: dict[str, str]) -> None:
        await self._run(self.store.state.save, entries)

    async def forget_state(self, key: str) -> None:
        await self._run(self.store.state.forget, key)

    async def load_state(self, key: str) -> str | None:
        """A `daemon_state` entry's value (a JSON text), if saved."""
        saved = await self._run(self.store.state.load, key)
        return None if saved is None else saved[0]

    def shutdown(self) -> None:
        """Finish what was asked, stop the thread, close the store."""
        self._executor.shutdown(wait=True)
        self.store.close()
