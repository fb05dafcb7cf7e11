"""What each kind of answer means for its job: a pure function, easy to test.

Final answers (`ok`, `not_found`, a 400-class refusal of the identifier) end the job.
Transient failures retry with exponential backoff and full jitter until
`max_attempts`, then fail with the last error kept. Refusals that are about us, not
the job (rate limit, tweet quota, a rejected key, a connection the settings forbid),
never cost the job an attempt.

An answer stored after the key was taken out of it (`FetchResult.redacted`) says so in
its `request_params`: `"key_redacted": N`, the occurrences replaced by `***`. The
sha256 is of the bytes stored, so `verify` stays honest.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from harvester.config import WorkerSettings
from harvester.harvest.client import FetchResult
from harvester.model import (
    ClaimedJob,
    Endpoint,
    JobOutcome,
    JobState,
    Outcome,
    StoredResponse,
    iso_utc,
)

_RETRYABLE = frozenset({Outcome.SERVER_ERROR, Outcome.NETWORK_ERROR, Outcome.BAD_RESPONSE})
_NOT_THE_JOBS_FAULT = frozenset(
    {Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED, Outcome.UNAUTHORIZED, Outcome.SETUP_ERROR}
)
REDACTED_PARAM = "key_redacted"  # in request_params: occurrences of the key replaced
FULL_MODE_RECHECK_S = 30.0  # a backfill job waiting for full mode is offered again this soon


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float

    @classmethod
    def of(cls, workers: WorkerSettings) -> RetryPolicy:
        return cls(workers.max_attempts, workers.backoff_base_s, workers.backoff_max_s)

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff after the `attempt`-th failure (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt - 1, 60))
        return (rng or random).uniform(0, ceiling)


def decide(
    job: ClaimedJob,
    result: FetchResult,
    *,
    policy: RetryPolicy,
    request_params: str,
    mode: str,
    now_s: float,
    tweet_ids: tuple[int, ...] = (),
    endpoint: str = Endpoint.FETCH,
) -> JobOutcome:
    """The job's next state after one answer."""
    if result.outcome in (Outcome.OK, Outcome.NOT_FOUND):
        state = JobState.DONE if result.outcome is Outcome.OK else JobState.NOT_FOUND
        response = StoredResponse(
            http_status=result.http_status or 0,
            body=result.body,
            request_params=noting_redaction(request_params, result.redacted),
            mode=mode,
            fetched_at=iso_utc(now_s),
            tweet_ids=tweet_ids,
            endpoint=endpoint,
        )
        return JobOutcome(job.id, job.lease_token, state, count_attempt=True, response=response)
    error = result.error or result.outcome.value
    if result.outcome in _NOT_THE_JOBS_FAULT:
        retry_at = iso_utc(now_s + (result.limits.retry_after_s or 0.0))
        return JobOutcome(job.id, job.lease_token, JobState.PENDING, False, retry_at, error)
    if result.outcome in _RETRYABLE:
        return _retry_or_fail(job, error, policy, now_s)
    return JobOutcome(job.id, job.lease_token, JobState.FAILED, True, None, error)


def noting_redaction(request_params: str, redacted: int) -> str:
    """`request_params` (JSON) of an answer from which `redacted` occurrences of the key
    were removed: with `"key_redacted": redacted` added (unchanged when none were)."""
    if not redacted:
        return request_params
    return json.dumps({**json.loads(request_params), REDACTED_PARAM: redacted}, sort_keys=True)


def wait_for_full_mode(job: ClaimedJob, now_s: float) -> JobOutcome:
    """A backfill job met a quota without room for a full fetch: back to the queue."""
    retry_at = iso_utc(now_s + FULL_MODE_RECHECK_S)
    error = "waiting for quota room to re-fetch in full mode"
    return JobOutcome(job.id, job.lease_token, JobState.PENDING, False, retry_at, error)


def internal_failure(job: ClaimedJob, error: str, policy: RetryPolicy, now_s: float) -> JobOutcome:
    """Our own code failed on this job: treat it as a transient failure, not a loss."""
    return _retry_or_fail(job, error, policy, now_s)


def _retry_or_fail(job: ClaimedJob, error: str, policy: RetryPolicy, now_s: float) -> JobOutcome:
    """A transient failure that counts: back to pending after a backoff, or `failed`
    once the attempts are spent."""
    attempt = job.attempts + 1
    if attempt < policy.max_attempts:
        retry_at = iso_utc(now_s + policy.backoff_s(attempt))
        return JobOutcome(job.id, job.lease_token, JobState.PENDING, True, retry_at, error)
    return JobOutcome(job.id, job.lease_token, JobState.FAILED, True, None, error)
