"""Gates that make the simulator behave like the real API on a bad day.

Each gate is an async callable `(request, fetch) -> response | None` appended to
`Simulator.gates`: a server-side rate limit with the API's hourly headers, and fault
injection (5xx, connection resets, truncated bodies, invalid JSON, answers slower than
any sane client timeout). They are deterministic for a given seed, so a failing test
can be replayed.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from aiohttp import web

FAULT_KINDS = ("500", "502", "503", "reset", "truncated", "invalid_json", "slow")
# Headers a gate wants on the answer that follows it (the hourly allowance).
EXTRA_HEADERS = web.RequestKey("extra_headers", dict)


@dataclass
class RateLimitGate:
    """A token bucket of `burst` tokens refilled at `requests_per_s`; no token, no answer.

    Every answer that passes carries `X-HourlyRateLimit-Limit/-Remaining`; a refusal
    is `status` (429, or the old 420) with the same headers and, if `send_retry_after`,
    a Retry-After of the whole seconds until the next token.
    """

    requests_per_s: float
    burst: int = 1
    status: int = 429
    send_retry_after: bool = False
    hourly_limit: int | None = None

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._refilled_s = time.monotonic()
        self._hour_started_s = time.monotonic()
        self._hour_count = 0
        self.refusals = 0
        self.passed = 0
        self.first_pass_s: float | None = None  # monotonic times, for rate measurements
        self.last_pass_s: float | None = None
        self.refusal_times_s: list[float] = []

    def _refill(self, now_s: float) -> None:
        self._tokens = min(
            float(self.burst), self._tokens + (now_s - self._refilled_s) * self.requests_per_s
        )
        self._refilled_s = now_s
        if now_s - self._hour_started_s >= 3600:
            self._hour_started_s, self._hour_count = now_s, 0

    def _hourly_headers(self) -> dict[str, str]:
        limit = self.hourly_limit or int(self.requests_per_s * 3600)
        remaining = max(0, limit - self._hour_count)
        return {
            "X-HourlyRateLimit-Limit": str(limit),
            "X-HourlyRateLimit-Remaining": str(remaining),
        }

    async def __call__(self, request: web.Request, fetch: object) -> web.Response | None:
        now_s = time.monotonic()
        self._refill(now_s)
        hourly_spent = self.hourly_limit is not None and self._hour_count >= self.hourly_limit
        if self._tokens >= 1 and not hourly_spent:
            self._tokens -= 1
            self._hour_count += 1
            self.passed += 1
            self.first_pass_s = self.first_pass_s or now_s
            self.last_pass_s = now_s
            request[EXTRA_HEADERS] = self._hourly_headers()
            return None
        self.refusals += 1
        self.refusal_times_s.append(now_s)
        headers = self._hourly_headers()
        if self.send_retry_after:
            wait_s = (1 - self._tokens) / self.requests_per_s
            headers["Retry-After"] = str(max(1, round(wait_s + 0.5)))
        text = "Enhance your calm" if self.status == 420 else "Too many requests"
        return web.Response(status=self.status, text=text, headers=headers)


@dataclass
class FaultGate:
    """Answers a fraction `rate` of requests with a fault drawn from `kinds`."""

    rate: float
    kinds: tuple[str, ...] = FAULT_KINDS
    slow_s: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
        self._rng = random.Random(self.seed)
        self.injected: dict[str, int] = dict.fromkeys(self.kinds, 0)

    async def __call__(self, request: web.Request, fetch: object) -> web.StreamResponse | None:
        if self._rng.random() >= self.rate:
            return None
        kind = self._rng.choice(self.kinds)
        self.injected[kind] += 1
        if kind in ("500", "502", "503"):
            return web.Response(status=int(kind), text="Service unavailable, try again")
        if kind == "invalid_json":
            return web.Response(
                body=b'{"altmetric_id": 1, "counts": {', content_type="application/json"
            )
        if kind == "slow":
            await asyncio.sleep(self.slow_s)
            return None  # then the ordinary answer, far too late for the client
        if kind == "reset":
            return _reset(request)
        return await _truncated(request)


def _reset(request: web.Request) -> web.Response:
    """Drop the connection before a single byte of the answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never reaches the client


async def _truncated(request: web.Request) -> web.StreamResponse:
    """Promise a 4 KB JSON body, send the start of one and drop the line."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 4096
    await response.prepare(request)
    await response.write(b'{"altmetric_id": 1, "citation": {"title": "cut')
    if request.transport is not None:
        request.transport.close()
    return response
