"""The optional Prometheus endpoint: the daemon's figures at `/metrics`, through
prometheus_client.

Off unless `metrics.address` is set; the config allows loopback addresses only.
Each scrape awaits the service's view (async), then renders it at once (sync): a
registry built for that scrape holds a `DaemonCollector` over the view beside the
standard process, Python and GC collectors every exporter has. Nothing outlives a
scrape, so concurrent scrapes share no state and the global default registry is never
touched. The names and labels of the hand-written text this replaced are kept:
operators' scripts read them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import get_args

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harvester.config import metrics_host_port
from harvester.harvest.ratesignals import LimitedBy
from harvester.logs import get_logger
from harvester.model import FINAL_STATES, Outcome, QuotaMode, parse_iso
from harvester.service.heartbeat import DaemonView

log = get_logger("harvester.service.metrics")


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _one_hot(
    name: str, documentation: str, label: str, current: str, choices: tuple[str, ...]
) -> GaugeMetricFamily:
    """1 for the current choice, 0 for the others: every choice is a series, so a
    query never meets a missing one when the choice changes."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for choice in choices:
        family.add_metric([choice], int(choice == current))
    return family


class DaemonCollector(Collector):
    """The harvester's own metric families over one `DaemonView`.

    Built per scrape: `collect()` is sync, while the view comes from the async
    `ServiceLoop.view()`, so the caller awaits the view first and hands it over."""

    def __init__(self, view: DaemonView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._requests()
        yield from self._rate()
        yield from self._quota()
        yield from self._schedule()

    def _jobs(self) -> Iterator[Metric]:
        view, live = self._view, self._view.live
        jobs = GaugeMetricFamily("harvester_jobs", "Jobs in the store per state.", labels=["state"])
        for state, count in view.jobs.items():
            jobs.add_metric([str(state)], count)
        yield jobs
        finished = CounterMetricFamily(
            "harvester_jobs_finished",
            "Jobs that reached a final state in this run.",
            labels=["state"],
        )
        for state in FINAL_STATES:
            finished.add_metric([str(state)], live.outcomes[state])
        yield finished
        yield _gauge(
            "harvester_jobs_outstanding", "Claimed jobs not written yet.", live.outstanding
        )
        yield _gauge("harvester_workers_concurrency", "Workers configured.", live.concurrency)

    def _requests(self) -> Iterator[Metric]:
        live = self._view.live
        # CounterMetricFamily strips the `_total` and the exposition adds it back, so
        # the samples read `harvester_requests_total`. Every outcome is a series from
        # the start (0 until seen), so rate() sees an outcome's first answers too.
        requests = CounterMetricFamily(
            "harvester_requests_total",
            "Fetch answers since start, per outcome.",
            labels=["outcome"],
        )
        for outcome in Outcome:
            requests.add_metric([str(outcome)], live.requests.get(outcome, 0))
        yield requests

    def _rate(self) -> Iterator[Metric]:
        view, rate = self._view, self._view.live.rate
        yield _gauge(
            "harvester_rate_requests_per_second",
            "The request rate currently allowed.",
            view.live.requests_per_s,
        )
        yield _gauge(
            "harvester_rate_achieved_requests_per_second",
            "Answers per second over the last minute.",
            view.achieved_per_s,
        )
        known = {
            "configured": ("The configured ceiling (absent: auto).", rate.configured_per_s),
            "learned": ("The rate refusals taught (absent: none yet).", rate.learned_per_s),
            "allowance": (
                "What the hourly/daily allowance leaves, spread out.",
                rate.allowance_per_s,
            ),
        }
        for kind, (documentation, value) in known.items():
            if value is not None:
                yield _gauge(f"harvester_rate_{kind}_requests_per_second", documentation, value)
        yield _one_hot(
            "harvester_rate_limited_by",
            "What sets the allowed rate (1 = current).",
            "by",
            rate.limited_by,
            get_args(LimitedBy),
        )

    def _quota(self) -> Iterator[Metric]:
        quota = self._view.live.quota
        yield _gauge(
            "harvester_tweet_quota_used", "Tweet IDs used in the quota window.", quota.used
        )
        yield _gauge(
            "harvester_tweet_quota_limit", "Tweet IDs allowed in the quota window.", quota.limit
        )
        yield _one_hot(
            "harvester_quota_mode",
            "The fetch mode of the quota ladder (1 = current).",
            "mode",
            quota.mode,
            tuple(QuotaMode),
        )

    def _schedule(self) -> Iterator[Metric]:
        """Per scheduled task, in Unix seconds, so an alert can compare with time()."""
        every = GaugeMetricFamily(
            "harvester_schedule_interval_seconds", "How often the task runs.", labels=["task"]
        )
        next_at = GaugeMetricFamily(
            "harvester_schedule_next_run_timestamp_seconds",
            "When the task runs next (Unix time).",
            labels=["task"],
        )
        last_at = GaugeMetricFamily(
            "harvester_schedule_last_run_timestamp_seconds",
            "When the task last ran (Unix time; absent: not yet).",
            labels=["task"],
        )
        for name, task in sorted(self._view.live.schedule.items()):
            every.add_metric([name], task.every_s)
            next_at.add_metric([name], parse_iso(task.next_at))
            if task.last_at is not None:
                last_at.add_metric([name], parse_iso(task.last_at))
        yield from (every, next_at, last_at)


def metrics_registry(view: DaemonView) -> CollectorRegistry:
    """A registry for one scrape: the daemon's figures and the standard collectors."""
    registry = CollectorRegistry()
    registry.register(DaemonCollector(view))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render_metrics(view: DaemonView) -> str:
    """Prometheus text exposition (`CONTENT_TYPE_LATEST`) of the daemon's figures."""
    return generate_latest(metrics_registry(view)).decode()


async def start_metrics(address: str, render: Callable[[], Awaitable[str]]) -> web.AppRunner:
    """Serve `render()` at http://ADDRESS/metrics (loopback only, checked by config)."""
    host, port = metrics_host_port(address)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            text=await render(),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "X-Content-Type-Options": "nosniff"},
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
