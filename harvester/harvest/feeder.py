"""The feeder: claims jobs from the store into the workers' queue.

It keeps the queue about as deep as the workers use in `STORE_STALL_S` at the
configured rate, and at least `workers.concurrency` (a reload may change either):
enough that the workers never run dry while the store thread is busy with a large
commit (the claim waits behind it), and no deeper, so no job waits long under a lease
it cannot use. It claims in halves of that depth, so claims stay few and large. It
returns expired leases of other runs to the queue now and then, and tells a draining
run when nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable

from harvester.config import Settings
from harvester.harvest.quota import QuotaState
from harvester.model import ClaimedJob, JobOutcome, QuotaMode, parse_iso
from harvester.store.aio import AsyncStore

STORE_STALL_S = 0.25  # how long a claim may wait behind the store thread's other work
MAX_DEPTH_FACTOR = 4  # the queue holds at most this many times `workers.concurrency`
BUSY_WAIT_S = 0.05  # nothing claimable while our own jobs are out: look again soon
IDLE_WAIT_S = 1.0  # nothing claimable at all: the longest wait before looking again


class Leases:
    """The jobs this run claimed whose outcomes are not written yet."""

    def __init__(self) -> None:
        self.outstanding = 0
        self.tokens: Counter[str] = Counter()  # their lease tokens: not to be swept
        self.written_some = asyncio.Event()  # set as outcomes are written

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
        self.written_some.set()


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
                await self._pause(await self._idle_wait_s())

    async def _pause(self, wait_s: float) -> None:
        """Wait `wait_s`, or until outcomes are written: they may free jobs to claim
        (a retry due now) or leave nothing outstanding (a drain may be over)."""
        self._leases.written_some.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._leases.written_some.wait()

    def _backfill(self) -> bool:
        """Backfill jobs (`needs_full`) are claimed only while the quota allows full mode;
        the counts call has no quota (nor mentions to backfill): never held back."""
        if self.settings.api.endpoint == "counts":
            return True
        return self._quota.mode() == QuotaMode.FULL

    async def _room_in_queue(self) -> int:
        """Wait until at most half of `queue_depth` jobs are queued; how many more fit.
        Claiming in halves rather than one by one as workers take jobs keeps claims
        (a transaction each on the store thread) few and large."""
        while True:
            depth = queue_depth(self.settings)  # a reload may change it
            room = depth - self._jobs.qsize()
            if room >= max(1, depth // 2):
                return room
            self._room.clear()
            await self._room.wait()

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


def queue_depth(settings: Settings) -> int:
    """How many claimed jobs the queue may hold: `STORE_STALL_S` of requests at the
    configured rate, at least one per worker and at most `MAX_DEPTH_FACTOR` per worker.
    A key allowing a few requests a second keeps the queue one job per worker deep."""
    concurrency = settings.workers.concurrency
    if settings.rate.requests_per_s is None:  # "auto": the rate is not known in advance
        return MAX_DEPTH_FACTOR * concurrency
    stall = math.ceil(settings.rate.requests_per_s * STORE_STALL_S)
    return min(MAX_DEPTH_FACTOR * concurrency, max(concurrency, stall))
