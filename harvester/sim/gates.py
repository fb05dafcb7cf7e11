"""Gates that make the simulator behave like the real API on a bad day.

Each gate is an async callable `(request, fetch) -> response | None` appended to
`Simulator.gates`: a server-side rate limit with the API's hourly headers, and fault
injection (5xx, connection resets, truncated bodies, invalid JSON, answers slower than
any sane client timeout). They are deterministic for a given seed, so a failing test
can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from harvester.sim import universe

FAULT_KINDS = ("500", "502", "503", "reset", "truncated", "invalid_json", "slow")


class FetchRequestLike(Protocol):
    """What a gate reads of a fetch call (the server's frozen FetchRequest)."""

    @property
    def id_type(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def query(self) -> dict[str, str]: ...


# Headers a gate wants on the answer that follows it (the hourly allowance).
EXTRA_HEADERS = web.RequestKey("extra_headers", dict)


TWEET_QUOTA_TEXT = (
    "Tweet ID rate limit exceeded, please see X-TweetIdRateLimit headers and try again later"
)


def add_headers(request: web.Request, headers: dict[str, str]) -> None:
    """Headers for the answer that follows, merged with other gates' ones."""
    request[EXTRA_HEADERS] = {**request.get(EXTRA_HEADERS, {}), **headers}


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
            add_headers(request, self._hourly_headers())
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


@dataclass
class TweetQuotaGate:
    """At most `limit` unique tweet IDs per rolling `window_s`, as the real fetch call.

    It answers known outputs itself (it must see the tweets it is about to send):
    IDs already charged within the window cost nothing again. Every answer carries
    X-TweetIDRateLimit-Limit/-Remaining; an answer that would go over is refused with
    the API's 429 text instead. Put it last among the gates.
    """

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        self._charged_at: dict[str, float] = {}
        self._charges: deque[tuple[float, str]] = deque()
        self.refusals = 0
        self.refusal_times_s: list[float] = []
        self.peak_used = 0

    def used(self, now_s: float) -> int:
        while self._charges and self._charges[0][0] < now_s - self.window_s:
            charged_at, tweet_id = self._charges.popleft()
            if self._charged_at.get(tweet_id) == charged_at:
                del self._charged_at[tweet_id]
        return len(self._charged_at)

    def _headers(self, used: int) -> dict[str, str]:
        return {
            "X-TweetIDRateLimit-Limit": str(self.limit),
            "X-TweetIDRateLimit-Remaining": str(max(0, self.limit - used)),
        }

    async def __call__(self, request: web.Request, fetch: FetchRequestLike) -> web.Response | None:
        now_s = time.monotonic()
        used = self.used(now_s)
        output = universe.output_for(fetch.id_type, fetch.identifier)
        if output is None:
            add_headers(request, self._headers(used))
            return None  # the ordinary 404
        body = universe.render_with_query(output, fetch.query)
        fresh = {t for t in universe.tweet_ids(json.loads(body)) if t not in self._charged_at}
        if used + len(fresh) > self.limit:
            self.refusals += 1
            self.refusal_times_s.append(now_s)
            return web.Response(status=429, text=TWEET_QUOTA_TEXT, headers=self._headers(used))
        for tweet_id in fresh:
            self._charged_at[tweet_id] = now_s
            self._charges.append((now_s, tweet_id))
        used += len(fresh)
        self.peak_used = max(self.peak_used, used)
        headers = {**request.get(EXTRA_HEADERS, {}), **self._headers(used)}
        return web.Response(
            body=body, content_type="application/json", charset="utf-8", headers=headers
        )
