"""The harvest pipeline: claim jobs, fetch them at the allowed rate, store what comes back.

Three kinds of task share one event loop and pass work one way through two queues:

    feeder --claimed jobs--> N workers --outcomes--> writer
    (feeder.Feeder)          (workers)               (AsyncStore.record, batched)

All SQLite work runs on one dedicated thread (`store.aio.AsyncStore`), so a commit
never stalls the event loop, and the writer commits outcomes in batches of a few
hundred, or whatever waited a tenth of a second (`batches.OutcomeBatches`). The
service (`service.daemon`) runs it under the store's daemon lock, so when it stops,
after the last outcomes are written, every job still `in_progress` is its own and
goes back to `pending`. A reload changes its rate, workers and filters in flight
(`apply_settings`). It reports progress through the `on_progress` callback and draws
nothing itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

from harvester.config import Settings
from harvester.harvest.batches import OutcomeBatches
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.discovery import Discovery, new_job_state
from harvester.harvest.feeder import Feeder, Leases
from harvester.harvest.policy import RetryPolicy
from harvester.harvest.quota import QuotaState
from harvester.harvest.ratelimit import RateController
from harvester.harvest.ratestate import LearnedRate, RatePolicy
from harvester.harvest.reactions import Reactions, key_refusal
from harvester.harvest.report import HarvestReport, LiveView, describe_failure
from harvester.harvest.schedule import Scheduler
from harvester.harvest.workers import Fetcher, WorkerPool
from harvester.logs import get_logger
from harvester.model import ClaimedJob, ExitCode, JobOutcome, JobState, Outcome
from harvester.store.aio import AsyncStore

WRITE_BATCH_MAX = 2000  # outcomes per commit at most
# A commit as soon as this many outcomes wait, or this long after fewer were found
# (`batches.OutcomeBatches`): a commit of 256 costs the store thread ~30 us less per
# answer than the ~35 that arrived during the last commit at full speed.
WRITE_BATCH_TARGET = 256
WRITE_LINGER_S = 0.1
RELEASE_ATTEMPTS = 5
RELEASE_RETRY_S = 2.0

log = get_logger("harvester.harvest.pipeline")


def _nothing(*_args: object) -> None:
    pass


class Harvest:
    """One run of the harvest pipeline over an open store and client.

    `on_progress(report)` is called after each batch of outcomes is written;
    `on_stopping()` once, when the run begins to stop.
    """

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        client: AltmetricClient,
        *,
        drain: bool,
        ledger_used: int = 0,
        learned_rate: LearnedRate | None = None,
        on_progress: Callable[[HarvestReport], None] = _nothing,
        on_stopping: Callable[[], None] = _nothing,
    ) -> None:
        self._settings = settings
        self._db = store
        self._on_progress = on_progress
        self._on_stopping = on_stopping
        self.report = HarvestReport()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._rate = RateController(RatePolicy.of(settings.rate), learned=learned_rate)
        self._quota = QuotaState(settings.quota, ledger_used=ledger_used)
        self._reactions = Reactions(self._rate, self._quota, store, on_fatal=self._fatal)
        self._client = client
        self._fetcher = Fetcher(client, self._rate, self._quota, self._reactions, settings)
        # Unbounded: the feeder keeps it at most `concurrency` deep itself, so a reload
        # that changes the concurrency changes the depth too.
        jobs: asyncio.Queue[ClaimedJob] = asyncio.Queue()
        self._room = asyncio.Event()  # set by workers as they take jobs
        self._leases = Leases()
        self._feeder = Feeder(
            store,
            jobs,
            self._room,
            self._quota,
            self._leases,
            settings=settings,
            drain=drain,
            on_drained=lambda: self.request_stop("drained"),
        )
        self._pool = WorkerPool(
            jobs, self._room, self._run_job, stopping=self._stopping, on_done=self._on_task_done
        )
        self._outcomes = OutcomeBatches(
            target=WRITE_BATCH_TARGET, linger_s=WRITE_LINGER_S, max_size=WRITE_BATCH_MAX
        )
        # A drain is a one-off: it ends with the queue, so nothing is scheduled in it.
        self._scheduler = None if drain else self._make_scheduler(client)

    def _make_scheduler(self, client: AltmetricClient) -> Scheduler:
        """Discovery and refresh on `[schedule]`'s timer, through this run's client,
        rate controller and reactions: one rate budget for everything."""
        discovery = Discovery(
            client,
            self._rate,
            self._reactions,
            self._db,
            new_job_state=new_job_state(self._settings.api.endpoint),
            retry=RetryPolicy.of(self._settings.workers),
        )
        return Scheduler(self._settings.schedule, discovery, self._db)

    # -- stopping ---------------------------------------------------------------------

    def request_stop(self, reason: str, *, immediate: bool = False) -> None:
        """Stop claiming; finish in-flight requests unless `immediate`."""
        if not self._stopping.is_set():
            self.report.stopped_by = reason
            self._stopping.set()
            self._on_stopping()
        if immediate:
            self._hurry.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _fatal(self, result: FetchResult) -> None:
        """An answer no retry can change: a rejected key (exit 3), or a connection the
        settings forbid (a certificate that does not verify, a proxy wanting
        credentials: exit 1, its message saying which setting fixes it)."""
        if result.outcome is Outcome.UNAUTHORIZED:
            self.report.exit_code = ExitCode.KEY_REJECTED
            self.report.failure = f"API key rejected ({key_refusal(result)})"
            self.request_stop("key rejected", immediate=True)
        else:
            self._fail("connection refused", result.error or str(result.outcome))

    def _fail(self, reason: str, failure: str) -> None:
        """Stop at once and exit 1; `failure` says why in words (the first one wins)."""
        self.report.exit_code = ExitCode.FAILURE
        if self.report.failure is None:
            self.report.failure = failure
        self.request_stop(reason, immediate=True)

    # -- for the service: a view of the run, and settings applied in flight -------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def live_view(self) -> LiveView:
        """The run at this moment, for the heartbeat, systemd's STATUS line, metrics."""
        return LiveView(
            finished=self.report.finished,
            outstanding=self._leases.outstanding,
            concurrency=self._settings.workers.concurrency,
            requests_per_s=round(self._rate.rate_per_s, 4),
            requests=dict(self._fetcher.requests),
            outcomes=Counter(self.report.outcomes),
            quota=self._quota.view(time.time()),
            rate=self._rate.view(),
            learned_rate=self._rate.learned(),
            schedule={} if self._scheduler is None else self._scheduler.view(),
        )

    def apply_settings(self, settings: Settings) -> None:
        """Run on `settings` from now on, without touching in-flight work: the rate,
        concurrency, retries, filters and quota change at once.

        Every setting given is applied: what a reload may change is the caller's
        decision (`service.reload` keeps the others at their running values)."""
        old = self._settings
        self._settings = settings
        if settings.rate != old.rate:  # any rate.* key, the AIMD factors included
            self._rate.reconfigure(RatePolicy.of(settings.rate))
        self._fetcher.reconfigure(settings)
        self._client.reconfigure(settings.api)  # the proxy and the bound on answers
        self._quota.settings = settings.quota
        self._feeder.settings = settings
        self._pool.resize(settings.workers.concurrency)
        self._room.set()  # the feeder's idea of a full queue may have changed
        if self._scheduler is not None:
            self._scheduler.reconfigure(settings.schedule)

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> HarvestReport:
        started_s = time.monotonic()
        feeder = asyncio.create_task(self._feed(), name="feeder")
        writer = asyncio.create_task(self._write(), name="writer")
        helpers = [feeder]
        if self._scheduler is not None:
            await self._scheduler.load()
            helpers.append(
                asyncio.create_task(self._scheduler.run(self._stopping), name="schedule")
            )
        for task in (*helpers, writer):
            task.add_done_callback(self._on_task_done)
        self._pool.resize(self._settings.workers.concurrency)
        await self._stopping.wait()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await self._pool.stop(self._settings.workers.drain_deadline_s, self._hurry)
        self._outcomes.close()
        await writer
        self._reactions.cancel()
        self.report.released = await self._release_everything()
        self.report.pending_left = await self._pending_left()
        self.report.elapsed_s = time.monotonic() - started_s
        return self.report

    async def _pending_left(self) -> int | None:
        """The jobs pending in the store now, for the stop event; None from a store
        that cannot count them (its failure is told already)."""
        try:
            return (await self._db.counts_by_state())[JobState.PENDING]
        except sqlite3.Error:
            return None

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        """A pipeline task that dies of an unexpected error stops the daemon, loudly."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error(
            "harvest.task_failed", task=task.get_name(), error=f"{type(error).__name__}: {error}"
        )
        self._fail(
            f"{task.get_name()} failed",
            f"the harvest's {task.get_name()} failed: {type(error).__name__}: {error}",
        )

    async def _release_everything(self) -> int:
        """Requeue every job still in progress; we hold the store's daemon lock, so all
        of them are ours (a claim cut short, a job never started, a cancelled request).
        Retried, as another process may be holding the write lock for a while."""
        for attempt in range(1, RELEASE_ATTEMPTS + 1):
            try:
                return await self._db.requeue_all_leased()
            except sqlite3.Error as error:
                log.error("harvest.release_failed", attempt=attempt, error=str(error))
                await asyncio.sleep(RELEASE_RETRY_S)
        self.report.exit_code = ExitCode.FAILURE
        if self.report.failure is None:
            self.report.failure = (
                "the jobs in progress could not be put back to pending (the next start does it)"
            )
        return 0  # the next start requeues them

    async def _feed(self) -> None:
        try:
            await self._feeder.run(self._stopping)
        except Exception as error:  # the store failed (locked too long, I/O): stop cleanly
            log.error("harvest.claim_failed", error=f"{type(error).__name__}: {error}")
            self._fail("store error", describe_failure(error))

    async def _run_job(self, job: ClaimedJob) -> None:
        outcome = await self._fetcher.outcome(job, self._stopping)
        if outcome is not None:
            self._outcomes.add(outcome)
            if len(self._outcomes) >= self._leases.outstanding:
                self._outcomes.flush()  # no claimed job left to wait for

    async def _write(self) -> None:
        """Write outcomes in batches (`batches.OutcomeBatches`) until the last is written."""
        while (outcomes := await self._outcomes.next_batch()) is not None:
            await self._record(outcomes)

    async def _record(self, outcomes: list[JobOutcome]) -> None:
        try:
            result = await self._db.record(outcomes, self._settings.quota.window_s)
        except Exception as error:  # the store failed (disk full, I/O error): stop cleanly
            log.error("harvest.store_failed", error=f"{type(error).__name__}: {error}")
            self._fail("store error", describe_failure(error))
            return
        self._leases.written(outcomes)
        if result.written < len(outcomes):  # another process requeued them meanwhile
            log.warning("harvest.leases_lost", outcomes_discarded=len(outcomes) - result.written)
        for problem in result.underived:
            log.warning("harvest.derive_failed", problem=problem, action="stored raw only")
        tweet_count = sum(len(o.response.tweet_ids) for o in outcomes if o.response is not None)
        self._quota.recorded(tweet_count, result.charged, result.pruned)
        for outcome in outcomes:
            self.report.outcomes[JobState(outcome.state)] += 1
            if outcome.response is not None:
                self.report.modes[outcome.response.mode] += 1
        self._on_progress(self.report)
