"""The harvester's vocabulary: the states, modes, outcomes and exit codes users see,
the records that flow from the queue through the workers to the store, and the one
way times are written. It imports nothing from the harvester, so every layer may use
it and none drags another in.

The enums are `StrEnum`/`IntEnum`: their values are the very strings and numbers in
the store, in `status --json` and in exit codes, so SQLite, JSON and shells see what
they always saw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import NamedTuple


class JobState(StrEnum):
    """Where a job is; `jobs.state` holds the value."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    NOT_FOUND = "not_found"
    FAILED = "failed"


FINAL_STATES = (JobState.DONE, JobState.NOT_FOUND, JobState.FAILED)
"""The states a job ends in; `retry` may put any of them back to pending."""


class QuotaMode(StrEnum):
    """How much Twitter a fetch asks for, as the tweet-ID quota allows."""

    FULL = "full"
    ORIGINAL_TWEETS = "original_tweets"  # post_types=original_tweets
    NO_TWITTER = "no_twitter"  # exclude_sources=twitter


class Endpoint(StrEnum):
    """Where a stored answer's bytes came from; `responses.endpoint` holds the value."""

    FETCH = "fetch"  # GET {base}/fetch/{type}/{id}: details and mentions (licensed keys)
    COUNTS = "counts"  # GET {base}/{type}/{id}: the free counts call
    CITATIONS = "citations"  # one result of GET {base}/citations/{timeframe} (discovery)
    DUMP = "dump"  # a record of Altmetric's JSON dump (`harvester import`)


COUNTS_MODE = "counts"
"""The `mode` of a counts-shaped answer (the counts call's, or a discovery result's):
scores, counts and readers, no mentions. Fetch answers' modes are `QuotaMode` values,
the dump's records `dump`."""


class Outcome(StrEnum):
    """What one request came to, as the client classifies it."""

    OK = "ok"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    SERVER_ERROR = "server_error"
    NETWORK_ERROR = "network_error"
    BAD_RESPONSE = "bad_response"
    INVALID_REQUEST = "invalid_request"  # 400 and other 4xx: the API refuses the identifier
    # The connection cannot be made as configured (a TLS certificate that does not verify,
    # a proxy asking for credentials): no request can succeed until a setting changes.
    SETUP_ERROR = "setup_error"


class ExitCode(IntEnum):
    """The CLI's exit codes (the README's table)."""

    OK = 0
    FAILURE = 1  # a failure the message explains
    USAGE = 2  # argparse's
    KEY_REJECTED = 3  # HTTP 401/403; systemd's RestartPreventExitStatus=3: a bad key won't heal
    JOBS_FAILED = 4  # `run --drain` drained the queue but left jobs in `failed`


class ClaimedJob(NamedTuple):
    """A job leased to this run: only the holder of `lease_token` may finish it."""

    id: int
    id_type: str
    identifier: str
    attempts: int
    lease_token: str
    needs_full: bool = False  # queued by backfill: fetch only in full mode


class StoredResponse(NamedTuple):
    """A response to store. Its sha256 is computed by the store as it writes the bytes
    (on the store's thread: hashlib releases the GIL, so the event loop never pays)."""

    http_status: int
    body: bytes
    request_params: str  # JSON of the query parameters sent, never the key
    mode: str
    fetched_at: str
    tweet_ids: tuple[int, ...] = ()  # charged to the quota ledger with the response
    endpoint: str = Endpoint.FETCH


class JobOutcome(NamedTuple):
    """What became of one claimed job, ready to be written."""

    job_id: int
    lease_token: str
    state: str
    count_attempt: bool
    next_attempt_at: str | None = None
    error: str | None = None
    response: StoredResponse | None = None


class RecordResult(NamedTuple):
    """What one `Store.record` wrote."""

    written: int  # outcomes that still held their lease
    charged: int  # tweet IDs newly charged to the ledger
    pruned: int  # ledger rows that aged out of the window
    underived: tuple[str, ...] = ()  # why answers stored raw could not be derived


class EnqueueCounts(NamedTuple):
    added: int
    already_queued: int


_second_text: tuple[int, str] = (-1, "")


def iso_utc(timestamp_s: float) -> str:
    """Fixed-width ISO 8601 UTC text for a Unix time (`2026-11-21T13:53:09.123456Z`):
    it sorts and compares as text, in SQL as in Python.

    Called for every response, so the text of the current second is reused."""
    global _second_text
    whole_s = int(timestamp_s // 1)
    cached_s, text = _second_text  # one read: the store thread calls this too
    if cached_s != whole_s:
        text = datetime.fromtimestamp(whole_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (whole_s, text)
    micros = min(int((timestamp_s - whole_s) * 1_000_000), 999_999)
    return f"{text}.{micros:06d}Z"


def parse_iso(text: str) -> float:
    """The Unix time of a timestamp written by `iso_utc`."""
    return datetime.fromisoformat(text).timestamp()
