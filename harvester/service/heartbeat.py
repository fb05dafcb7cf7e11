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
import contextlib
import dataclasses
import json
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from harvester.config import Settings, metrics_host_port
from harvester.logs import get_logger
from harvester.model import FINAL_STATES
from harvester.service.notify import Notifier
from harvester.store.aio import AsyncStore

REPORT_EVERY_S = 5.0
JOB_COUNTS_EVERY_S = 60.0  # counting 8M jobs by state takes ~0.5 s of the store thread
RATE_WINDOW_S = 60.0

log = get_logger("harvester.service.heartbeat")


class LiveHarvest(Protocol):
    """What the service needs of the pipeline."""

    def live_view(self) -> dict[str, Any]: ...


def status_line(view: dict[str, Any]) -> str:
    """The one line systemd shows under `systemctl status`."""
    jobs = view["jobs"]
    return (
        f"done {jobs['done']:,}, pending {jobs['pending']:,}, "
        f"{view['finished']:,} finished this run, {view['achieved_per_s']:.2f} req/s "
        f"(allowed {view['requests_per_s']:.2f}), quota mode {view['quota_mode']} "
        f"({view['quota_used']:,}/{view['quota_limit']:,} tweet IDs)"
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
        self._counted: tuple[float, dict[str, int], Counter[str]] | None = None
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

    async def view(self) -> dict[str, Any]:
        """The pipeline's live view, with job counts and the measured request rate."""
        view = self._harvest.live_view()
        view["jobs"] = await self._job_counts(view["outcomes"])
        view["achieved_per_s"] = self._achieved_per_s(sum(view["requests"].values()))
        return view

    async def report(self, state: str) -> None:
        """Write the heartbeat and the quota view; tell systemd the status line."""
        view = await self.view()
        heartbeat = {
            "pid": os.getpid(),
            "state": state,
            "started_at": self._started_at,
            "heartbeat_at_s": time.time(),
            "requests_per_s": view["requests_per_s"],
            "achieved_per_s": view["achieved_per_s"],
            "quota_mode": view["quota_mode"],
            "concurrency": view["concurrency"],
        }
        await self._store.save_states(
            {"heartbeat": json.dumps(heartbeat), "quota": json.dumps(view["quota"])}
        )
        self._notifier.status(status_line(view))

    async def _job_counts(self, outcomes: Counter[str]) -> dict[str, int]:
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
            jobs["pending"] -= since[state]
        jobs["pending"] = max(jobs["pending"], 0)
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


# -- reload ------------------------------------------------------------------------------

RESTART_ONLY = (
    "api.base_url",
    "api.key_file",
    "api.timeout_s",
    "api.legacy_type_names",
    "store.path",
    "store.derive",
    "workers.lease_s",
    "metrics.address",
    "log.level",
    "log.progress_every_s",
)


APPLIED_IN_FLIGHT = ("rate", "workers", "filters", "quota")  # Harvest.apply_settings


def reload_changes(old: Settings, new: Settings) -> tuple[dict[str, Any], list[str]]:
    """What a reload changes: ({key: new value} applied in flight, [keys that changed
    but need a restart]), compared once, section by section."""
    applied: dict[str, Any] = {}
    restart: list[str] = []
    for section in ("api", "rate", "workers", "store", "filters", "quota", "metrics", "log"):
        before = dataclasses.asdict(getattr(old, section))
        for key, value in dataclasses.asdict(getattr(new, section)).items():
            dotted = f"{section}.{key}"
            if before[key] == value:
                continue
            if dotted in RESTART_ONLY or section not in APPLIED_IN_FLIGHT:
                restart.append(dotted)
            else:
                applied[dotted] = value
    return applied, restart


# -- metrics -----------------------------------------------------------------------------


def render_metrics(view: dict[str, Any]) -> str:
    """Prometheus text exposition of the daemon's figures."""
    lines = [
        "# HELP harvester_jobs Jobs in the store per state.",
        "# TYPE harvester_jobs gauge",
        *(f'harvester_jobs{{state="{state}"}} {count}' for state, count in view["jobs"].items()),
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
