"""The harvest pipeline: claim jobs, fetch them at the allowed rate, store what comes back.

Three kinds of task share one event loop and pass work one way through two queues:

    feeder --claimed jobs--> N workers --outcomes--> writer
    (store.claim)            (rate, client, policy)  (store.record, batched)

All SQLite work runs on one dedicated thread (`AsyncStore`), so a commit never
stalls the event loop, and the writer batches whatever outcomes have piled up while
the previous commit ran. `daemon.run_daemon` runs it under the store's lock, so when
it stops, after the last outcomes are written, every job still `in_progress` is its
own and goes back to `pending`. A reload changes its rate, workers and filters in
flight (`apply_settings`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from harvester.config import Settings
from harvester.harvest.client import AltmetricClient, FetchResult, Outcome
from harvester.harvest.policy import RetryPolicy, decide, internal_failure, wait_for_full_mode
from harvester.harvest.quota import (
    FULL,
    MODES,
    NO_TWITTER,
    QuotaState,
    params_for_mode,
    quota_snapshot,
)
from harvester.harvest.ratelimit import RateController, RatePolicy
from harvester.logs import get_logger
from harvester.model import FINAL_STATES, ClaimedJob, JobOutcome, iso_utc, parse_iso
from harvester.progress import ProgressLine
from harvester.store.aio import AsyncStore

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_KEY_REJECTED = 3  # systemd: RestartPreventExitStatus=3, a bad key will not heal

log = get_logger("harvester.harvest.pipeline")


@dataclass
class HarvestReport:
    stopped_by: str = "running"
    exit_code: int = EXIT_OK
    outcomes: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)  # stored responses per quota mode
    released: int = 0
    elapsed_s: float = 0.0

    @property
    def finished(self) -> int:
        """Jobs that reached a final state in this run."""
        return sum(self.outcomes[state] for state in FINAL_STATES)


class Harvest:
    """One run of the harvest pipeline over an open store and client."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        client: AltmetricClient,
        *,
        drain: bool,
        progress: ProgressLine | None = None,
        ledger_used: int = 0,
    ) -> None:
        self._settings = settings
        self._db = store
        self._client = client
        self._drain = drain
        self._progress = progress
        self._rate = RateController(self._rate_policy(settings))
        self._retry = RetryPolicy(
            settings.workers.max_attempts,
            settings.workers.backoff_base_s,
            settings.workers.backoff_max_s,
        )
        self._quota = QuotaState(settings.quota, ledger_used=ledger_used)
        self._mode_params = self._params_by_mode(settings)
        # Unbounded: the feeder keeps it at most `concurrency` deep itself, so a reload
        # that changes the concurrency changes the depth too.
        self._jobs: asyncio.Queue[ClaimedJob] = asyncio.Queue()
        self._room = asyncio.Event()  # set by workers as they take jobs
        self._outcomes: asyncio.Queue[JobOutcome | None] = asyncio.Queue()
        self._outstanding = 0  # claimed jobs whose outcome is not written yet
        self._live_tokens: Counter[str] = Counter()  # lease tokens of those jobs
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._worker_count = 0  # workers that will take another job
        self._requests: Counter[str] = Counter()
        self.on_stopping: Callable[[], None] = lambda: None
        self.report = HarvestReport()

    # -- stopping ---------------------------------------------------------------------

    def request_stop(self, reason: str, *, immediate: bool = False) -> None:
        """Stop claiming; finish in-flight requests unless `immediate`."""
        if not self._stopping.is_set():
            self.report.stopped_by = reason
            self._stopping.set()
            self.on_stopping()
        if immediate:
            self._hurry.set()

    def on_signal(self, name: str) -> None:
        second = self._stopping.is_set()
        log.warning("harvest.signal", signal=name, action="stop now" if second else "drain")
        self.request_stop(f"signal {name}", immediate=second)

    # -- for the service: a view of the run, and settings applied in flight -------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def live_view(self) -> dict[str, Any]:
        """Figures for the heartbeat, systemd's STATUS line and the metrics."""
        now_s = time.time()
        return {
            "finished": self.report.finished,
            "outstanding": self._outstanding,
            "concurrency": self._settings.workers.concurrency,
            "requests_per_s": round(self._rate.rate_per_s, 4),
            "requests": dict(self._requests),
            "outcomes": Counter(self.report.outcomes),
            "quota_mode": self._quota.mode(now_s),
            "quota_used": self._quota.used(now_s),
            "quota_limit": self._quota.limit,
            "quota": quota_snapshot(self._quota, now_s),
        }

    def apply_settings(self, new: Settings) -> None:
        """Apply a reloaded configuration's rate, concurrency, retries, filters and quota
        without touching in-flight work. Settings that need a restart keep their value."""
        old = self._settings
        self._settings = dataclasses.replace(
            old,
            rate=new.rate,
            filters=new.filters,
            quota=new.quota,
            workers=dataclasses.replace(new.workers, lease_s=old.workers.lease_s),
        )
        if (new.rate.requests_per_s, new.rate.burst) != (old.rate.requests_per_s, old.rate.burst):
            self._rate.reconfigure(self._rate_policy(new))
        self._retry = RetryPolicy(
            new.workers.max_attempts, new.workers.backoff_base_s, new.workers.backoff_max_s
        )
        self._mode_params = self._params_by_mode(new)
        self._quota.settings = new.quota
        for _ in range(new.workers.concurrency - self._worker_count):
            self._spawn_worker()
        self._retire_idle_workers()
        self._room.set()  # the feeder's idea of a full queue may have changed

    @staticmethod
    def _rate_policy(settings: Settings) -> RatePolicy:
        return RatePolicy(
            settings.rate.requests_per_s,
            settings.rate.burst,
            decrease_factor=settings.rate.decrease_factor,
            increase_after_s=settings.rate.increase_after_s,
        )

    @staticmethod
    def _params_by_mode(settings: Settings) -> dict[str, tuple[dict[str, str], str]]:
        return {
            mode: (params, json.dumps(params, sort_keys=True))
            for mode in MODES
            for params in [params_for_mode(settings.filters, mode)]
        }

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> HarvestReport:
        started_s = time.monotonic()
        feeder = asyncio.create_task(self._feed(), name="feeder")
        writer = asyncio.create_task(self._write(), name="writer")
        for task in (feeder, writer):
            task.add_done_callback(self._on_task_done)
        for _ in range(self._settings.workers.concurrency):
            self._spawn_worker()
        await self._stopping.wait()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await self._stop_workers()
        self._outcomes.put_nowait(None)
        await writer
        for task in list(self._tasks):
            task.cancel()
        self.report.released = await self._release_everything()
        self.report.elapsed_s = time.monotonic() - started_s
        return self.report

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """A pipeline task that dies of an unexpected error stops the daemon, loudly."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error(
            "harvest.task_failed", task=task.get_name(), error=f"{type(error).__name__}: {error}"
        )
        self.report.exit_code = EXIT_FAILURE
        self.request_stop(f"{task.get_name()} failed", immediate=True)

    async def _release_everything(self) -> int:
        """Requeue every job still in progress; we hold the store's daemon lock, so all
        of them are ours (a claim cut short, a job never started, a cancelled request).
        Retried, as another process may be holding the write lock for a while."""
        for attempt in range(1, 6):
            try:
                return await self._db.requeue_all_leased()
            except sqlite3.Error as error:
                log.error("harvest.release_failed", attempt=attempt, error=str(error))
                await asyncio.sleep(2.0)
        self.report.exit_code = EXIT_FAILURE
        return 0  # the next start requeues them

    def _spawn_worker(self) -> None:
        task = asyncio.create_task(self._work(), name="worker")
        task.add_done_callback(self._on_task_done)
        task.add_done_callback(self._workers.discard)
        self._workers.add(task)
        self._worker_count += 1

    def _surplus_workers(self) -> int:
        return self._worker_count - self._settings.workers.concurrency

    def _retire_idle_workers(self) -> None:
        """Fewer workers: idle ones go now; busy ones leave after their current job
        (each checks before taking another)."""
        idle = [task for task in self._workers if task not in self._busy and not task.cancelling()]
        for task in idle[: max(self._surplus_workers(), 0)]:
            task.cancel()  # waiting on an empty queue: no job is lost
            self._worker_count -= 1

    async def _stop_workers(self) -> None:
        """Idle workers stop at once; busy ones get until the drain deadline."""
        while not self._jobs.empty():  # queued, never started: released at the end
            self._jobs.get_nowait()
        for task in self._workers - self._busy:
            task.cancel()
        busy = set(self._busy)
        if busy:
            finished = asyncio.create_task(asyncio.wait(busy))
            hurry = asyncio.create_task(self._hurry.wait())
            await asyncio.wait(
                {finished, hurry},
                timeout=self._settings.workers.drain_deadline_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in (finished, hurry):
                task.cancel()
        workers = set(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def _feed(self) -> None:
        try:
            await self._feed_until_stopped()
        except Exception as error:  # the store failed (locked too long, I/O): stop cleanly
            log.error("harvest.claim_failed", error=f"{type(error).__name__}: {error}")
            self.report.exit_code = EXIT_FAILURE
            self.request_stop("store error", immediate=True)

    async def _feed_until_stopped(self) -> None:
        lease_s = self._settings.workers.lease_s
        loop = asyncio.get_running_loop()
        next_sweep_s = loop.time() + lease_s / 4
        while not self._stopping.is_set():
            if loop.time() >= next_sweep_s:
                # Expired leases not of this run (ours may wait long for a rate token).
                await self._db.requeue_expired(keep_tokens=self._live_tokens)
                next_sweep_s = loop.time() + lease_s / 4
            room = await self._room_in_queue()
            claimed = await self._db.claim(room, lease_s, backfill=self._quota.mode() == FULL)
            self._outstanding += len(claimed)
            for job in claimed:
                self._live_tokens[job.lease_token] += 1
            for job in claimed:
                self._jobs.put_nowait(job)
            if not claimed:
                await asyncio.sleep(await self._idle_wait_s())

    async def _room_in_queue(self) -> int:
        """Wait until fewer than `concurrency` jobs are queued; how many more fit."""
        while (room := self._settings.workers.concurrency - self._jobs.qsize()) <= 0:
            self._room.clear()
            await self._room.wait()
        return room

    async def _idle_wait_s(self) -> float:
        """How long to wait before claiming again; stops a draining run that is done."""
        if self._outstanding:
            return 0.05
        in_progress, earliest = await self._db.queue_outlook(backfill=self._quota.mode() == FULL)
        if self._drain and in_progress == 0 and earliest is None:
            self.request_stop("drained")
            return 0.0
        if earliest is None:
            return 1.0
        wait_s = parse_iso(earliest) - time.time()
        return min(max(wait_s, 0.05), 1.0)

    async def _work(self) -> None:
        while not self._stopping.is_set():
            if self._surplus_workers() > 0:  # a reload lowered the concurrency
                self._worker_count -= 1
                return
            job = await self._jobs.get()
            self._room.set()
            self._busy.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await self._run_job(job)
            finally:
                self._busy.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _run_job(self, job: ClaimedJob) -> None:
        """Wait for a rate token, fetch in the quota's mode, hand the outcome on."""
        await self._rate.acquire()
        if self._stopping.is_set():
            return  # released with the rest at the end
        mode = self._quota.mode()
        if job.needs_full and mode != FULL:
            self._outcomes.put_nowait(wait_for_full_mode(job, time.time()))
            return
        try:
            outcome = await self._fetch(job, mode)
        except Exception as error:  # a bug of ours must not strand the job in progress
            log.exception("harvest.worker_error", id_type=job.id_type, identifier=job.identifier)
            outcome = internal_failure(
                job, f"internal error: {type(error).__name__}", self._retry, time.time()
            )
        self._outcomes.put_nowait(outcome)

    async def _fetch(self, job: ClaimedJob, mode: str) -> JobOutcome:
        """One request in `mode`, with the quota told what it started and brought."""
        params, params_json = self._mode_params[mode]
        self._quota.started(mode)
        tweets: tuple[int, ...] = ()
        result: FetchResult | None = None
        try:
            result = await self._client.fetch(job.id_type, job.identifier, params)
            self._requests[result.outcome.value] += 1
            if result.outcome is Outcome.OK and mode != NO_TWITTER:
                tweets = result.tweet_ids
        finally:
            ok = result is not None and result.outcome is Outcome.OK
            self._quota.answered(mode, len(tweets) if ok else None)
        self._react(job, result)
        return decide(
            job,
            result,
            policy=self._retry,
            request_params=params_json,
            mode=mode,
            now_s=time.time(),
            tweet_ids=tweets,
        )

    def _react(self, job: ClaimedJob, result: FetchResult) -> None:
        """Whole-daemon consequences of one answer."""
        outcome = result.outcome
        if outcome is Outcome.UNAUTHORIZED:
            if self.report.exit_code == EXIT_KEY_REJECTED:
                return  # said once is enough
            log.error(
                "harvest.key_rejected",
                http_status=result.http_status,
                message="API key rejected: the API refused the key (HTTP 403); stopping",
            )
            self.report.exit_code = EXIT_KEY_REJECTED
            self.request_stop("key rejected", immediate=True)
        elif outcome is Outcome.RATE_LIMITED:
            rate_before = self._rate.rate_per_s
            pause_s = self._rate.on_rate_limited(result.limits.retry_after_s)
            if self._rate.rate_per_s != rate_before:
                log.warning(
                    "harvest.rate_limited",
                    pause_s=round(pause_s, 2),
                    requests_per_s=round(self._rate.rate_per_s, 3),
                )
        elif outcome is Outcome.QUOTA_EXHAUSTED:
            self._on_quota_refusal(job)
        else:
            self._rate.on_accepted()
        self._watch_allowance(result)
        self._quota.server_says(
            result.limits.tweet_limit, result.limits.tweet_remaining, time.time()
        )
        if result.error and outcome not in (Outcome.UNAUTHORIZED, Outcome.RATE_LIMITED):
            log.info(
                "harvest.fetch_failed",
                outcome=outcome.value,
                error=result.error,
                id_type=job.id_type,
                identifier=job.identifier,
                attempt=job.attempts + 1,
            )

    def _on_quota_refusal(self, job: ClaimedJob) -> None:
        """The tweet-ID quota is spent: no Twitter until the ledger says it frees."""
        first = time.time() >= self._quota.refused_until_s
        self._quota.refused(time.time() + 60.0)  # until the store answers when
        if first:
            log.warning(
                "harvest.quota_refused",
                id_type=job.id_type,
                identifier=job.identifier,
                action="switching to no_twitter",
            )
            self._background(self._learn_when_quota_frees())

    async def _learn_when_quota_frees(self) -> None:
        """Hold no_twitter until enough charges age out for full mode's largest answer.

        If our ledger already shows that room, the server counts more than we do (the
        key is shared, or older charges): hold for an hour, or the window if shorter.
        """
        window_s = self._settings.quota.window_s
        frees_at_s = await self._db.ledger_frees_at(window_s, self._quota.full_mode_usage())
        until_s = frees_at_s or time.time() + min(window_s, 3600.0)
        self._quota.refused_until_s = until_s
        log.warning("harvest.quota_refused_until", until=iso_utc(until_s))

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch_allowance(self, result: FetchResult) -> None:
        """Sleep to the next hour/day boundary once the API says none is left."""
        limits = result.limits
        already_paused = self._rate.paused_for_s > 60
        pause_s = self._rate.on_remaining(limits.hourly_remaining, limits.daily_remaining)
        if pause_s and not already_paused:
            log.warning(
                "harvest.allowance_spent",
                pause_s=round(pause_s),
                hourly_remaining=limits.hourly_remaining,
                daily_remaining=limits.daily_remaining,
            )

    async def _write(self) -> None:
        """Write outcomes in batches: whatever arrived while the last commit ran."""
        finished = False
        while not finished:
            batch = [await self._outcomes.get()]
            while not self._outcomes.empty() and len(batch) < 2000:
                batch.append(self._outcomes.get_nowait())
            finished = batch[-1] is None
            outcomes = [item for item in batch if item is not None]
            if outcomes:
                await self._record(outcomes)

    async def _record(self, outcomes: list[JobOutcome]) -> None:
        try:
            result = await self._db.record(outcomes, self._settings.quota.window_s)
        except Exception as error:  # the store failed (disk full, I/O error): stop cleanly
            log.error("harvest.store_failed", error=f"{type(error).__name__}: {error}")
            self.report.exit_code = EXIT_FAILURE
            self.request_stop("store error", immediate=True)
            return
        self._outstanding -= len(outcomes)
        for outcome in outcomes:
            self._live_tokens[outcome.lease_token] -= 1
            if self._live_tokens[outcome.lease_token] <= 0:
                del self._live_tokens[outcome.lease_token]
        for problem in result.underived:
            log.warning("harvest.derive_failed", problem=problem, action="stored raw only")
        tweet_count = sum(len(o.response.tweet_ids) for o in outcomes if o.response is not None)
        self._quota.recorded(tweet_count, result.charged, result.pruned)
        for outcome in outcomes:
            self.report.outcomes[outcome.state] += 1
            if outcome.response is not None:
                self.report.modes[outcome.response.mode] += 1

        if self._progress is not None:
            self._progress.update(
                self.report.finished, f"pending retries {self.report.outcomes['pending']:,}"
            )
