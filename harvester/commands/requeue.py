"""Finished jobs back to `pending`, for the daemon to fetch again: `refresh` (a new
snapshot of answers older than an age), `retry` (jobs that ended in one state, with a
fresh attempt budget) and `backfill --twitter` (answers fetched in a degraded quota
mode, again in full mode)."""

from __future__ import annotations

from array import array

from harvester.commands.context import Invocation
from harvester.errors import CommandError, counted
from harvester.model import ExitCode, JobState
from harvester.scheduling import parse_age
from harvester.store import Store
from harvester.store.tables import jobs_to_refresh


def cmd_refresh(invocation: Invocation, older_than: str, *, where: str | None) -> ExitCode:
    """`harvester refresh --older-than AGE [--where SQL]`."""
    try:
        older_than_s = parse_age(older_than, bounded=False)
    except ValueError as error:
        raise CommandError(f"--older-than: {error}") from None
    path = invocation.settings().store.path
    with (
        Store(path, must_exist=True) as store,  # first: it may upgrade
        Store(path, read_only=True) as reader,
    ):
        # Every chosen id first (8 bytes each: 64 MB for 8M outputs), then the
        # requeue: a --where that fails half-way through requeues nothing.
        chosen = array("q")
        for job_ids in jobs_to_refresh(reader, older_than_s, where):
            chosen.extend(job_ids)
        count = store.jobs.requeue_done(chosen)
    print(
        f"requeued {counted(count, 'output')} for a new snapshot (latest older than {older_than})"
    )
    return ExitCode.OK


def cmd_retry(invocation: Invocation, state: JobState) -> ExitCode:
    """`harvester retry [--state failed|not_found|done]`."""
    with Store(invocation.settings().store.path, must_exist=True) as store:
        count = store.jobs.retry(state)
    print(f"requeued {count:,} {state} jobs")
    return ExitCode.OK


def cmd_backfill(invocation: Invocation) -> ExitCode:
    """`harvester backfill --twitter`."""
    settings = invocation.settings()
    if settings.api.endpoint != "fetch":
        raise CommandError(
            "backfill --twitter re-fetches mentions with the fetch call, but api.endpoint "
            f"is {settings.api.endpoint!r}: counts answers hold no tweets to backfill"
        )
    with Store(settings.store.path, must_exist=True) as store:
        count = store.jobs.queue_backfill()
    print(
        f"queued {counted(count, 'output')} for a full re-fetch; the daemon runs them when the "
        "tweet quota has room"
    )
    return ExitCode.OK
