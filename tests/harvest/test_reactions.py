"""What one refusal means for every worker: the pause the server asks for, bounded, and
an odd Retry-After said once rather than once per refusal."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from harvester.config import QuotaSettings
from harvester.harvest.client import FetchResult
from harvester.harvest.limits import LimitHeaders
from harvester.harvest.quota import QuotaState
from harvester.harvest.ratelimit import RateController
from harvester.harvest.ratestate import RatePolicy
from harvester.harvest.reactions import Reactions, key_refusal
from harvester.model import ClaimedJob, Outcome
from harvester.store import Store
from harvester.store.aio import AsyncStore


def refusal(retry_after_s: float | None, note: str = "", status: int = 429) -> FetchResult:
    limits = LimitHeaders(retry_after_s=retry_after_s, retry_after_note=note)
    return FetchResult(Outcome.RATE_LIMITED, status, b"Too many requests", limits=limits)


async def test_odd_retry_afters_are_bounded_and_said_once(db_path: Path) -> None:
    rate = RateController(RatePolicy(requests_per_s=10, burst=1))
    store = AsyncStore(Store(db_path))
    try:
        reactions = Reactions(rate, QuotaState(QuotaSettings()), store, on_fatal=lambda r: None)
        job = ClaimedJob(1, "doi", "10.1000/x", 0, "token")
        with capture_logs() as logs:
            for _ in range(3):  # a negative Retry-After, three times: no pause, said once
                reactions.react(job, refusal(None, "negative"), rate.admit())
            assert rate.paused_for_s <= 2.0  # the backoff of three refusals, no more
            reactions.react(job, refusal(86_400.0, "capped at a day", status=420), rate.admit())
    finally:
        store.shutdown()
    odd = [entry for entry in logs if entry["event"] == "harvest.retry_after_odd"]
    assert [entry["note"] for entry in odd] == ["negative", "capped at a day"]
    assert 86_399 <= rate.paused_for_s <= 86_400  # the bound, honoured
    lowered = [entry for entry in logs if entry["event"] == "harvest.rate_limited"]
    assert lowered and lowered[-1]["http_status"] == 420


async def test_a_refused_key_or_a_forbidden_connection_stops_everything_once(
    db_path: Path,
) -> None:
    rate = RateController(RatePolicy(requests_per_s=10, burst=1))
    store = AsyncStore(Store(db_path))
    fatal: list[FetchResult] = []
    try:
        reactions = Reactions(rate, QuotaState(QuotaSettings()), store, on_fatal=fatal.append)
        refused = FetchResult(Outcome.UNAUTHORIZED, 401, b"Unauthorized", error="Unauthorized")
        with capture_logs() as logs:
            for _ in range(3):
                reactions.react(None, refused, rate.admit())
    finally:
        store.shutdown()
    assert fatal == [refused]
    [said] = [entry for entry in logs if entry["event"] == "harvest.key_rejected"]
    assert said["message"] == "API key rejected: the API refused the key (HTTP 401); stopping"
    assert key_refusal(refused) == "HTTP 401"
