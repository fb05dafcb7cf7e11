"""What a running daemon does by itself (`[schedule]`): discover, refresh and export
on a timer.

Every `discover_every`, a discovery (`harvest.discovery`) pages the citations call
with the configured query; every `refresh_every`, outputs whose latest snapshot is
older than `refresh_older_than` go back to the queue. Both share the harvest's one
rate budget: a discovery asks for one page at a time through the same controller the
workers wait on, so it takes a token now and then among theirs and neither starves
the other; a refresh sends nothing itself, it only queues work. Every
`export_every`, what the store gained goes into the Parquet dataset at
`export_dataset`, in a child process (`harvest.exporting`) that runs beside the other
tasks. When each last ran is kept in the store (`daemon_state`, key `schedule`), so a
restart does not run them again early, and a discovery stopped by a restart resumes
at its next page.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harvester.errors import HarvesterError
from harvester.logs import get_logger
from harvester.model import iso_utc, parse_iso
from harvester.scheduling import ScheduleSettings

if TYPE_CHECKING:  # types only: `status` reads SCHEDULE_KEY without the HTTP client
    from harvester.harvest.discovery import Discovery
    from harvester.store.aio import AsyncStore

SCHEDULE_KEY = "schedule"  # daemon_state: when each scheduled task last ran
FAILED_RETRY_S = 300.0  # a task that failed runs again this soon, not a whole period later

log = get_logger("harvester.harvest.schedule")


@dataclass(frozen=True, slots=True)
class TaskView:
    """One scheduled task, as the heartbeat and `status` show it."""

    every_s: float
    next_at: str
    last_at: str | None
    last: dict[str, Any] | None  # what its last run did

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Task:
    last_at_s: float | None = None
    last: dict[str, Any] | None = None
    retry_at_s: float | None = None  # after a failure

    def due_at_s(self, every_s: float) -> float:
        if self.retry_at_s is not None:
            return self.retry_at_s
        return 0.0 if self.last_at_s is None else self.last_at_s + every_s


class Scheduler:
    """Runs the scheduled tasks until stopped; reconfigured by a reload."""

    def __init__(self, settings: ScheduleSettings, discovery: Discovery, store: AsyncStore) -> None:
        self.settings = settings
        self._discovery = discovery
        self._db = store
        self._tasks = {"discover": _Task(), "refresh": _Task(), "export": _Task()}
        self._changed = asyncio.Event()
        self._exporting: asyncio.Task[None] | None = None  # beside the others, not before
        self._loaded = False  # until then, no view: the last runs are not known yet

    def reconfigure(self, settings: ScheduleSettings) -> None:
        """New periods and query from a reload: the next due times follow at once."""
        self.settings = settings
        self._changed.set()

    def view(self) -> dict[str, TaskView]:
        """Each enabled task's period, next and last run."""
        if not self._loaded:
            return {}
        return {
            name: TaskView(
                every_s,
                iso_utc(max(task.due_at_s(every_s), time.time())),
                None if task.last_at_s is None else iso_utc(task.last_at_s),
                task.last,
            )
            for name, task in self._tasks.items()
            if (every_s := self._every_s(name)) is not None
        }

    async def run(self, stopping: asyncio.Event) -> None:
        """Run each task when due until `stopping` (`load` first). An export, which
        may take hours, runs beside the others (a child process: `exporting`)."""
        try:
            while not stopping.is_set():
                due = self._next_due()
                if due is not None and due[1] <= time.time():
                    if due[0] == "export":
                        self._exporting = asyncio.create_task(self._export_aside(stopping))
                    else:
                        await self._run_task(due[0], stopping)
                    continue
                wait_s = 3600.0 if due is None else due[1] - time.time()
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await _first_of(stopping, self._changed)
        finally:
            if self._exporting is not None:
                self._exporting.cancel()  # the child is stopped and awaited
                await asyncio.gather(self._exporting, return_exceptions=True)

    async def _export_aside(self, stopping: asyncio.Event) -> None:
        await self._run_task("export", stopping)
        self._changed.set()  # the loop reckons the export's next run again

    def _every_s(self, name: str) -> float | None:
        if name == "export":
            return self.settings.export_every_s
        return (
            self.settings.discover_every_s if name == "discover" else self.settings.refresh_every_s
        )

    def _next_due(self) -> tuple[str, float] | None:
        exporting = self._exporting is not None and not self._exporting.done()
        due = [
            (name, task.due_at_s(every_s))
            for name, task in self._tasks.items()
            if (every_s := self._every_s(name)) is not None and not (exporting and name == "export")
        ]
        return min(due, key=lambda item: item[1]) if due else None

    async def _run_task(self, name: str, stopping: asyncio.Event) -> None:
        task = self._tasks[name]
        started_s = time.time()
        try:
            last: dict[str, Any] | None
            if name == "export":
                last = await self._export()
            else:
                last = await (self._discover(stopping) if name == "discover" else self._refresh())
        except (HarvesterError, OSError, sqlite3.Error) as error:  # the store busy, say
            task.retry_at_s = time.time() + FAILED_RETRY_S
            task.last = {"error": str(error)}
            log.error(f"schedule.{name}_failed", error=str(error), retry_in_s=FAILED_RETRY_S)
            return
        if last is None:
            return  # stopped part-way: the next start resumes it
        task.last_at_s, task.last, task.retry_at_s = started_s, last, None
        log.info(f"schedule.{name}", **last)
        await self._save()

    async def _discover(self, stopping: asyncio.Event) -> dict[str, Any] | None:
        report = await self._discovery.run(self.settings.discover_query(), stopping=stopping)
        if not report.finished:
            return None  # stopping, or the key was refused
        return {
            "pages": report.pages,
            "stored": report.stored,
            "queued": report.queued,
            "known": report.known,
            "requeued": report.requeued,
        }

    async def _refresh(self) -> dict[str, Any]:
        return {"requeued": await self._db.refresh_older_than(self.settings.refresh_older_than_s)}

    async def _export(self) -> dict[str, Any]:
        from harvester.harvest.exporting import export_in_child  # not for `status`'s import

        return await export_in_child(self._db.store.opened_as, self.settings.export_dataset)

    async def load(self) -> None:
        """When each task last ran, as an earlier run saved it (before any view)."""
        saved = await self._db.load_state(SCHEDULE_KEY)
        try:
            entries = json.loads(saved) if saved else {}
        except ValueError:
            entries = {}
        for name, task in self._tasks.items():
            entry = entries.get(name) if isinstance(entries, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("last_at"), str):
                task.last_at_s = parse_iso(entry["last_at"])
                task.last = entry.get("last")
        self._loaded = True

    async def _save(self) -> None:
        entries = {
            name: {"last_at": iso_utc(task.last_at_s), "last": task.last}
            for name, task in self._tasks.items()
            if task.last_at_s is not None
        }
        await self._db.save_states({SCHEDULE_KEY: json.dumps(entries)})


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
