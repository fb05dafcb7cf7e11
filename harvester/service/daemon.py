"""The daemon: the harvest pipeline (`harvest.Harvest`) run as a service.

It holds an exclusive lock on its store for its whole life, so every job found
`in_progress` at start belongs to a dead run and goes back to `pending`, and at a
stop, after the last outcomes are written, the same happens to its own; a stop, a
rejected key or a kill therefore never loses a job. Around the pipeline it runs the
service companions: signals (SIGTERM/SIGINT stop, SIGHUP reloads), sd_notify, the
heartbeat and the optional metrics endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from harvester.config import ConfigError, Secret, Settings
from harvester.errors import DaemonLockError
from harvester.harvest.client import AltmetricClient
from harvester.harvest.pipeline import EXIT_FAILURE as EXIT_FAILURE
from harvester.harvest.pipeline import EXIT_KEY_REJECTED as EXIT_KEY_REJECTED
from harvester.harvest.pipeline import EXIT_OK as EXIT_OK
from harvester.harvest.pipeline import Harvest
from harvester.harvest.pipeline import HarvestReport as HarvestReport
from harvester.logs import get_logger
from harvester.model import iso_utc
from harvester.progress import ProgressLine
from harvester.service.heartbeat import (
    ServiceLoop,
    reload_changes,
    render_metrics,
    start_metrics,
)
from harvester.service.notify import Notifier
from harvester.store import Store
from harvester.store.aio import AsyncStore
from harvester.store.schema import pending_migrations

log = get_logger("harvester.service.daemon")


@contextlib.contextmanager
def daemon_lock(store_path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the store for the daemon's lifetime.

    The kernel drops a flock when its process dies, however it dies, so a crashed
    daemon never leaves a stale lock behind; and while we hold it, every job found
    `in_progress` at start belongs to a dead run and can safely be requeued.
    """
    real_path = store_path.resolve()  # one lock per store, whatever path names it
    lock_path = real_path.with_name(real_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonLockError(
                f"another harvester daemon is already running on {store_path}"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def run_daemon(
    settings: Settings,
    key: Secret,
    *,
    drain: bool,
    show_progress: bool | None = None,
    install_signals: bool = True,
    reload_settings: Callable[[], Settings] | None = None,
) -> HarvestReport:
    """Open the store under the daemon lock and harvest until drained or stopped.

    `reload_settings` is how SIGHUP re-reads the configuration (without it, SIGHUP
    is not handled). Without the progress bar (not on a terminal), a
    `harvest.progress` event is logged every `log.progress_every_s`.
    """
    with daemon_lock(settings.store.path):
        notifier = Notifier()
        _announce_upgrade(settings.store.path, notifier)
        try:
            store = Store(settings.store.path, derive=settings.store.derive)
        except BaseException:
            notifier.close()
            raise
        store_thread = AsyncStore(store)
        try:
            recovered = store.jobs.requeue_leased(expired_only=False)
            ledger_used = store.ledger.count(settings.quota.window_s)
            counts = store.jobs.counts_by_state()
            log.info(
                "harvest.start",
                store=str(settings.store.path),
                drain=drain,
                recovered_leases=recovered,
                pending=counts["pending"],
                concurrency=settings.workers.concurrency,
                requests_per_s=settings.rate.requests_per_s,
                tweet_quota_used=ledger_used,
                systemd=notifier.enabled,
            )
            progress = ProgressLine("harvest", counts["pending"], enabled=show_progress)
            every_s = None if progress.enabled else settings.log.progress_every_s
            pipeline = _Pipeline(settings, store_thread, notifier, progress, ledger_used, every_s)
            try:
                report = await pipeline.run(key, drain, install_signals, reload_settings)
            finally:
                progress.close()  # later log lines must not make room for a dead bar
        finally:
            notifier.close()
            store_thread.shutdown()
            store.close()
    log.info(
        "harvest.stop",
        stopped_by=report.stopped_by,
        released=report.released,
        elapsed_s=round(report.elapsed_s, 3),
        **dict(report.outcomes),
        responses_by_mode=dict(report.modes),
    )
    return report


UPGRADE_TIMEOUT_USEC = 6 * 3600 * 1_000_000


def progress_figures(view: dict[str, Any]) -> dict[str, Any]:
    """done, jobs left, the daemon's rate over its last minute and the ETA at it.

    The service's job counts are carried forward from the last count by this run's
    finished jobs, so pending plus in progress is what is left."""
    jobs = view["jobs"]
    left = jobs["pending"] + jobs["in_progress"]
    rate = view["achieved_per_s"]
    eta = 0 if left == 0 else round(left / rate) if rate > 0 else None
    return {
        "done": jobs["done"],
        "pending": left,
        "finished": view["finished"],
        "achieved_per_s": rate,
        "eta_s": eta,
    }


async def log_progress(service: ServiceLoop, every_s: float) -> None:
    """Off a terminal there is no progress bar: say how far the run is at a steady
    interval, so a long run is never silent for minutes. Until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            view = await service.view()
        except Exception:  # the store failed: the service loop logs that at each report
            view = None
        if view is not None:
            log.info("harvest.progress", **progress_figures(view))


def _announce_upgrade(store_path: Path, notifier: Notifier) -> None:
    """Before a schema upgrade that may take minutes (compressing millions of bodies,
    ~4,000 a second), say so, and give systemd's start timeout room for it."""
    pending = pending_migrations(store_path)
    if pending:
        log.info("store.upgrading", migrations=pending, note="one time, ~4,000 answers/s")
        notifier.send(
            EXTEND_TIMEOUT_USEC=str(UPGRADE_TIMEOUT_USEC),
            STATUS="upgrading the store's schema (one time; a large store takes minutes)",
        )


@dataclass
class _Pipeline:
    """One run of the harvest with its service companions (signals, systemd, metrics)."""

    settings: Settings
    store: AsyncStore
    notifier: Notifier
    progress: ProgressLine
    ledger_used: int
    progress_every_s: float | None  # None: the bar shows progress, no events

    async def run(
        self,
        key: Secret,
        drain: bool,
        install_signals: bool,
        reload_settings: Callable[[], Settings] | None,
    ) -> HarvestReport:
        settings = self.settings
        async with AltmetricClient(
            settings.api.base_url,
            key,
            timeout_s=settings.api.timeout_s,
            max_connections=0,  # the workers bound concurrency, which a reload may change
            legacy_type_names=settings.api.legacy_type_names,
        ) as client:
            harvest = Harvest(
                settings,
                self.store,
                client,
                drain=drain,
                progress=self.progress,
                ledger_used=self.ledger_used,
            )
            harvest.on_stopping = self.notifier.stopping
            service = ServiceLoop(harvest, self.store, self.notifier, iso_utc(time.time()))
            metrics = await self._start_metrics(service)
            loop = asyncio.get_running_loop()
            handled = self._install_signals(
                loop, harvest, service, install_signals, reload_settings
            )
            run_task = asyncio.create_task(harvest.run(), name="harvest")
            companions = [asyncio.create_task(service.run(), name="service")]
            if self.progress_every_s is not None:
                companions.append(asyncio.create_task(log_progress(service, self.progress_every_s)))
            await asyncio.sleep(0)  # the workers are running now
            self.notifier.ready()  # the service's first report follows at once
            try:
                return await run_task
            finally:
                for task in companions:
                    task.cancel()
                await asyncio.gather(*companions, return_exceptions=True)
                await self._report_stopped(service)
                if metrics is not None:
                    await metrics.cleanup()
                self._remove_signals(loop, handled)

    @staticmethod
    async def _report_stopped(service: ServiceLoop) -> None:
        """The last heartbeat; a store too broken to take it must not hide the report."""
        try:
            await service.report("stopped")
        except Exception as error:
            log.error("service.report_failed", error=f"{type(error).__name__}: {error}")

    @staticmethod
    def _remove_signals(loop: asyncio.AbstractEventLoop, handled: list[signal.Signals]) -> None:
        for signum in handled:
            loop.remove_signal_handler(signum)
        if signal.SIGHUP in handled:
            # A `systemctl reload` in the last moments must not kill a daemon that
            # has already stopped cleanly (SIGHUP's default action is to terminate).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _install_signals(
        self,
        loop: asyncio.AbstractEventLoop,
        harvest: Harvest,
        service: ServiceLoop,
        install: bool,
        reload_settings: Callable[[], Settings] | None,
    ) -> list[signal.Signals]:
        if not install:
            return []
        handled = [signal.SIGINT, signal.SIGTERM]
        for signum in handled:
            loop.add_signal_handler(signum, harvest.on_signal, signum.name)
        if reload_settings is not None:
            loop.add_signal_handler(signal.SIGHUP, self._reload, harvest, service, reload_settings)
            handled.append(signal.SIGHUP)
        return handled

    def _reload(
        self, harvest: Harvest, service: ServiceLoop, reload_settings: Callable[[], Settings]
    ) -> None:
        """SIGHUP: re-read the settings; apply them, or keep the old ones if bad."""
        if harvest.stopping:
            log.warning("harvest.reload_ignored", reason="stopping")
            return
        self.notifier.reloading()
        try:
            new = reload_settings()
            changed, restart = reload_changes(harvest.settings, new)
            harvest.apply_settings(new)
            log.info("harvest.reloaded", changed=changed, needs_restart=restart)
        except (ConfigError, OSError, ValueError) as error:
            log.error("harvest.reload_refused", error=str(error), action="kept the old settings")
        finally:
            self.notifier.ready()
        service.report_soon()  # the heartbeat and STATUS show the new settings at once

    async def _start_metrics(self, service: ServiceLoop) -> web.AppRunner | None:
        if not self.settings.metrics.address:
            return None

        async def render() -> str:
            return render_metrics(await service.view())

        return await start_metrics(self.settings.metrics.address, render)
