"""What a run says of itself when it stops: the `harvest.stop` event counts jobs (the
ones each final state got, and those left pending), with the retries written apart."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from helpers import KEY, dois, drain, queue, rows

from harvester.config import ApiSettings, RateSettings, Settings, StoreSettings, WorkerSettings
from harvester.harvest.report import HarvestReport
from harvester.model import JobState
from harvester.sim.server import FetchRequest, Simulator, text_response


async def always_failing(request: web.Request, fetch: FetchRequest) -> web.Response | None:
    """Identifiers ending in 7 always get a 503: retried, then `failed`."""
    return text_response(503, "unavailable") if fetch.identifier.endswith("7") else None


async def test_the_stop_counts_jobs_not_the_retries_written(
    simulator: Simulator, db_path: Path
) -> None:
    queue(db_path, dois(30, "10.5150/stop."))  # 3 of them end in 7
    simulator.gates.append(always_failing)
    settings = Settings(
        api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
        rate=RateSettings(requests_per_s=1000, burst=20),
        workers=WorkerSettings(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.02),
        store=StoreSettings(path=db_path),
    )
    report = await drain(settings, KEY)
    assert report.stopped_by == "drained"
    # Each failing job was written back to pending 3 times before its 4th attempt
    # failed: 9 retries, and not one job is left pending.
    counts = report.outcomes_by_name()
    assert (counts["failed"], counts["pending"], counts["retries"]) == (3, 0, 9)
    assert (counts["done"] or 0) + (counts.get("not_found") or 0) == 27  # some unknown
    assert rows(db_path, "SELECT count(*) FROM jobs WHERE state = 'pending'") == [(0,)]


def test_without_retries_the_stop_says_only_what_it_knows() -> None:
    report = HarvestReport()
    report.outcomes[JobState.DONE] += 2
    assert report.outcomes_by_name() == {"done": 2, "pending": None}
    report.pending_left = 5
    assert report.outcomes_by_name() == {"done": 2, "pending": 5}
