"""The feeder: claims jobs from the store into the workers' queue.

It keeps the queue at most `workers.concurrency` deep (a reload may change that), so
no job waits long under a lease it cannot use; it returns expired leases of other
runs to the queue now and then; and it tells a draining run when nothing is left.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable

from harvester.config import Settings
from harvester.harvest.quota import QuotaState
from harvester.model import ClaimedJob, JobOutcome, QuotaMode, parse_iso
from harvester.store.aio import AsyncStore

BUSY_WAIT_S = 0.05  # nothing claimable while our own jobs are out: look again soon
IDLE_WAIT_S = 1.0  # nothing claimable at all: the longest wait before looking again


class Leases:
    """The jobs this run claimed whose outcomes are not written yet."""

    def __init__(self) -> None:
        self.outstanding = 0
        self.tokens: Counter[str] = Counter()  # their lease tokens: not to be swept

    def claimed(self, jobs: Iterable[ClaimedJob]) -> None:
        for job in jobs:
            self.outstanding += 1
            self.tokens[job.lease_token] += 1

    def written(self, outcomes: Iterable[JobOutcome]) -> None:
        for outcome in outcomes:
            self.outstanding -= 1
            self.tokens[outcome.lease_token] -= 1
            if self.tokens[outcome.lease_token] <= 0:
                del self.tokens[outcome.lease_token]


class Feeder:
    """Claims jobs into `jobs` until stopped. `room` is set whenever a worker takes a
    job (or the concurrency changes), which is when more may fit."""

    def __init__(
        self,
        store: AsyncStore,
        jobs: asyncio.Queue[ClaimedJob],
        room: asyncio.Event,
        quota: QuotaState,
        leases: Leases,
        *,
        settings: Settings,
        drain: bool,
        on_drained: Callable[[], None],
    ) -> None:
        self.settings = settings  # the pipeline swaps in reloaded settings
        self._db = store
        self._jobs = jobs
        self._room = room
        self._quota = quota
        self._leases = leases
        self._drain = drain
        self._on_drained = on_drained

    async def run(self, stopping: asyncio.Event) -> None:
        """Claim until `stopping` is set. Store errors are raised to the caller."""
        lease_s = self.settings.workers.lease_s
        loop = asyncio.get_running_loop()
        next_sweep_s = loop.time() + lease_s / 4
        while not stopping.is_set():
            if loop.time() >= next_sweep_s:
                # Expired leases not of this run (ours may wait long for a rate token).
                await self._db.requeue_expired(keep_tokens=self._leases.tokens)
                next_sweep_s = loop.time() + lease_s / 4
            room = await self._room_in_queue()
            claimed = await self._db.claim(room, lease_s, backfill=self._backfill())
            self._leases.claimed(claimed)
            for job in claimed:
                self._jobs.put_nowait(job)
            if not claimed:
                await asyncio.sleep(await self._idle_wait_s())

    def _backfill(self) -> bool:
        """Backfill jobs (`needs_full`) are claimed only while the quota allows full mode."""
        return self._quota.mode() == QuotaMode.FULL

    async def _room_in_queue(self) -> int:
        """Wait until at most half of `concurrency` jobs are queued; how many more fit.
        Claiming in halves rather than one by one as workers take jobs keeps claims
        (a transaction each on the store thread) few and large."""
        concurrency = self.settings.workers.concurrency
        wanted = max(1, concurrency // 2)
        while (room := concurrency - self._jobs.qsize()) < wanted:
            self._room.clear()
            await self._room.wait()
        return room

    async def _idle_wait_s(self) -> float:
        """How long to wait before claiming again; ends a draining run that is done."""
        if self._leases.outstanding:
            return BUSY_WAIT_S
        in_progress, earliest = await self._db.queue_outlook(backfill=self._backfill())
        if self._drain and in_progress == 0 and earliest is None:
            self._on_drained()
            return 0.0
        if earliest is None:
            return IDLE_WAIT_S
        wait_s = parse_iso(earliest) - time.time()
        return min(max(wait_s, BUSY_WAIT_S), IDLE_WAIT_S)
