"""The metrics endpoint: prometheus_client's text over the daemon's figures, beside the
standard process and Python metrics, on loopback.

One test serves a view built by hand, so every figure has one right value; the other
scrapes a real daemon (in this process) harvesting the simulator, held mid-run so the
figures stand still while it is read. Both read the text as Prometheus does, with
prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp import web
from helpers import KEY, dois, free_port, queue, write_config
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from harvester.config import Secret, load_settings
from harvester.harvest.quota import QuotaView
from harvester.harvest.ratestate import RateView
from harvester.harvest.report import LiveView
from harvester.harvest.schedule import TaskView
from harvester.model import JobState, Outcome, QuotaMode, parse_iso
from harvester.service.daemon import run_daemon
from harvester.service.heartbeat import DaemonView
from harvester.service.metrics import render_metrics, start_metrics
from harvester.sim.server import FetchRequest, Simulator, SimulatorSettings

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

STANDARD = ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info")


async def scrape(port: int) -> tuple[str, Mapping[str, str]]:
    """The endpoint's text and headers."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as answer,
    ):
        assert answer.status == 200
        return await answer.text(), answer.headers


def samples_of(text: str) -> Samples:
    """Every sample, by name and sorted labels, as Prometheus reads the text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labelled(samples: Samples, name: str) -> dict[str, float]:
    """One family's samples by the value of its only label."""
    return {labels[0][1]: value for (sample, labels), value in samples.items() if sample == name}


def a_view() -> DaemonView:
    """A daemon paced by a learned rate and an hourly allowance, in the middle quota
    mode, with one scheduled task that ran and one that has not yet."""
    live = LiveView(
        finished=6,
        outstanding=3,
        concurrency=4,
        requests_per_s=1.5,
        requests={Outcome.OK: 7, Outcome.RATE_LIMITED: 2},
        outcomes=Counter({JobState.DONE: 5, JobState.FAILED: 1}),
        quota=QuotaView(
            limit=1000,
            used=600,
            remaining=400,
            mode=QuotaMode.ORIGINAL_TWEETS,
            source="server",
            window_s=3600.0,
            refused_until_s=None,
            up_thresholds={},
            at_s=time.time(),
        ),
        rate=RateView(
            configured_per_s=10.0,
            learned_per_s=2.5,
            allowance_per_s=1.5,
            allowed_per_s=1.5,
            burst=2,
            limited_by="hourly_allowance",
        ),
        learned_rate=None,
        schedule={
            "discover": TaskView(3600.0, "2026-01-02T03:04:05.250000Z", None, None),
            "refresh": TaskView(
                86400.0, "2026-01-03T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z", {}
            ),
        },
    )
    jobs = {"pending": 90, "in_progress": 3, "done": 5, "not_found": 0, "failed": 1}
    return DaemonView(live, jobs, achieved_per_s=1.25)


async def test_the_endpoint_serves_every_figure_of_a_view_with_the_process_metrics() -> None:
    view, port = a_view(), free_port()

    async def render() -> str:
        return render_metrics(view)

    runner = await start_metrics(f"127.0.0.1:{port}", render)
    try:
        text, headers = await scrape(port)
    finally:
        await runner.cleanup()

    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "# TYPE harvester_requests_total counter" in text  # the exact name scripts read
    samples = samples_of(text)
    assert labelled(samples, "harvester_jobs") == view.jobs
    assert labelled(samples, "harvester_requests_total") == {
        outcome: {"ok": 7, "rate_limited": 2}.get(outcome, 0) for outcome in Outcome
    }
    assert labelled(samples, "harvester_jobs_finished_total") == {
        "done": 5,
        "not_found": 0,
        "failed": 1,
    }
    assert labelled(samples, "harvester_quota_mode") == {
        "full": 0,
        "original_tweets": 1,
        "no_twitter": 0,
    }
    limited_by = labelled(samples, "harvester_rate_limited_by")
    assert limited_by["hourly_allowance"] == 1 and sum(limited_by.values()) == 1
    unlabelled = {name: value for (name, labels), value in samples.items() if not labels}
    assert {k: v for k, v in unlabelled.items() if k.startswith("harvester_")} == {
        "harvester_rate_requests_per_second": 1.5,
        "harvester_rate_achieved_requests_per_second": 1.25,
        "harvester_rate_configured_requests_per_second": 10.0,
        "harvester_rate_learned_requests_per_second": 2.5,
        "harvester_rate_allowance_requests_per_second": 1.5,
        "harvester_tweet_quota_used": 600,
        "harvester_tweet_quota_limit": 1000,
        "harvester_jobs_outstanding": 3,
        "harvester_workers_concurrency": 4,
    }
    assert labelled(samples, "harvester_schedule_interval_seconds") == {
        "discover": 3600,
        "refresh": 86400,
    }
    assert labelled(samples, "harvester_schedule_next_run_timestamp_seconds") == {
        "discover": 1767323045.25,
        "refresh": parse_iso("2026-01-03T00:00:00.000000Z"),
    }
    assert labelled(samples, "harvester_schedule_last_run_timestamp_seconds") == {
        "refresh": 1767312000.0  # 2026-01-02T00:00:00Z; "discover" has not run yet
    }
    assert all(any(name == wanted for name, _ in samples) for wanted in STANDARD)
    assert samples["process_resident_memory_bytes", ()] > 0


