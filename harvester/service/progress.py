"""How far the run is, for whoever watches: a progress bar on a terminal, else a
`harvest.progress` event every `log.progress_every_s`, so a long run is never silent.

The pipeline only reports (`Harvest(on_progress=...)`); the daemon, which owns the
terminal, decides how it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from harvester.errors import counted
from harvester.harvest.report import HarvestReport
from harvester.logs import get_logger
from harvester.model import JobState
from harvester.progress import ProgressLine
from harvester.service.heartbeat import DaemonView

log = get_logger("harvester.service.progress")


@dataclass(frozen=True, slots=True)
class ProgressFigures:
    """The fields of a `harvest.progress` event."""

    done: int
    pending: int  # jobs left: pending and in progress
    finished: int  # in this run
    achieved_per_s: float  # over the last minute
    eta_s: int | None  # at that rate; None while it is 0

    @classmethod
    def of(cls, view: DaemonView) -> ProgressFigures:
        """The service's job counts are carried forward from the last count by this
        run's finished jobs, so pending plus in progress is what is left."""
        left, rate = view.left, view.achieved_per_s
        eta_s = 0 if left == 0 else round(left / rate) if rate > 0 else None
        return cls(
            done=view.jobs[JobState.DONE],
            pending=left,
            finished=view.live.finished,
            achieved_per_s=rate,
            eta_s=eta_s,
        )


def retried(retries: int) -> str:
    """The bar's note of retries: nothing while there are none."""
    return f"{counted(retries, 'retry', 'retries')} so far" if retries else ""


class RunProgress:
    """The bar when shown (on a terminal, or as `show` says), else the events."""

    def __init__(self, pending: int, *, show: bool | None, every_s: float) -> None:
        self._bar = ProgressLine("harvest", pending, enabled=show)
        self.every_s: float | None = None if self._bar.enabled else every_s

    def update(self, report: HarvestReport) -> None:
        """The pipeline's `on_progress`: redraw the bar (a no-op when it is not shown),
        naming the retries written so far, if any (attempts that failed and were put
        back to pending for a later one)."""
        retries = report.outcomes[JobState.PENDING]
        self._bar.update(report.finished, retried(retries))

    async def log_events(self, view: Callable[[], Awaitable[DaemonView]]) -> None:
        """Without the bar: a `harvest.progress` event every `every_s`, until cancelled."""
        if self.every_s is None:
            return
        while True:
            await asyncio.sleep(self.every_s)
            current: DaemonView | None = None
            with contextlib.suppress(Exception):  # a failing store: the service loop says so
                current = await view()
            if current is not None:
                log.info("harvest.progress", **dataclasses.asdict(ProgressFigures.of(current)))

    def close(self) -> None:
        """End the bar's line: later log lines must not make room for a dead bar."""
        self._bar.close()
