"""Gates that make the simulator behave like the real API on a bad day.

Each gate is an async callable `(request, fetch) -> response | None` appended to
`Simulator.gates`: the server's rate limits (a per-second token bucket, hourly and
daily allowances, with the API's headers), and fault injection (5xx, connection
resets, truncated bodies, invalid JSON, answers slower than any sane client timeout),
for every call the simulator answers (fetch, counts, citations), and the tweet-ID quota,
for fetch calls only. They are deterministic for a given seed, so a failing test can be
replayed.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from harvester.sim import universe

FAULT_KINDS = ("500", "502", "503", "reset", "truncated", "invalid_json", "slow")


class FetchRequestLike(Protocol):
    """What a gate reads of a call (the server's frozen FetchRequest)."""

    @property
    def endpoint(self) -> str: ...
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
class Allowance:
    """A count of requests per fixed UTC window (an hour or a day), as the API's
    `X-HourlyRateLimit-*` and `X-DailyRateLimit-*` headers report one. `used` starts
    at what was spent before the harvester came, to play a start in mid-window."""

    name: str  # "Hourly" or "Daily", as in the header names
    limit: int
    period_s: int
    used: int = 0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._window = self._window_of(self.clock())

    def _window_of(self, now_s: float) -> int:
        return int(now_s // self.period_s)

    def _roll(self, now_s: float) -> None:
        window = self._window_of(now_s)
        if window != self._window:
            self._window, self.used = window, 0

    def spent(self, now_s: float) -> bool:
        self._roll(now_s)
        return self.used >= self.limit

    def take(self) -> None:
        self.used += 1

    def seconds_left(self, now_s: float) -> float:
        return self.period_s - now_s % self.period_s

    def headers(self) -> dict[str, str]:
        return {
            f"X-{self.name}RateLimit-Limit": str(self.limit),
            f"X-{self.name}RateLimit-Remaining": str(max(0, self.limit - self.used)),
        }


@dataclass
class RateLimitGate:
    """The API's rate limits: a token bucket of `burst` tokens refilled at
    `requests_per_s` (None: no bucket), and hourly and daily allowances counted in
    UTC hours and days. No token or no allowance left, no answer.

    Every answer carries `X-HourlyRateLimit-*` (with a bucket alone, an hourly limit
    of an hour's worth of tokens, unless `bucket_headers` is false) and, if there is
    a daily allowance, `X-DailyRateLimit-*`. A refusal is `status` (429, or the old
    420) with the same headers and, if `send_retry_after`, a Retry-After of the whole
    seconds until a
    request could pass: the next token, or the window's end.
    """

    requests_per_s: float | None
    burst: int = 1
    status: int = 429
    send_retry_after: bool = False
    hourly_limit: int | None = None
    hourly_used: int = 0
    daily_limit: int | None = None
    daily_used: int = 0
    bucket_headers: bool = True  # a bucket alone still sends the hourly headers

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._refilled_s = time.monotonic()
        hourly = self.hourly_limit
        if hourly is None and self.requests_per_s is not None and self.bucket_headers:
            hourly = int(self.requests_per_s * 3600)
        self.allowances = [
            Allowance(name, limit, period_s, used)
            for name, limit, period_s, used in (
                ("Hourly", hourly, 3600, self.hourly_used),
                ("Daily", self.daily_limit, 86_400, self.daily_used),
            )
            if limit is not None
        ]
        self.refusals = 0
        self.passed = 0
        self.first_pass_s: float | None = None  # monotonic times, for rate measurements
        self.last_pass_s: float | None = None
        self.refusal_times_s: list[float] = []

    def _refill(self, now_s: float) -> None:
        if self.requests_per_s is None:
            return
        self._tokens = min(
            float(self.burst), self._tokens + (now_s - self._refilled_s) * self.requests_per_s
        )
        self._refilled_s = now_s

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for allowance in self.allowances:
            headers.update(allowance.headers())
        return headers

    def _wait_s(self, now_s: float, wall_s: float) -> float:
        """How long until a request could pass."""
        waits = [a.seconds_left(wall_s) for a in self.allowances if a.spent(wall_s)]
        if self.requests_per_s is not None and self._tokens < 1:
            waits.append((1 - self._tokens) / self.requests_per_s)
        return max(waits, default=0.0)

    async def __call__(self, request: web.Request, fetch: object) -> web.Response | None:
        now_s, wall_s = time.monotonic(), time.time()
        self._refill(now_s)
        bucket_ok = self.requests_per_s is None or self._tokens >= 1
        if bucket_ok and not any(a.spent(wall_s) for a in self.allowances):
            if self.requests_per_s is not None:
                self._tokens -= 1
            for allowance in self.allowances:
                allowance.take()
            self.passed += 1
            self.first_pass_s = self.first_pass_s or now_s
            self.last_pass_s = now_s
            add_headers(request, self._headers())
            return None
        self.refusals += 1
        self.refusal_times_s.append(now_s)
        headers = self._headers()
        if self.send_retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(self._wait_s(now_s, wall_s))))
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
    IDs already charged within the window cost nothing again. Every fetch answer carries
    X-TweetIDRateLimit-Limit/-Remaining; an answer that would go over is refused with
    the API's 429 text instead. Put it last among the gates. Counts and citations calls
    carry no tweet IDs: it lets them pass untouched, uncharged and without its headers.
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
        if fetch.endpoint != "fetch":
            return None
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
