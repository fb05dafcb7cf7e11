"""What the whole harvest does about one answer, beyond the job it answered.

The job's own next state is `policy.decide`'s; these are the consequences for every
worker at once:

- a rejected key (HTTP 401 or 403, each said as it came): said once, and the harvest
  stops now, exit code 3;
- a connection the settings forbid (a TLS certificate that does not verify, a proxy
  asking for credentials): said once, and the harvest stops now, exit code 1; no
  request can succeed until a setting changes, so no job is charged for it;
- a rate-limit refusal (420/429): the rate controller learns a lower rate, and
  every worker pauses for the server's Retry-After (bounded to a day; one it cannot
  use is logged once); any other answer lets the rate probe upward after a quiet spell;
- a tweet-quota refusal: no Twitter until the ledger says enough charges aged out;
- the allowance headers (`X-Hourly/DailyRateLimit-Remaining`): what remains is paced
  over the rest of the hour or day, and at 0 everyone sleeps to the boundary;
- the server's count of the tweet quota (`X-TweetIDRateLimit-*`), which wins over ours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from harvester.harvest.client import FetchResult
from harvester.harvest.limits import NO_LIMITS
from harvester.harvest.quota import QuotaState
from harvester.harvest.ratelimit import RateController
from harvester.logs import get_logger
from harvester.model import ClaimedJob, Outcome, iso_utc
from harvester.store.aio import AsyncStore

QUOTA_REFUSAL_HOLD_S = 60.0  # no Twitter for this long at least, until the ledger answers
QUOTA_UNKNOWN_HOLD_S = 3600.0  # when the ledger shows room the server denies: an hour
ALLOWANCE_PAUSE_SAID_S = 60.0  # a pause longer than this was already announced

log = get_logger("harvester.harvest.reactions")


class Reactions:
    """The pipeline's answers to answers. The event loop owns it, as it does the rate
    controller and the quota state it steers."""

    def __init__(
        self,
        rate: RateController,
        quota: QuotaState,
        store: AsyncStore,
        *,
        on_fatal: Callable[[FetchResult], None],
    ) -> None:
        self._rate = rate
        self._quota = quota
        self._db = store
        self._on_fatal = on_fatal  # a rejected key or a forbidden connection: stop now
        self._fatal_said = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_after_notes: set[str] = set()  # each odd Retry-After is said once

    def react(self, job: ClaimedJob | None, result: FetchResult, ticket: int) -> None:
        """Whole-daemon consequences of one answer to `job` (None: a discovery page),
        whose request was admitted with `ticket`."""
        outcome = result.outcome
        if outcome in (Outcome.UNAUTHORIZED, Outcome.SETUP_ERROR):
            self._fatal(result)
        elif outcome is Outcome.RATE_LIMITED:
            self._rate_limited(result, ticket)
        elif outcome is Outcome.QUOTA_EXHAUSTED:
            self._quota_refused(job)
        elif outcome is not Outcome.NETWORK_ERROR:  # the server answered and did not refuse
            self._rate.on_accepted(ticket)
        if result.limits is NO_LIMITS:
            return  # no allowance or quota counts to heed (most answers, in the simulator)
        self._watch_allowance(result, ticket)
        self._quota.server_says(
            result.limits.tweet_limit, result.limits.tweet_remaining, time.time()
        )

    def cancel(self) -> None:
        """Stop the background work (learning when the quota frees) at the run's end."""
        for task in list(self._tasks):
            task.cancel()

    def _fatal(self, result: FetchResult) -> None:
        if self._fatal_said:
            return  # said once is enough
        self._fatal_said = True
        if result.outcome is Outcome.UNAUTHORIZED:
            log.error(
                "harvest.key_rejected",
                http_status=result.http_status,
                message=f"API key rejected: the API refused the key ({key_refusal(result)}); "
                "stopping",
            )
        else:
            log.error("harvest.connection_refused", error=result.error, action="stopping")
        self._on_fatal(result)

    def _rate_limited(self, result: FetchResult, ticket: int) -> None:
        """Lower the rate and pause as the server asks; said when the rate changes."""
        limits = result.limits
        if limits.retry_after_note and limits.retry_after_note not in self._retry_after_notes:
            self._retry_after_notes.add(limits.retry_after_note)
            log.warning(
                "harvest.retry_after_odd",
                note=limits.retry_after_note,
                pause_s=limits.retry_after_s,
                message="the server's Retry-After was unusable or absurd; bounded",
            )
        rate_before = self._rate.rate_per_s
        pause_s = self._rate.on_rate_limited(ticket, limits.retry_after_s)
        if self._rate.rate_per_s != rate_before:
            log.warning(
                "harvest.rate_limited",
                http_status=result.http_status,
                pause_s=round(pause_s, 2),
                requests_per_s=round(self._rate.rate_per_s, 3),
            )

    def _quota_refused(self, job: ClaimedJob | None) -> None:
        """The tweet-ID quota is spent: no Twitter until the ledger says it frees."""
        first = time.time() >= self._quota.refused_until_s
        self._quota.refused(time.time() + QUOTA_REFUSAL_HOLD_S)  # until the store answers
        if first:
            log.warning(
                "harvest.quota_refused",
                id_type=job and job.id_type,
                identifier=job and job.identifier,
                action="switching to no_twitter",
            )
            self._background(self._learn_when_quota_frees())

    async def _learn_when_quota_frees(self) -> None:
        """Hold no_twitter until enough charges age out for full mode's largest answer.

        If our ledger already shows that room, the server counts more than we do (the
        key is shared, or older charges): hold for an hour, or the window if shorter.
        """
        window_s = self._quota.settings.window_s
        try:
            frees_at_s = await self._db.ledger_frees_at(window_s, self._quota.full_mode_usage())
        except Exception as error:  # the store failed: keep the hold we have, and say so
            log.error("harvest.quota_hold_unknown", error=f"{type(error).__name__}: {error}")
            return
        until_s = frees_at_s or time.time() + min(window_s, QUOTA_UNKNOWN_HOLD_S)
        self._quota.refused(until_s)  # never shortens a hold set meanwhile
        log.warning("harvest.quota_refused_until", until=iso_utc(self._quota.refused_until_s))

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch_allowance(self, result: FetchResult, ticket: int) -> None:
        """Pace by what the API says is left; sleep to the boundary once none is."""
        limits = result.limits
        already_paused = self._rate.paused_for_s > ALLOWANCE_PAUSE_SAID_S
        pause_s = self._rate.on_allowance(ticket, limits.hourly_remaining, limits.daily_remaining)
        if pause_s and not already_paused:
            log.warning(
                "harvest.allowance_spent",
                pause_s=round(pause_s),
                hourly_remaining=limits.hourly_remaining,
                daily_remaining=limits.daily_remaining,
            )


def key_refusal(result: FetchResult) -> str:
    """How the API refused the key, by its own status: `HTTP 401` or `HTTP 403`."""
    return f"HTTP {result.http_status}" if result.http_status else "refused"
