"""A harvest against a rate-limited server in virtual time, for the rate controller.

The controller decides; this model plays the rest in milliseconds of virtual time: it
sends whenever the controller's rate, burst and pause allow, the server's token bucket
(or hourly allowance) accepts or refuses each request on arrival, and each answer
comes back after the latency. Deterministic, and a 70-second harvest takes a fraction
of a second, so tests can ask how the controller converges without timing anything.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from harvester.harvest.ratelimit import RateController
from harvester.harvest.ratestate import LearnedRate, RatePolicy

STEP_S = 0.001


@dataclass
class Clock:
    now_s: float = 1_000.0

    def __call__(self) -> float:
        return self.now_s


@dataclass
class Bucket:
    """The server's token bucket: `rate` tokens a second, at most `burst` saved."""

    rate: float
    burst: int
    tokens: float = 0.0
    at_s: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now_s: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_s - self.at_s) * self.rate)
        self.at_s = now_s
        if self.tokens >= 1 - 1e-9:  # a token due now is there (float sums drift)
            self.tokens -= 1
            return True
        return False


@dataclass
class Tally:
    """What the server saw, counted from `from_s` (virtual seconds since the start)."""

    from_s: float
    passed: int = 0
    refused: int = 0
    first_pass_s: float | None = None
    refusal_times_s: list[float] = field(default_factory=list)

    def rate(self, until_s: float) -> float:
        return self.passed / (until_s - self.from_s)

    @property
    def refused_share(self) -> float:
        return self.refused / max(1, self.passed + self.refused)


@dataclass
class Harvest:
    """One harvest: a controller, a server bucket, `latency_s` each way and back."""

    policy: RatePolicy
    server: Bucket
    latency_s: float = 0.2
    retry_after: bool = False
    concurrency: int = 32
    learned: LearnedRate | None = None
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.controller = RateController(
            self.policy, learned=self.learned, clock=self.clock, wall_clock=lambda: 0.0
        )
        self.start_s = self.clock.now_s
        self.server.at_s = self.start_s
        self._next_send_s = self.start_s
        self._credit = 0.0  # tokens of the controller's own bucket
        self._answers: list[tuple[float, int, bool]] = []  # heap: (due, ticket, refused)
        self.rates: list[tuple[float, float]] = []  # (seconds since start, allowed rate)

    def run(self, seconds: float, count_from_s: float = 0.0) -> Tally:
        tally = Tally(count_from_s)
        steps = math.ceil(seconds / STEP_S)
        for _ in range(steps):
            self.clock.now_s += STEP_S
            self._deliver_answers()
            self._send(tally)
            self.rates.append((self.clock.now_s - self.start_s, self.controller.rate_per_s))
        return tally

    def _send(self, tally: Tally) -> None:
        """Send what the controller's bucket allows now, as its limiter would."""
        controller = self.controller
        if controller.paused_for_s > 0:
            return
        rate = controller.rate_per_s
        burst = controller.view().burst
        self._credit = min(burst, self._credit + STEP_S * rate)
        while self._credit >= 1 and len(self._answers) < self.concurrency:
            self._credit -= 1
            ticket = controller.admit()
            arrived_s = self.clock.now_s + self.latency_s / 2
            accepted = self.server.take(arrived_s)
            since_s = self.clock.now_s - self.start_s
            if since_s >= tally.from_s:
                tally.passed += accepted
                tally.refused += not accepted
                if not accepted:
                    tally.refusal_times_s.append(since_s)
            heapq.heappush(self._answers, (self.clock.now_s + self.latency_s, ticket, accepted))

    def _deliver_answers(self) -> None:
        while self._answers and self._answers[0][0] <= self.clock.now_s:
            _, ticket, accepted = heapq.heappop(self._answers)
            if accepted:
                self.controller.on_accepted(ticket)
            else:
                wait_s = max(1.0, math.ceil(1 / self.server.rate)) if self.retry_after else None
                self.controller.on_rate_limited(ticket, wait_s)
