"""The heartbeat: what the running daemon says of itself, every few seconds.

The service loop writes a heartbeat (pid, start, rate, mode), the quota view and the
rate the controller learned to the store (`daemon_state`), where `harvester status`
reads them (and the next start the learned rate), and tells systemd a one-line
STATUS. It pings the watchdog from the event loop, after the store's thread has
answered, so a stuck loop or a stuck store stops the pings. The same figures
(`DaemonView`) feed the metrics endpoint and the progress events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from harvester.harvest.ratestate import LEARNED_RATE_KEY
from harvester.harvest.report import LiveView
from harvester.logs import get_logger
from harvester.model import FINAL_STATES, JobState, QuotaMode
from harvester.service.notify import Notifier
from harvester.store.aio import AsyncStore

REPORT_EVERY_S = 5.0
JOB_COUNTS_EVERY_S = 60.0  # counting 8M jobs by state takes ~0.5 s of the store thread
RATE_WINDOW_S = 60.0

log = get_logger("harvester.service.heartbeat")


class LiveHarvest(Protocol):
    """What the service needs of the pipeline."""

    def live_view(self) -> LiveView: ...


@dataclass(frozen=True, slots=True)
class DaemonView:
    """The running daemon at one moment: the pipeline's live view, the store's job
    counts carried forward to now, and the rate it achieved."""

    live: LiveView
    jobs: dict[str, int]  # jobs per state (JobState values), all runs
    achieved_per_s: float  # answers per second over the last minute

    @property
    def left(self) -> int:
        """Jobs not finished yet: pending and in progress."""
        return self.jobs[JobState.PENDING] + self.jobs[JobState.IN_PROGRESS]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The `heartbeat` entry of `daemon_state`; `status` reads these field names."""

    pid: int
    state: Literal["running", "stopped"]
    started_at: str
    heartbeat_at_s: float
    requests_per_s: float  # allowed now
    achieved_per_s: float  # over the last minute
    quota_mode: QuotaMode
    concurrency: int
    rate_limited_by: str  # what sets the allowed rate: configured, learned, an allowance
    allowance_per_s: float | None  # what the hourly/daily headers leave, spread out
    schedule: dict[str, dict[str, Any]]  # each scheduled task: every_s, next_at, last_at, last

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def status_line(view: DaemonView) -> str:
    """The one line systemd shows under `systemctl status`."""
    jobs, live, quota = view.jobs, view.live, view.live.quota
    return (
        f"done {jobs[JobState.DONE]:,}, pending {jobs[JobState.PENDING]:,}, "
        f"{live.finished:,} finished this run, {view.achieved_per_s:.2f} req/s "
        f"(allowed {live.requests_per_s:.2f}), quota mode {quota.mode} "
        f"({quota.used:,}/{quota.limit:,} tweet IDs)"
    )


class ServiceLoop:
    """Heartbeat, STATUS and watchdog, from the event loop, until cancelled.

    Job counts come from the store once a minute and are carried forward between
    counts with the pipeline's own tally, so the status line stays current without
    counting millions of rows every few seconds.
    """

    def __init__(
        self, harvest: LiveHarvest, store: AsyncStore, notifier: Notifier, started_at: str
    ) -> None:
        self._harvest = harvest
        self._store = store
        self._notifier = notifier
        self._started_at = started_at
        watchdog_s = notifier.watchdog_interval_s
        self._tick_s = min(REPORT_EVERY_S, watchdog_s / 2) if watchdog_s else REPORT_EVERY_S
        self._wake = asyncio.Event()
        self._counted: tuple[float, dict[str, int], Counter[JobState]] | None = None
        self._requests_seen: deque[tuple[float, int]] = deque()

    def report_soon(self) -> None:
        """Report at the next turn of the loop (after a reload, say)."""
        self._wake.set()

    async def run(self) -> None:
        next_report_s, healthy = 0.0, True
        while True:
            if time.monotonic() >= next_report_s or self._wake.is_set():
                self._wake.clear()
                healthy = await self._try_report()
                next_report_s = time.monotonic() + REPORT_EVERY_S
            if healthy:
                self._notifier.watchdog()  # only while the loop and the store answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick_s)

    async def _try_report(self) -> bool:
        """Report; a failure is logged and withholds the watchdog pings until a report
        succeeds, so a store that keeps failing ends in a restart by systemd rather
        than a daemon that looks alive and does nothing."""
        try:
            await self.report("running")
        except Exception as error:
            log.error("service.report_failed", error=f"{type(error).__name__}: {error}")
            return False
        return True

    async def view(self) -> DaemonView:
        """The pipeline's live view, with job counts and the measured request rate."""
        live = self._harvest.live_view()
        jobs = await self._job_counts(live.outcomes)
        return DaemonView(live, jobs, self._achieved_per_s(sum(live.requests.values())))

    async def report(self, state: Literal["running", "stopped"]) -> None:
        """Write the heartbeat and the quota view; tell systemd the status line."""
        view = await self.view()
        heartbeat = Heartbeat(
            pid=os.getpid(),
            state=state,
            started_at=self._started_at,
            heartbeat_at_s=time.time(),
            requests_per_s=view.live.requests_per_s,
            achieved_per_s=view.achieved_per_s,
            quota_mode=view.live.quota.mode,
            concurrency=view.live.concurrency,
            rate_limited_by=view.live.rate.limited_by,
            allowance_per_s=view.live.rate.allowance_per_s,
            schedule={name: task.to_dict() for name, task in view.live.schedule.items()},
        )
        entries = {"heartbeat": heartbeat.to_json(), "quota": view.live.quota.to_json()}
        if view.live.learned_rate is not None:
            entries[LEARNED_RATE_KEY] = view.live.learned_rate.to_json()
        await self._store.save_states(entries)
        self._notifier.status(status_line(view))

    async def _job_counts(self, outcomes: Counter[JobState]) -> dict[str, int]:
        now_s = time.monotonic()
        if self._counted is None or now_s - self._counted[0] >= JOB_COUNTS_EVERY_S:
            counts = await self._store.counts_by_state()
            self._counted = (now_s, counts, Counter(outcomes))
        _, counts, outcomes_then = self._counted
        since = Counter(outcomes)
        since.subtract(outcomes_then)
        jobs = dict(counts)
        for state in FINAL_STATES:
            jobs[state] += since[state]
            jobs[JobState.PENDING] -= since[state]
        jobs[JobState.PENDING] = max(jobs[JobState.PENDING], 0)
        return jobs

    def _achieved_per_s(self, requests_total: int) -> float:
        """Answers per second over the last minute (or since start, if shorter)."""
        now_s = time.monotonic()
        seen = self._requests_seen
        seen.append((now_s, requests_total))
        while len(seen) > 2 and now_s - seen[1][0] >= RATE_WINDOW_S:
            seen.popleft()
        first_s, first_total = seen[0]
        return (
            round((requests_total - first_total) / (now_s - first_s), 3) if now_s > first_s else 0.0
        )
