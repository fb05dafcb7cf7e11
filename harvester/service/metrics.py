"""The optional Prometheus endpoint: the daemon's figures as text at `/metrics`.

Off unless `metrics.address` is set; the config allows loopback addresses only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from harvester.config import metrics_host_port
from harvester.logs import get_logger
from harvester.model import QuotaMode
from harvester.service.heartbeat import DaemonView

log = get_logger("harvester.service.metrics")


def render_metrics(view: DaemonView) -> str:
    """Prometheus text exposition of the daemon's figures."""
    live, quota = view.live, view.live.quota
    lines = [
        "# HELP harvester_jobs Jobs in the store per state.",
        "# TYPE harvester_jobs gauge",
        *(f'harvester_jobs{{state="{state}"}} {count}' for state, count in view.jobs.items()),
        "# HELP harvester_requests_total Fetch answers since start, per outcome.",
        "# TYPE harvester_requests_total counter",
        *(
            f'harvester_requests_total{{outcome="{outcome}"}} {count}'
            for outcome, count in sorted(live.requests.items())
        ),
        "# HELP harvester_rate_requests_per_second The request rate currently allowed.",
        "# TYPE harvester_rate_requests_per_second gauge",
        f"harvester_rate_requests_per_second {live.requests_per_s}",
        "# HELP harvester_tweet_quota_used Tweet IDs used in the quota window.",
        "# TYPE harvester_tweet_quota_used gauge",
        f"harvester_tweet_quota_used {quota.used}",
        "# HELP harvester_tweet_quota_limit Tweet IDs allowed in the quota window.",
        "# TYPE harvester_tweet_quota_limit gauge",
        f"harvester_tweet_quota_limit {quota.limit}",
        "# HELP harvester_quota_mode The fetch mode of the quota ladder (1 = current).",
        "# TYPE harvester_quota_mode gauge",
        *(f'harvester_quota_mode{{mode="{mode}"}} {int(mode == quota.mode)}' for mode in QuotaMode),
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
