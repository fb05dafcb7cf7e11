"""What `harvester run` tells its caller once the daemon has stopped.

The daemon is the service's (`service.daemon.run_daemon`); the CLI runs it and hands
its report here, to become the exit code the README promises: 1 for a failure that
stopped it (a full disk, a damaged store...), 3 for a rejected key, 4 for a drained
queue with jobs that failed during this run, 0 for any graceful stop; each non-zero one
said in one line on stderr. Jobs left `failed` by earlier runs are named in a line of
their own, not in the code: a cron job's exit code speaks of its own run.
"""

from __future__ import annotations

from pathlib import Path

from harvester.errors import counted
from harvester.harvest.report import HarvestReport
from harvester.logs import say
from harvester.model import ExitCode, JobState
from harvester.store import Store


def run_verdict(report: HarvestReport, *, drain: bool, store_path: Path) -> ExitCode:
    """The exit code of `run [--drain]` that ended with `report`, said in words on
    stderr when it is not plain success: one `harvester run: ...` line, whatever the
    events logged before it (a failure that stopped the daemon before it could run,
    a store that cannot be opened say, is the CLI's own line)."""
    if report.exit_code == ExitCode.KEY_REJECTED:
        say(
            f"harvester run: {report.failure or 'API key rejected'}; unfinished jobs stay pending",
            priority="error",
        )
    if report.exit_code == ExitCode.FAILURE:
        why = report.failure or f"stopped by {report.stopped_by}"
        say(f"harvester run: {why}; the harvest stopped, unfinished jobs stay pending")
    if drain and report.exit_code == ExitCode.OK:
        return drain_verdict(store_path, report.stopped_by, report.outcomes[JobState.FAILED])
    return report.exit_code


def drain_verdict(path: Path, stopped_by: str, failed_now: int = 0) -> ExitCode:
    """A drain that ran to its end exits 0 only if every job it finished ended `done`
    or `not_found`: scripts that chain on it must not mistake a partly failed harvest
    for success. `failed_now` is how many jobs ended `failed` in this run; those the
    store holds from earlier runs are said in one line (`retry` requeues them) and
    leave the code at 0, so a cron job does not report an old failure forever. A
    drain stopped by SIGTERM/SIGINT is a graceful stop and exits 0, as every stop does
    (issue 3's contract); it says what it left."""
    if stopped_by != "drained":
        say(
            f"harvester run: stopped by {stopped_by} before the queue was drained; "
            "unfinished jobs stay pending",
            priority="warning",
        )
        return ExitCode.OK
    with Store(path, read_only=True) as store:
        failed = store.jobs.counts_by_state()[JobState.FAILED]
    earlier = max(failed - failed_now, 0)
    if failed_now:
        also = f"; {counted(earlier, 'job')} failed in earlier runs" if earlier else ""
        say(
            f"harvester run: drained, but {counted(failed_now, 'job')} ended failed in this "
            f"run{also} "
            "(`harvester status` shows why; `harvester retry` requeues them)",
            priority="warning",
        )
        return ExitCode.JOBS_FAILED
    if earlier:
        say(
            f"harvester run: drained; {counted(earlier, 'job')} left failed by earlier runs "
            "(not this one's: `harvester retry` requeues them)",
            priority="info",
        )
    return ExitCode.OK
