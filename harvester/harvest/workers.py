"""The workers: a pool of tasks taking claimed jobs from one queue, and what each does
with a job (`Fetcher`): wait for a rate token, fetch in the quota's mode, let the
answer steer the whole harvest (`Reactions`), and turn it into the job's outcome
(`policy.decide`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from harvester.config import FilterSettings, Settings
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.policy import RetryPolicy, decide, internal_failure, wait_for_full_mode
from harvester.harvest.quota import QuotaState, params_for_mode
from harvester.harvest.ratelimit import RateController
from harvester.harvest.reactions import Reactions
from harvester.logs import get_logger
from harvester.model import COUNTS_MODE, ClaimedJob, Endpoint, JobOutcome, Outcome, QuotaMode

log = get_logger("harvester.harvest.workers")
# Answers whose failure `Reactions` logs once for the whole harvest, not once per job.
_SAID_ELSEWHERE = (Outcome.UNAUTHORIZED, Outcome.RATE_LIMITED, Outcome.SETUP_ERROR)


class WorkerPool:
    """Workers taking jobs from `jobs` and handing each to `run_job`, as many as the
    configured concurrency (`resize`), until `stopping` is set."""

    def __init__(
        self,
        jobs: asyncio.Queue[ClaimedJob],
        room: asyncio.Event,
        run_job: Callable[[ClaimedJob], Awaitable[None]],
        *,
        stopping: asyncio.Event,
        on_done: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self._jobs = jobs
        self._room = room  # set as a worker takes a job: the feeder may add one
        self._run_job = run_job
        self._stopping = stopping
        self._on_done = on_done
        self._workers: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[Any]] = set()
        self._count = 0  # workers that will take another job
        self._concurrency = 0

    def resize(self, concurrency: int) -> None:
        """As many workers as `concurrency`. New ones start now; of the surplus, idle
        ones go now and busy ones after their current job (each checks before taking
        another)."""
        self._concurrency = concurrency
        for _ in range(concurrency - self._count):
            self._spawn()
        idle = [task for task in self._workers if task not in self._busy and not task.cancelling()]
        for task in idle[: max(self._count - concurrency, 0)]:
            task.cancel()  # waiting on an empty queue: no job is lost
            self._count -= 1

    async def stop(self, drain_deadline_s: float, hurry: asyncio.Event) -> None:
        """Idle workers stop at once; busy ones get until the drain deadline, or until
        `hurry` is set. Jobs still queued are left to be released with the rest."""
        while not self._jobs.empty():
            self._jobs.get_nowait()
        for task in self._workers - self._busy:
            task.cancel()
        busy = set(self._busy)
        if busy:
            finished = asyncio.create_task(asyncio.wait(busy))
            hurried = asyncio.create_task(hurry.wait())
            await asyncio.wait(
                {finished, hurried}, timeout=drain_deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
            finished.cancel()
            hurried.cancel()
        workers = set(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def _spawn(self) -> None:
        task = asyncio.create_task(self._work(), name="worker")
        task.add_done_callback(self._on_done)
        task.add_done_callback(self._workers.discard)
        self._workers.add(task)
        self._count += 1

    async def _work(self) -> None:
        current = asyncio.current_task()
        assert current is not None  # a worker is a task
        while not self._stopping.is_set():
            if self._count > self._concurrency:  # a reload lowered the concurrency
                self._count -= 1
                return
            job = await self._jobs.get()
            self._room.set()
            self._busy.add(current)
            try:
                await self._run_job(job)
            finally:
                self._busy.discard(current)


class Fetcher:
    """One job, from its rate token to its outcome. Counts the answers per outcome."""

    def __init__(
        self,
        client: AltmetricClient,
        rate: RateController,
        quota: QuotaState,
        reactions: Reactions,
        settings: Settings,
    ) -> None:
        self._client = client
        self._rate = rate
        self._quota = quota
        self._reactions = reactions
        self.requests: Counter[Outcome] = Counter()
        self.reconfigure(settings)

    def reconfigure(self, settings: Settings) -> None:
        """Retries and filters from (reloaded) settings, for the jobs from now on."""
        self._retry = RetryPolicy.of(settings.workers)
        self._calls = calls_by_mode(settings.filters)
        self._counts_call = settings.api.endpoint == Endpoint.COUNTS

    async def outcome(self, job: ClaimedJob, stopping: asyncio.Event) -> JobOutcome | None:
        """Wait for a rate token, fetch in the quota's mode: the job's outcome. None if
        the harvest began stopping meanwhile (the job is released with the rest)."""
        ticket = await self._rate.acquire()
        if stopping.is_set():
            return None
        call = COUNTS_CALL
        if not self._counts_call:
            mode = self._quota.mode()
            if job.needs_full and mode != QuotaMode.FULL:
                return wait_for_full_mode(job, time.time())
            call = self._calls[mode]
        try:
            return await self._fetch(job, call, ticket)
        except Exception as error:  # a bug of ours must not strand the job in progress
            log.exception("harvest.worker_error", id_type=job.id_type, identifier=job.identifier)
            return internal_failure(
                job, f"internal error: {type(error).__name__}", self._retry, time.time()
            )

    async def _fetch(self, job: ClaimedJob, call: Call, ticket: int) -> JobOutcome:
        """One request as `call` says, with the quota told what a fetch started and
        brought (a counts call has no tweets: the quota is not its concern)."""
        quota_mode = call.quota_mode
        if quota_mode is not None:
            self._quota.started(quota_mode)
        tweets: tuple[int, ...] = ()
        result: FetchResult | None = None
        try:
            result = await self._client.fetch(job.id_type, job.identifier, call.params)
            self.requests[result.outcome] += 1
            if result.outcome is Outcome.OK and quota_mode not in (None, QuotaMode.NO_TWITTER):
                tweets = result.tweet_ids
        finally:
            if quota_mode is not None:
                ok = result is not None and result.outcome is Outcome.OK
                self._quota.answered(quota_mode, len(tweets) if ok else None)
        self._reactions.react(job, result, ticket)
        if result.error and result.outcome not in _SAID_ELSEWHERE:
            log.info(
                "harvest.fetch_failed",
                outcome=result.outcome.value,
                error=result.error,
                id_type=job.id_type,
                identifier=job.identifier,
                attempt=job.attempts + 1,
            )
        return decide(
            job,
            result,
            policy=self._retry,
            request_params=call.params_json,
            mode=call.mode,
            endpoint=call.endpoint,
            now_s=time.time(),
            tweet_ids=tweets,
        )


class Call(NamedTuple):
    """How one request is made and its answer recorded."""

    params: dict[str, str]  # the query parameters sent (the key aside)
    params_json: str  # ...as stored with the answer
    mode: str  # the answer's `mode`
    endpoint: Endpoint
    quota_mode: QuotaMode | None  # the tweet quota's rung, for a fetch


COUNTS_CALL = Call({}, "{}", COUNTS_MODE, Endpoint.COUNTS, None)


def calls_by_mode(filters: FilterSettings) -> dict[QuotaMode, Call]:
    """Per quota mode: the fetch call's parameters, and their JSON as stored."""
    return {
        mode: Call(params, json.dumps(params, sort_keys=True), mode, Endpoint.FETCH, mode)
        for mode in QuotaMode
        for params in [params_for_mode(filters, mode)]
    }
