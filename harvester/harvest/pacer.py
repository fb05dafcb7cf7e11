"""The pacing every worker waits on: a token bucket whose rate and burst change as the
rate controller learns, and a pause gate that holds everyone.

aiolimiter's bucket keeps its rate for life, so a change of more than 2% (or of the
burst) builds a new one; a smaller change is not worth the interval a new bucket
costs. A new bucket starts empty and would admit a whole burst at once, so the first
`acquire` primes it full: the first second is as exact as any other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

REBUILD_CHANGE = 0.02  # the token bucket is rebuilt when the rate moves more than this


class Pacer:
    """Admits one request at a time at `rate_per_s`, at most `burst` at once."""

    def __init__(
        self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.resume_at_s = 0.0  # clock time before which nobody may send
        self._primed = False
        self._limiter = self._new_limiter()

    async def acquire(self) -> None:
        """Wait for a token, and for any pause to end."""
        if not self._primed:
            # Fill the new, empty bucket: immediate, and no opening burst follows.
            self._primed = True
            await self._limiter.acquire(self.burst)
        while True:
            wait_s = self.resume_at_s - self._clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            limiter = self._limiter
            await limiter.acquire()
            if self.resume_at_s <= self._clock() and limiter is self._limiter:
                return  # a token of the current rate, and no pause began meanwhile

    def follow(self, rate_per_s: float, burst: int, *, exactly: bool = False) -> None:
        """Admit at `rate_per_s` and `burst` from now: a new bucket when the burst
        changed, the rate moved enough to matter, or `exactly` is asked for."""
        moved = abs(rate_per_s - self.rate_per_s) > REBUILD_CHANGE * self.rate_per_s
        if exactly or moved or burst != self.burst:
            self.rate_per_s, self.burst = rate_per_s, burst
            self._limiter = self._new_limiter()

    def pause_for(self, seconds: float) -> tuple[float, float] | None:
        """Hold every worker back for `seconds`; extends a pause, never shortens one.
        The (start, end) of the time added, if any."""
        now_s = self._clock()
        if now_s + seconds <= self.resume_at_s:
            return None
        self.resume_at_s = now_s + seconds
        return now_s, self.resume_at_s

    @property
    def paused_for_s(self) -> float:
        return max(0.0, self.resume_at_s - self._clock())

    def _new_limiter(self) -> AsyncLimiter:
        """A bucket of `burst` tokens refilled over `burst / rate` seconds."""
        self._primed = False
        return AsyncLimiter(max_rate=self.burst, time_period=self.burst / self.rate_per_s)
