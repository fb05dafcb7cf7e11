"""The store's own thread: every SQLite call of the daemon runs there, in order.

SQLite calls block, and some (a commit of a large batch, a claim behind a write lock)
take milliseconds to seconds; on a thread of their own they never stall the event
loop. One thread, so the connection is only ever used by one thread at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from harvester.store.core import Store

T = TypeVar("T")


class StoreThread:
    """Runs every store call on one thread of its own, in submission order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: method(*args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
