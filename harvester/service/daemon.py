"""The daemon: the harvest pipeline (`harvest.pipeline.Harvest`) run as a service.

It holds an exclusive lock on its store for its whole life, so every job found
`in_progress` at start belongs to a dead run and goes back to `pending`, and at a
stop, after the last outcomes are written, the same happens to its own; a stop, a
rejected key or a kill therefore never loses a job. Around the pipeline it runs the
service companions: signals (SIGTERM/SIGINT stop, SIGHUP reloads), sd_notify, the
heartbeat, the progress display and the optional metrics endpoint.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from harvester.config import Secret, Settings
from harvester.errors import ConfigError
from harvester.harvest.client import AltmetricClient
from harvester.harvest.pipeline import Harvest
from harvester.harvest.ratestate import LearnedRate, saved_learned_rate
from harvester.harvest.report import HarvestReport
from harvester.logs import get_logger
from harvester.model import JobState, iso_utc
from harvester.service.heartbeat import ServiceLoop
from harvester.service.metrics import render_metrics, start_metrics
from harvester.service.notify import Notifier
from harvester.service.progress import RunProgress
from harvester.service.reload import changes, reloaded
from harvester.store.aio import AsyncStore
from harvester.store.lock import daemon_lock
from harvester.store.schema import pending_migrations

__all__ = ["Daemon", "run_daemon"]

UPGRADE_TIMEOUT_USEC = 6 * 3600 * 1_000_000

log = get_logger("harvester.service.daemon")


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
    daemon = Daemon(
        settings,
        key,
        drain=drain,
        show_progress=show_progress,
        install_signals=install_signals,
        reload_settings=reload_settings,
    )
    return await daemon.run()


class Daemon:
    """One run of the daemon on one store: the lock, the store, signals, and the
    harvest with its service companions."""

    def __init__(
        self,
        settings: Settings,
        key: Secret,
        *,
        drain: bool,
        show_progress: bool | None = None,
        install_signals: bool = True,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self._settings = settings
        self._key = key
        self._drain = drain
        self._show_progress = show_progress
        self._install = install_signals
        self._reload_settings = reload_settings

    async def run(self) -> HarvestReport:
        """Harvest under the store's lock until drained or stopped; the report."""
        with daemon_lock(self._settings.store.path):
            notifier = Notifier()
            try:
                report = await self._run_on_store(notifier)
            finally:
                notifier.close()
        log.info(
            "harvest.stop",
            stopped_by=report.stopped_by,
            released=report.released,
            elapsed_s=round(report.elapsed_s, 3),
            **report.outcomes_by_name(),
            responses_by_mode=report.modes_by_name(),
        )
        return report

    async def _run_on_store(self, notifier: Notifier) -> HarvestReport:
        """Open the store (upgrading it first if needed), recover the leases of dead
        runs, and harvest; the store is closed however the run ends."""
        settings = self._settings
        _announce_upgrade(settings.store.path, notifier)
        store_thread = await AsyncStore.open(settings.store.path, derive=settings.store.derive)
        try:
            recovered = await store_thread.requeue_all_leased()
            ledger_used = await store_thread.ledger_count(settings.quota.window_s)
            learned_rate = await saved_learned_rate(store_thread)
            counts = await store_thread.counts_by_state()
            log.info(
                "harvest.start",
                store=str(settings.store.path),
                drain=self._drain,
                recovered_leases=recovered,
                pending=counts[JobState.PENDING],
                concurrency=settings.workers.concurrency,
                requests_per_s=settings.rate.requests_per_s or "auto",
                learned_per_s=learned_rate and learned_rate.requests_per_s,
                tweet_quota_used=ledger_used,
                systemd=notifier.enabled,
            )
            progress = RunProgress(
                counts[JobState.PENDING],
                show=self._show_progress,
                every_s=settings.log.progress_every_s,
            )
            try:
                return await self._harvest(
                    store_thread, notifier, progress, ledger_used, learned_rate
                )
            finally:
                progress.close()  # later log lines must not make room for a dead bar
        finally:
            store_thread.shutdown()

    async def _harvest(
        self,
        store: AsyncStore,
        notifier: Notifier,
        progress: RunProgress,
        ledger_used: int,
        learned_rate: LearnedRate | None,
    ) -> HarvestReport:
        """The pipeline, with the heartbeat, metrics, signals and progress around it."""
        settings = self._settings
        async with AltmetricClient.for_api(settings.api, self._key) as client:
            harvest = Harvest(
                settings,
                store,
                client,
                drain=self._drain,
                ledger_used=ledger_used,
                learned_rate=learned_rate,
                on_progress=progress.update,
                on_stopping=notifier.stopping,
            )
            service = ServiceLoop(harvest, store, notifier, iso_utc(time.time()))
            metrics = await self._start_metrics(service)
            handled = self._install_signals(harvest, service, notifier)
            run_task = asyncio.create_task(harvest.run(), name="harvest")
            companions = [
                asyncio.create_task(service.run(), name="service"),
                asyncio.create_task(progress.log_events(service.view), name="progress"),
            ]
            await asyncio.sleep(0)  # the workers are running now
            notifier.ready()  # the service's first report follows at once
            try:
                return await run_task
            finally:
                for task in companions:
                    task.cancel()
                await asyncio.gather(*companions, return_exceptions=True)
                await _report_stopped(service)
                if metrics is not None:
                    await metrics.cleanup()
                _remove_signals(handled)

    async def _start_metrics(self, service: ServiceLoop) -> web.AppRunner | None:
        if not self._settings.metrics.address:
            return None

        async def render() -> str:
            return render_metrics(await service.view())

        return await start_metrics(self._settings.metrics.address, render)

    # -- signals ------------------------------------------------------------------------

    def _install_signals(
        self, harvest: Harvest, service: ServiceLoop, notifier: Notifier
    ) -> list[signal.Signals]:
        """SIGINT and SIGTERM stop (a second one at once); SIGHUP reloads, if it can."""
        if not self._install:
            return []
        loop = asyncio.get_running_loop()
        handled = [signal.SIGINT, signal.SIGTERM]
        for signum in handled:
            loop.add_signal_handler(signum, _on_stop_signal, harvest, signum.name)
        if self._reload_settings is not None:
            loop.add_signal_handler(signal.SIGHUP, self._reload, harvest, service, notifier)
            handled.append(signal.SIGHUP)
        return handled

    def _reload(self, harvest: Harvest, service: ServiceLoop, notifier: Notifier) -> None:
        """SIGHUP: re-read the settings; apply what may change in flight (`reload.RELOAD`),
        or keep the old settings if the new ones are bad."""
        assert self._reload_settings is not None  # SIGHUP is handled only with it
        if harvest.stopping:
            log.warning("harvest.reload_ignored", reason="stopping")
            return
        notifier.reloading()
        try:
            new = self._reload_settings()
            changed, restart = changes(harvest.settings, new)
            harvest.apply_settings(reloaded(harvest.settings, new))
            log.info("harvest.reloaded", changed=changed, needs_restart=restart)
        except (ConfigError, OSError, ValueError) as error:
            log.error("harvest.reload_refused", error=str(error), action="kept the old settings")
        finally:
            notifier.ready()
        service.report_soon()  # the heartbeat and STATUS show the new settings at once


def _on_stop_signal(harvest: Harvest, name: str) -> None:
    """SIGTERM/SIGINT: stop claiming and let in-flight requests finish; a second
    signal stops at once."""
    second = harvest.stopping
    log.warning("harvest.signal", signal=name, action="stop now" if second else "drain")
    harvest.request_stop(f"signal {name}", immediate=second)


def _remove_signals(handled: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for signum in handled:
        loop.remove_signal_handler(signum)
    if signal.SIGHUP in handled:
        # A `systemctl reload` in the last moments must not kill a daemon that
        # has already stopped cleanly (SIGHUP's default action is to terminate).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


async def _report_stopped(service: ServiceLoop) -> None:
    """The last heartbeat; a store too broken to take it must not hide the report."""
    try:
        await service.report("stopped")
    except Exception as error:
        log.error("service.report_failed", error=f"{type(error).__name__}: {error}")


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
