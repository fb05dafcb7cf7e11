"""One rate controller shared by every worker.

A token bucket (aiolimiter) spaces requests at the current rate. aiolimiter's bucket
starts empty and would admit a whole bucket at once, so it is sized as `burst` tokens
refilled over `burst / rate` seconds and primed full: the first second is as exact as
any other. On top of the bucket:

- a pause gate, so one refusal holds back every worker, not just the one refused;
- AIMD: each rate-limit refusal halves the rate (once per burst of refusals, as the
  requests in flight all get refused together), and every quiet `increase_after_s`
  it climbs back by a step, never above the configured rate;
- the API's remaining-count headers: at 0 left for the hour (or day), it sleeps to
  the next hour (or day) boundary instead of burning requests into refusals.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from harvester.config import RateSettings

_REFUSAL_COOLDOWN_S = 2.0  # refusals closer together than this are one event
_FIRST_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class RatePolicy:
    requests_per_s: float
    burst: int
    decrease_factor: float = 0.5
    increase_after_s: float = 10.0
    increase_step: float = 0.1  # a fraction of the configured rate
    min_fraction: float = 1 / 64  # the rate never drops below this share of the configured

    @classmethod
    def of(cls, rate: RateSettings) -> RatePolicy:
        return cls(
            rate.requests_per_s,
            rate.burst,
            decrease_factor=rate.decrease_factor,
            increase_after_s=rate.increase_after_s,
        )


class RateController:
    """Admits requests at the current rate; learns from refusals and limit headers."""

    def __init__(self, policy: RatePolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rate_per_s = policy.requests_per_s
        self._rng = rng or random.Random()
        self._limiter = self._new_limiter()
        self._resume_at_s = 0.0  # loop time before which nobody may send
        self._last_change_s = time.monotonic()
        self._last_refusal_s = -1e9
        self._backoff_s = 0.0

    def _new_limiter(self) -> AsyncLimiter:
        burst = self.policy.burst
        self._primed = False
        return AsyncLimiter(max_rate=burst, time_period=burst / self.rate_per_s)

    async def acquire(self) -> None:
        """Wait for a token, and for any pause to end, before one request."""
        loop = asyncio.get_running_loop()
        if not self._primed:
            # Fill the new, empty bucket: immediate, and no opening burst follows.
            self._primed = True
            await self._limiter.acquire(self.policy.burst)
        while True:
            wait_s = self._resume_at_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            limiter = self._limiter
            await limiter.acquire()
            if self._resume_at_s <= loop.time() and limiter is self._limiter:
                return  # a token of the current rate, and no pause began meanwhile

    def reconfigure(self, policy: RatePolicy) -> None:
        """New settings (a reload). The new configured rate applies from now, unless
        refusals had pushed the rate below the old one: then the learned rate stays
        (capped by the new one) and climbs back as usual, so a reload cannot invite a
        new wave of refusals."""
        backed_off = self.rate_per_s < self.policy.requests_per_s
        self.policy = policy
        if backed_off:
            self.rate_per_s = min(self.rate_per_s, policy.requests_per_s)
        else:
            self.rate_per_s = policy.requests_per_s
        self._limiter = self._new_limiter()  # the burst may have changed too
        self._last_change_s = time.monotonic()

    def pause_for(self, seconds: float) -> None:
        """Hold every worker back for `seconds` (extends, never shortens, a pause)."""
        resume_at_s = asyncio.get_running_loop().time() + seconds
        self._resume_at_s = max(self._resume_at_s, resume_at_s)

    @property
    def paused_for_s(self) -> float:
        return max(0.0, self._resume_at_s - asyncio.get_running_loop().time())

    def on_rate_limited(self, retry_after_s: float | None) -> float:
        """A 420/429: pause everyone, lower the rate. Returns the pause in seconds."""
        now_s = time.monotonic()
        if now_s - self._last_refusal_s >= _REFUSAL_COOLDOWN_S:
            self._backoff_s = min(max(self._backoff_s * 2, _FIRST_BACKOFF_S), _MAX_BACKOFF_S)
            floor = self.policy.requests_per_s * self.policy.min_fraction
            self._set_rate(max(floor, self.rate_per_s * self.policy.decrease_factor), now_s)
        self._last_refusal_s = now_s
        pause_s = retry_after_s if retry_after_s is not None else self._jittered(self._backoff_s)
        self.pause_for(pause_s)
        return pause_s

    def on_accepted(self) -> None:
        """An answer that was not a refusal: after a quiet spell, climb back up."""
        now_s = time.monotonic()
        self._backoff_s = 0.0 if now_s - self._last_refusal_s > 60 else self._backoff_s
        if self.rate_per_s >= self.policy.requests_per_s:
            return
        if now_s - max(self._last_change_s, self._last_refusal_s) >= self.policy.increase_after_s:
            step = self.policy.requests_per_s * self.policy.increase_step
            self._set_rate(min(self.policy.requests_per_s, self.rate_per_s + step), now_s)

    def on_remaining(
        self, hourly: int | None, daily: int | None, now_s: float | None = None
    ) -> float:
        """Sleep to the next boundary when a window's allowance is spent; the pause."""
        now_s = time.time() if now_s is None else now_s
        pause_s = 0.0
        if daily is not None and daily <= 0:
            pause_s = seconds_to_boundary(now_s, 86_400)
        elif hourly is not None and hourly <= 0:
            pause_s = seconds_to_boundary(now_s, 3_600)
        if pause_s:
            self.pause_for(pause_s)
        return pause_s

    def _set_rate(self, rate_per_s: float, now_s: float) -> None:
        if rate_per_s != self.rate_per_s:
            self.rate_per_s = rate_per_s
            self._limiter = self._new_limiter()
        self._last_change_s = now_s

    def _jittered(self, seconds: float) -> float:
        """Between half and all of `seconds`: spread out, but never close to zero."""
        return seconds * (0.5 + self._rng.random() / 2)


def seconds_to_boundary(now_s: float, period_s: int) -> float:
    """Seconds from `now_s` to the next multiple of `period_s` in UTC, plus a second."""
    return period_s - now_s % period_s + 1.0
