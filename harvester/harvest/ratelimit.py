"""One rate controller shared by every worker: it finds the rate the server allows.

Altmetric publishes no per-key limit, so the configured rate is a guess (or "auto":
no guess at all) and the server's answers are the truth. Refusals teach a ceiling and
the rate probes back up towards it; the allowance headers spread what remains of the
hour or day over its time left; the configuration caps both. The README's "How the
rate is chosen" tells the rules; the constants below are their figures.

What refusals taught (`LearnedRate`) is saved with the heartbeat and handed back at
the next start, so a restart or a reload does not learn it again through refusals.
The token bucket and the pause gate are `harvest.pacer`'s; what the answers say is
read in `harvest.ratesignals`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from harvester.harvest.pacer import Pacer
from harvester.harvest.ratesignals import (
    ESTIMATE_WINDOW_S,
    SHARE_WINDOW_S,
    LimitedBy,
    RecentAnswers,
    allowance_pace,
)
from harvester.harvest.ratestate import LearnedRate, RatePolicy, RateView
from harvester.logs import get_logger

AUTO_START_PER_S = 1.0  # "auto" before the server has said anything
FLOOR_PER_S = 0.01  # one request in 100 s: refusals never stop the harvest outright
GROWTH = 1.25  # a probe's step when no refusal bounds the rate
STEP_TOWARDS = 1.2  # a probe's step towards the last refused rate: halfway, at most this
NUDGE = 1.02  # a probe's step past the last refused rate
NEAR_CEILING = 0.95  # within this share of the last refused rate...
NEAR_CEILING_PATIENCE = 4  # ...probes wait this many quiet spells
ESTIMATE_MARGIN = 0.95  # below the rate the server was seen accepting...
CLOSE_SHARE, CLOSE_MARGIN = 0.05, 0.98  # few refusals: a little under the refused rate
STRAY_SHARE = 0.01  # refusals this rare among recent answers (or a lone one among at
STRAY_MIN_ANSWERS = 20  # least these many) are strays of timing
BUSY_SHARE = 0.8  # the rate only probes upward while answers come this close to it
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 300.0

log = get_logger("harvester.harvest.ratelimit")


# long: the controller's decisions read as one story; its bucket (`pacer`), its readings
# (`ratesignals`) and its records (`ratestate`) are apart already.
class RateController:
    """Admits requests at the current rate; learns from refusals and limit headers.

    `acquire` returns a ticket (the request's admission number) that the caller hands
    back with the answer, so refusals can be told apart by when their request left.
    """

    def __init__(
        self,
        policy: RatePolicy,
        *,
        learned: LearnedRate | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall_clock = wall_clock
        self._learned = learned is not None
        self._rate_per_s = self._start_rate(learned)
        self._burst = policy.burst if learned is None else min(policy.burst, learned.burst)
        self._refused_per_s = None if learned is None else learned.refused_per_s
        self._allowance_per_s: float | None = None
        self._allowance_kind: LimitedBy = "hourly_allowance"
        self._admitted = 0  # tickets handed out
        self._event_ticket = 0  # refusals of tickets up to this one were reacted to...
        self._lowered_ticket = 0  # ...requests after this one went at the lowered rate...
        self._changed_ticket = 0  # ...and after this one at the rate of now
        self._lowered_s = -math.inf
        self._answers = RecentAnswers()
        self._accepted_since_event = 0
        self._last_change_s = clock()
        self._last_refusal_s = -math.inf
        self._backoff_s = 0.0
        self._pacer = Pacer(self._effective_per_s(), self._burst, clock=clock)

    # -- what the workers call -----------------------------------------------------------

    async def acquire(self) -> int:
        """Wait for a token, and for any pause to end, before one request; its ticket."""
        await self._pacer.acquire()
        return self.admit()

    def admit(self) -> int:
        """The ticket of a request sent now (the token and the pause are the caller's)."""
        self._admitted += 1
        return self._admitted

    @property
    def rate_per_s(self) -> float:
        """The rate requests are admitted at now."""
        return self._effective_per_s()

    @property
    def paused_for_s(self) -> float:
        return self._pacer.paused_for_s

    def pause_for(self, seconds: float) -> None:
        """Hold every worker back for `seconds` (extends, never shortens, a pause)."""
        added = self._pacer.pause_for(seconds)
        if added is not None:
            self._answers.paused(*added)

    # -- what the answers teach ------------------------------------------------------------

    def on_rate_limited(self, ticket: int, retry_after_s: float | None) -> float:
        """A 420/429 for the request of `ticket`: lower burst and rate, once per volley;
        pause as the server asks, or back off if it accepts nothing. The pause."""
        now_s = self._clock()
        self._answers.add(now_s, ticket, True)
        self._last_refusal_s = now_s
        new_event = ticket > self._event_ticket
        if new_event:
            self._learn_from_refusal(now_s, told_to_wait=retry_after_s is not None)
        pause_s = 0.0
        if retry_after_s is not None:
            pause_s = retry_after_s
        elif new_event and self._backoff_s:
            pause_s = self._jittered(self._backoff_s)
        if pause_s > 0:
            self.pause_for(pause_s)
        return pause_s

    def on_accepted(self, ticket: int) -> None:
        """An answer that was not a refusal: after a quiet spell, probe upward."""
        now_s = self._clock()
        self._answers.add(now_s, ticket, False)
        self._accepted_since_event += 1
        if self._accepted_since_event == 1:
            self._backoff_s = 0.0  # the server accepts again
        if now_s - max(self._last_change_s, self._last_refusal_s) >= self._quiet_needed_s():
            self._probe(now_s)

    def on_allowance(
        self, ticket: int, hourly_remaining: int | None, daily_remaining: int | None
    ) -> float:
        """The remaining-count headers of the answer to `ticket`: pace the rest of each
        window over its time left; at 0 left, sleep to the boundary. The pause started.

        The requests admitted after this one were not counted yet: they will be."""
        if hourly_remaining is None and daily_remaining is None:
            return 0.0
        in_flight = max(0, self._admitted - ticket)
        self._allowance_per_s, self._allowance_kind, pause_s = allowance_pace(
            self._wall_clock(), hourly_remaining, daily_remaining, in_flight
        )
        if self.policy.requests_per_s is None and self._refused_per_s is None:
            self._rate_per_s = max(self._rate_per_s, self._allowance_per_s)  # auto starts here
        if pause_s:
            self.pause_for(pause_s)
        self._follow_rate()
        return pause_s

    def reconfigure(self, policy: RatePolicy) -> None:
        """New settings (a reload): the new ceiling and burst apply from now, but what
        refusals taught stays (capped by them), so a reload invites no new refusals."""
        self.policy = policy
        ceiling = policy.requests_per_s
        if not self._learned:
            self._rate_per_s = ceiling if ceiling is not None else self._rate_per_s
        elif ceiling is not None:
            self._rate_per_s = min(self._rate_per_s, ceiling)
        self._burst = policy.burst if not self._learned else min(self._burst, policy.burst)
        self._last_change_s = self._clock()
        self._rebuild()

    # -- what is saved and shown -----------------------------------------------------------

    def learned(self) -> LearnedRate | None:
        """What refusals taught, to save; None if nothing was."""
        if not self._learned:
            return None
        refused = self._refused_per_s
        return LearnedRate(
            round(self._rate_per_s, 4),
            self._burst,
            None if refused is None else round(refused, 4),
            self._wall_clock(),
        )

    def view(self) -> RateView:
        return RateView(
            configured_per_s=self.policy.requests_per_s,
            learned_per_s=round(self._rate_per_s, 4) if self._learned else None,
            allowance_per_s=None
            if self._allowance_per_s is None
            else round(self._allowance_per_s, 4),
            allowed_per_s=round(self._effective_per_s(), 4),
            burst=self._burst,
            limited_by=self._limited_by(),
        )

    # -- the controller's own reasoning ------------------------------------------------------

    def _start_rate(self, learned: LearnedRate | None) -> float:
        ceiling = self.policy.requests_per_s
        if learned is None:
            return AUTO_START_PER_S if ceiling is None else ceiling
        return learned.requests_per_s if ceiling is None else min(ceiling, learned.requests_per_s)

    def _learn_from_refusal(self, now_s: float, *, told_to_wait: bool) -> None:
        """One refusal event: burst 1, and the rate scaled to the share of requests the
        server accepted lately (less a margin); backoff armed if it accepted nothing
        since the last event. The first refusal at a burst above 1 lowers the burst
        alone (a bucket smaller than ours refuses our bursts at any rate), and so does
        a stray refusal."""
        refused_at = self._effective_per_s()
        burst_was, first_event = self._burst, self._event_ticket == 0
        self._burst = 1
        self._event_ticket = self._admitted  # whatever is in flight now is this volley
        if burst_was > 1 or self._stray(now_s, told_to_wait):
            self._learned = True  # the burst, at least
            self._rebuild()
            return
        accepted_per_s = self._answers.accepted_per_s(now_s)
        answers, refusals = self._answers.tally(now_s - ESTIMATE_WINDOW_S, self._changed_ticket)
        lowered = lowered_rate(
            refused_at,
            accepted_per_s,
            answers,
            refusals,
            told_to_wait=told_to_wait,
            decrease_factor=self.policy.decrease_factor,
        )
        if not first_event and self._accepted_since_event == 0:
            self._backoff_s = min(max(self._backoff_s * 2, FIRST_BACKOFF_S), MAX_BACKOFF_S)
        self._refused_per_s = refused_at
        self._learned = True
        self._rate_per_s = lowered
        self._lowered_ticket, self._lowered_s = self._admitted, now_s
        self._changed_ticket = self._admitted
        self._accepted_since_event = 0
        self._last_change_s = now_s
        log.debug(
            "harvest.rate_lowered",
            refused_at_per_s=round(refused_at, 3),
            accepted_per_s=accepted_per_s and round(accepted_per_s, 3),
            answers=answers,
            refusals=refusals,
            requests_per_s=round(self._rate_per_s, 3),
        )
        self._rebuild()

    def _stray(self, now_s: float, told_to_wait: bool) -> bool:
        """Whether this refusal is a stray: rare among the answers since the rate was
        last lowered, and free (no Retry-After pauses everyone for it)."""
        if told_to_wait:
            return False
        since_s = max(now_s - SHARE_WINDOW_S, self._lowered_s)
        answers, refusals = self._answers.tally(since_s, self._lowered_ticket)
        return answers >= STRAY_MIN_ANSWERS and refusals <= max(1, STRAY_SHARE * answers)

    def _quiet_needed_s(self) -> float:
        """How long to hold a rate before a higher one: longer close under the last
        refused rate, where a probe is likely to cost a refusal (and its pause)."""
        refused = self._refused_per_s
        near = refused is not None and self._rate_per_s >= refused * NEAR_CEILING
        return self.policy.increase_after_s * (NEAR_CEILING_PATIENCE if near else 1)

    def _probe(self, now_s: float) -> None:
        """A quiet spell at this rate: try a higher one, never above the configured."""
        self._last_change_s = now_s
        ceiling = self.policy.requests_per_s
        if ceiling is not None and self._rate_per_s >= ceiling:
            return
        allowance = self._allowance_per_s
        if allowance is not None and allowance < self._rate_per_s:
            return  # the allowance binds: a higher rate would not be tried
        if self._answers.per_s(now_s, ESTIMATE_WINDOW_S) < BUSY_SHARE * self._rate_per_s:
            return  # the workers do not use this rate: a higher one would teach nothing
        raised = probed_rate(self._rate_per_s, self._refused_per_s)
        if self._refused_per_s is not None and raised >= self._refused_per_s:
            self._refused_per_s = None  # held quietly at the old ceiling: it has moved
        self._rate_per_s = raised if ceiling is None else min(raised, ceiling)
        self._changed_ticket = self._admitted
        log.debug("harvest.rate_probe", requests_per_s=round(self._rate_per_s, 3))
        self._follow_rate()

    def _effective_per_s(self) -> float:
        allowance = self._allowance_per_s
        rate = self._rate_per_s if allowance is None else min(self._rate_per_s, allowance)
        return max(FLOOR_PER_S, rate)

    def _limited_by(self) -> LimitedBy:
        allowance = self._allowance_per_s
        # At the allowance, it sets the pace too: with "auto" the rate jumps to it.
        if allowance is not None and allowance <= self._rate_per_s:
            return self._allowance_kind
        if self._learned:
            return "learned"
        return "configured" if self.policy.requests_per_s is not None else "auto"

    def _follow_rate(self) -> None:
        """Have the bucket follow the admitted rate, when it moved enough to matter."""
        self._pacer.follow(self._effective_per_s(), self._burst)

    def _rebuild(self) -> None:
        """A new bucket at the admitted rate and burst, whatever changed."""
        self._pacer.follow(self._effective_per_s(), self._burst, exactly=True)

    def _jittered(self, seconds: float) -> float:
        """Between half and all of `seconds`: spread out, but never close to zero."""
        return seconds * (0.5 + self._rng.random() / 2)


def lowered_rate(
    refused_at: float,
    accepted_per_s: float | None,
    answers: int,
    refusals: int,
    *,
    told_to_wait: bool,
    decrease_factor: float,
) -> float:
    """The rate after a refusal at `refused_at`, given the server's accepted rate and
    the answers (and refusals among them) since the rate last changed."""
    refused_share = refusals / max(answers, 1)
    if refused_share <= CLOSE_SHARE and answers >= 1 / CLOSE_SHARE:
        # Few refused: the server's rate is close under this one. (What it accepts
        # while refusing says less: a bucket of one token, driven a little too fast,
        # accepts well under its rate.) Further under if refusals cost pauses.
        margin = ESTIMATE_MARGIN if told_to_wait else CLOSE_MARGIN
        return max(FLOOR_PER_S, refused_at * (1 - refused_share) * margin)
    if accepted_per_s is None:  # too soon to tell: a plain decrease
        return max(FLOOR_PER_S, refused_at * decrease_factor)
    # Far above: just under what the server was seen to accept.
    return max(FLOOR_PER_S, min(refused_at, accepted_per_s) * ESTIMATE_MARGIN)


def probed_rate(rate_per_s: float, refused_per_s: float | None) -> float:
    """The next rate to try after a quiet spell at `rate_per_s`: towards the last
    refused rate (halfway, at most a fifth more), then past it in small steps; with no
    refusal known, a quarter more."""
    if refused_per_s is None:
        return rate_per_s * GROWTH
    if rate_per_s < refused_per_s / NUDGE:
        halfway = rate_per_s + (refused_per_s - rate_per_s) / 2
        return min(halfway, rate_per_s * STEP_TOWARDS)
    return rate_per_s * NUDGE
