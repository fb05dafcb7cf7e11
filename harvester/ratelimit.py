"""One rate controller shared by every worker.

A token bucket (aiolimiter) spaces requests at the configured rate. aiolimiter's
bucket starts empty and admits `max_rate` acquisitions at once, so it is sized as
`burst` tokens refilled over `burst / requests_per_s` seconds: the opening burst is
exactly the configured burst, never a whole period's worth. On top of the bucket, a
pause gate lets one refusal hold back all workers, not just the one that got it.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter


class RateController:
    """Admits requests at `requests_per_s` with bursts of at most `burst`."""

    def __init__(self, requests_per_s: float, burst: int) -> None:
        self.requests_per_s = requests_per_s
        self.burst = burst
        self._limiter = AsyncLimiter(max_rate=burst, time_period=burst / requests_per_s)
        self._resume_at_s = 0.0

    async def acquire(self) -> None:
        """Wait for a token, and for any pause to end, before one request."""
        loop = asyncio.get_running_loop()
        while True:
            wait_s = self._resume_at_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            await self._limiter.acquire()
            if self._resume_at_s <= loop.time():
                return

    def pause_for(self, seconds: float) -> None:
        """Hold every worker back for `seconds` (extends, never shortens, a pause)."""
        resume_at_s = asyncio.get_running_loop().time() + seconds
        self._resume_at_s = max(self._resume_at_s, resume_at_s)

    @property
    def paused_for_s(self) -> float:
        return max(0.0, self._resume_at_s - asyncio.get_running_loop().time())
