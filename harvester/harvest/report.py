"""What a harvest says of itself: its final report, and the live view of a run.

Plain records, so the service (heartbeat, STATUS line, metrics, progress) and the CLI
read typed fields rather than dicts.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from harvester.harvest.quota import QuotaView
from harvester.harvest.ratestate import LearnedRate, RateView
from harvester.harvest.schedule import TaskView
from harvester.model import FINAL_STATES, ExitCode, JobState, Outcome
from harvester.store.connection import explain_sqlite_error


@dataclass
class HarvestReport:
    """How a run ended and what it did; `run_daemon` returns it."""

    stopped_by: str = "running"  # "drained", "signal SIGTERM", "key rejected", ...
    exit_code: ExitCode = ExitCode.OK
    outcomes: Counter[JobState] = field(default_factory=Counter)  # jobs written, per state
    # responses stored, per mode (a QuotaMode's value, or `counts` for the counts call)
    modes: Counter[str] = field(default_factory=Counter)
    released: int = 0  # jobs in progress put back to pending at the end
    elapsed_s: float = 0.0
    # Jobs pending in the store once the run stopped (those released included), as
    # `harvest.start` counts them; None if the store could not say.
    pending_left: int | None = None
    # Why a run that exits 1 stopped, in words for its one line on stderr (the first
    # failure; the events log every one).
    failure: str | None = None

    @property
    def finished(self) -> int:
        """Jobs that reached a final state in this run."""
        return sum(self.outcomes[state] for state in FINAL_STATES)

    @property
    def retries(self) -> int:
        """Outcomes that put a job back to pending for a later attempt (one job may
        count several times)."""
        return self.outcomes[JobState.PENDING]

    def outcomes_by_name(self) -> dict[str, int | None]:
        """For the `harvest.stop` event: the jobs this run finished, per final state;
        `pending`, the jobs left pending in the store (not the retries written, which
        count a job once per attempt: those are `retries`)."""
        counts: dict[str, int | None] = {
            str(state): count for state, count in self.outcomes.items() if state in FINAL_STATES
        }
        counts["pending"] = self.pending_left
        if self.retries:
            counts["retries"] = self.retries
        return counts

    def modes_by_name(self) -> dict[str, int]:
        """`modes` with plain-text keys, for log events."""
        return {str(mode): count for mode, count in self.modes.items()}


def describe_failure(error: BaseException) -> str:
    """A failure of the store in words a user can act on: SQLite's explained (a full
    disk, a damaged file...), any other error named with its type."""
    if isinstance(error, sqlite3.Error):
        return explain_sqlite_error(error)
    if isinstance(error, OSError) and error.strerror:
        return f"the store failed: {error.strerror}"
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class LiveView:
    """A running harvest at one moment: what the service reports (heartbeat, systemd's
    STATUS line, metrics, progress)."""

    finished: int  # jobs that reached a final state in this run
    outstanding: int  # claimed jobs whose outcome is not written yet
    concurrency: int  # workers configured (a reload may change it)
    requests_per_s: float  # the rate allowed now (learned or paced below the configured)
    requests: Mapping[Outcome, int]  # answers since start, per outcome
    outcomes: Counter[JobState]  # jobs written in this run, per state
    quota: QuotaView
    rate: RateView
    learned_rate: LearnedRate | None  # what refusals taught, to save; None if nothing
    schedule: Mapping[str, TaskView] = field(default_factory=dict)  # each scheduled task
