"""Running as a service: watchdog, status line, heartbeat, reload and metrics.

The pipeline (`daemon.Harvest`) harvests; this module reports on it. Every few
seconds the service loop writes a heartbeat (pid, start, rate, mode) and the quota
view to the store, where `harvester status` reads them, and tells systemd a one-line
STATUS. It pings the watchdog from the event loop, after the store's thread has
answered, so a stuck loop or a stuck store stops the pings. SIGHUP re-reads the
settings and applies what can change in flight. An optional Prometheus endpoint on a
loopback address serves the same figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from harvester.config import Settings, metrics_host_port
from harvester.logs import get_logger
from harvester.notify import Notifier
from harvester.storethread import StoreThread

REPORT_EVERY_S = 5.0
HEARTBEAT_STALE_S = 30.0  # status calls a daemon dead after this long without a heartbeat

log = get_logger("harvester.service")


class LiveHarvest(Protocol):
    """What the service needs of the pipeline."""

    def live_view(self) -> dict[str, Any]: ...


def status_line(view: dict[str, Any]) -> str:
    """The one line systemd shows under `systemctl status`."""
    return (
        f"{view['finished']:,} finished, {view['outstanding']:,} in flight, "
        f"{view['requests_per_s']:.2f} req/s allowed, quota mode {view['quota_mode']} "
        f"({view['quota_used']:,}/{view['quota_limit']:,} tweet IDs)"
    )


class ServiceLoop:
    """Heartbeat, STATUS and watchdog, from the event loop, until cancelled."""

    def __init__(
        self, harvest: LiveHarvest, store: StoreThread, notifier: Notifier, started_at: str
    ) -> None:
        self._harvest = harvest
        self._store = store
        self._notifier = notifier
        self._started_at = started_at
        watchdog_s = notifier.watchdog_interval_s
        self._tick_s = min(REPORT_EVERY_S, watchdog_s / 2) if watchdog_s else REPORT_EVERY_S
        self.job_counts: dict[str, int] = {}

    async def run(self) -> None:
        next_report_s = 0.0
        while True:
            if time.monotonic() >= next_report_s:
                await self.report("running")
                next_report_s = time.monotonic() + REPORT_EVERY_S
            self._notifier.watchdog()
            await asyncio.sleep(self._tick_s)

    async def report(self, state: str) -> None:
        """Write the heartbeat and tell systemd the status line."""
        view = self._harvest.live_view()
        heartbeat = {
            "pid": os.getpid(),
            "state": state,
            "started_at": self._started_at,
            "heartbeat_at_s": time.time(),
            "requests_per_s": view["requests_per_s"],
            "quota_mode": view["quota_mode"],
            "concurrency": view["concurrency"],
        }
        await self._store.call(self._store.store.save_state, "heartbeat", json.dumps(heartbeat))
        await self._store.call(self._store.store.save_state, "quota", json.dumps(view["quota"]))
        self._notifier.status(status_line(view))

    async def refresh_job_counts(self) -> dict[str, int]:
        self.job_counts = await self._store.call(self._store.store.counts_by_state)
        return self.job_counts


# -- reload ------------------------------------------------------------------------------

RESTART_ONLY = (
    "api.base_url",
    "api.key_file",
    "api.timeout_s",
    "api.legacy_type_names",
    "store.path",
    "workers.lease_s",
    "metrics.address",
    "log.level",
)


def needs_restart(old: Settings, new: Settings) -> list[str]:
    """The changed settings that a reload cannot apply in flight."""
    changed = []
    for dotted in RESTART_ONLY:
        section, key = dotted.split(".")
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            changed.append(dotted)
    return changed


def describe_reload(old: Settings, new: Settings) -> dict[str, Any]:
    """What a reload changes, for the log."""
    fields = {}
    for section in ("rate", "workers", "filters", "quota"):
        before, after = (
            dataclasses.asdict(getattr(old, section)),
            dataclasses.asdict(getattr(new, section)),
        )
        for key, value in after.items():
            if before[key] != value:
                fields[f"{section}.{key}"] = value
    return fields


# -- metrics -----------------------------------------------------------------------------


def render_metrics(view: dict[str, Any], job_counts: dict[str, int]) -> str:
    """Prometheus text exposition of the daemon's figures."""
    lines = [
        "# HELP harvester_jobs Jobs in the store per state.",
        "# TYPE harvester_jobs gauge",
        *(f'harvester_jobs{{state="{state}"}} {count}' for state, count in job_counts.items()),
        "# HELP harvester_requests_total Fetch answers since start, per outcome.",
        "# TYPE harvester_requests_total counter",
        *(
            f'harvester_requests_total{{outcome="{outcome}"}} {count}'
            for outcome, count in sorted(view["requests"].items())
        ),
        "# HELP harvester_rate_requests_per_second The request rate currently allowed.",
        "# TYPE harvester_rate_requests_per_second gauge",
        f"harvester_rate_requests_per_second {view['requests_per_s']}",
        "# HELP harvester_tweet_quota_used Tweet IDs used in the quota window.",
        "# TYPE harvester_tweet_quota_used gauge",
        f"harvester_tweet_quota_used {view['quota_used']}",
        "# HELP harvester_tweet_quota_limit Tweet IDs allowed in the quota window.",
        "# TYPE harvester_tweet_quota_limit gauge",
        f"harvester_tweet_quota_limit {view['quota_limit']}",
        "# HELP harvester_quota_mode The fetch mode of the quota ladder (1 = current).",
        "# TYPE harvester_quota_mode gauge",
        *(
            f'harvester_quota_mode{{mode="{mode}"}} {int(mode == view["quota_mode"])}'
            for mode in ("full", "original_tweets", "no_twitter")
        ),
    ]
    return "\n".join(lines) + "\n"


async def start_metrics(address: str, render: Callable[[], Awaitable[str]]) -> web.AppRunner:
    """Serve `render()` at http://ADDRESS/metrics (loopback only, checked by config)."""
    host, port = metrics_host_port(address)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            text=await render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("harvest.metrics", address=f"http://{address}/metrics")
    return runner