async def test_a_running_daemon_serves_its_figures_and_never_the_key(tmp_path: Path) -> None:
    answered, concurrency, rate = 5, 2, 200
    passed, holding, release = 0, asyncio.Event(), asyncio.Event()

    async def hold_after_a_few(_request: web.Request, _fetch: FetchRequest) -> None:
        """The first few requests are answered; the rest wait for the release."""
        nonlocal passed
        passed += 1
        if passed > answered:
            holding.set()
            await release.wait()

    db, config, port = tmp_path / "s.db", tmp_path / "h.toml", free_port()
    queue(db, dois(40, "10.4242/metrics."))
    async with Simulator(SimulatorSettings(key=KEY, record_sent=False)) as sim:
        sim.gates.append(hold_after_a_few)
        write_config(
            config,
            sim.base_url,
            api={"timeout_s": 30},  # the held requests must not time out
            rate={"requests_per_s": rate, "burst": 2},
            workers={"concurrency": concurrency},
            metrics={"address": f"127.0.0.1:{port}"},
        )
        settings = load_settings(config, db_override=db)
        run = asyncio.create_task(
            run_daemon(
                settings, Secret(KEY), drain=True, show_progress=False, install_signals=False
            )
        )
        try:
            await asyncio.wait_for(holding.wait(), timeout=20)
            text, headers = await scrape_until_written(port, answered)
        finally:
            release.set()
        report = await asyncio.wait_for(run, timeout=60)
    assert report.exit_code == 0

    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert KEY not in text
    samples = samples_of(text)
    assert sum(labelled(samples, "harvester_jobs").values()) == 40
    assert labelled(samples, "harvester_requests_total")["ok"] == answered
    assert samples["harvester_workers_concurrency", ()] == concurrency
    assert samples["harvester_rate_requests_per_second", ()] == rate
    assert samples["harvester_rate_configured_requests_per_second", ()] == rate
    assert ("harvester_rate_learned_requests_per_second", ()) not in samples
    assert labelled(samples, "harvester_rate_limited_by")["configured"] == 1
    assert samples["harvester_rate_achieved_requests_per_second", ()] > 0
    assert concurrency <= samples["harvester_jobs_outstanding", ()] <= 40 - answered
    assert labelled(samples, "harvester_quota_mode")["full"] == 1
    assert all(any(name == wanted for name, _ in samples) for wanted in STANDARD)


async def scrape_until_written(port: int, answered: int) -> tuple[str, Mapping[str, str]]:
    """Scrape until the first `answered` answers are counted and their jobs written."""
    deadline_s = time.monotonic() + 20
    while True:
        text, headers = await scrape(port)
        samples = samples_of(text)
        counted = labelled(samples, "harvester_requests_total").get("ok")
        written = labelled(samples, "harvester_jobs_finished_total").get("done")
        if counted == written == answered or time.monotonic() > deadline_s:
            return text, headers
        await asyncio.sleep(0.05)
