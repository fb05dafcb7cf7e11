"""What the server's answers say about its rate: the recent answers (accepted or
refused, and when) and the remaining-count headers of its hourly and daily allowances.
The rate controller (`harvest.ratelimit`) decides; these only read."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

ESTIMATE_WINDOW_S = 5.0  # the server's rate, from the answers of this long...
ESTIMATE_MIN_S = 0.5  # ...and of at least this long, or it is not used
SHARE_WINDOW_S = 30.0  # answers are kept this long, for the share refused
HOUR_S, DAY_S = 3_600, 86_400

LimitedBy = Literal["configured", "learned", "hourly_allowance", "daily_allowance", "auto"]


class RecentAnswers:
    """The answers of the last half minute (when, to which ticket, refused or not),
    and the pauses among them: what the server's rate can be read from."""

    def __init__(self) -> None:
        self._answers: deque[tuple[float, int, bool]] = deque()
        self._pauses: deque[tuple[float, float]] = deque()  # (from, to), nobody sent
        self._first_s = math.inf  # the first answer: none could come before it

    def add(self, now_s: float, ticket: int, refused: bool) -> None:
        self._first_s = min(self._first_s, now_s)
        self._answers.append((now_s, ticket, refused))
        while self._answers[0][0] < now_s - SHARE_WINDOW_S:
            self._answers.popleft()

    def paused(self, from_s: float, to_s: float) -> None:
        """Nobody sends from `from_s` to `to_s` (a pause; one may extend the last)."""
        if self._pauses and from_s <= self._pauses[-1][1]:
            from_s = self._pauses[-1][0]
            self._pauses.pop()
        self._pauses.append((from_s, to_s))
        while self._pauses[0][1] < to_s - SHARE_WINDOW_S:
            self._pauses.popleft()

    def accepted_per_s(self, now_s: float) -> float | None:
        """Answers the server accepted per second of sending over the last few seconds
        (pauses left out); None until that is long enough to mean anything. While we
        send faster than the server allows, this is the server's rate."""
        since_s = max(now_s - ESTIMATE_WINDOW_S, self._first_s)
        span_s = now_s - since_s - self._paused_within(since_s, now_s)
        if span_s < ESTIMATE_MIN_S:
            return None
        accepted = sum(1 for at_s, _, refused in self._answers if at_s >= since_s and not refused)
        return accepted / span_s

    def tally(self, since_s: float, after_ticket: int) -> tuple[int, int]:
        """(answers, refusals) since `since_s`, to requests admitted after `after_ticket`."""
        answers = refusals = 0
        for at_s, ticket, refused in reversed(self._answers):
            if at_s < since_s:
                break
            if ticket > after_ticket:
                answers += 1
                refusals += refused
        return answers, refusals

    def per_s(self, now_s: float, window_s: float) -> float:
        """Answers per second over the last `window_s` (infinite before a whole window
        passed: too soon to say that the workers leave the rate unused)."""
        if not self._answers or now_s - self._answers[0][0] < window_s:
            return math.inf
        answers, _ = self.tally(now_s - window_s, 0)
        return answers / window_s

    def _paused_within(self, since_s: float, now_s: float) -> float:
        return sum(
            max(0.0, min(to_s, now_s) - max(from_s, since_s)) for from_s, to_s in self._pauses
        )


def allowance_pace(
    now_s: float, hourly_remaining: int | None, daily_remaining: int | None, in_flight: int
) -> tuple[float, LimitedBy, float]:
    """From an answer's remaining counts: the rate that spreads the rest of the tighter
    window over its time left, that window, and how long to sleep if one is spent.

    `in_flight` requests were sent after the answered one and are not counted yet;
    they will be, so they are taken off what remains. At least one request is left
    for the window, so a pace is never zero."""
    paces: list[tuple[float, LimitedBy]] = []
    pause_s = 0.0
    windows: tuple[tuple[int | None, int, LimitedBy], ...] = (
        (daily_remaining, DAY_S, "daily_allowance"),
        (hourly_remaining, HOUR_S, "hourly_allowance"),
    )
    for remaining, period_s, kind in windows:
        if remaining is None:
            continue
        left_s = seconds_to_boundary(now_s, period_s)
        if remaining <= 0:
            pause_s = max(pause_s, left_s)
        paces.append((max(remaining - in_flight, 1) / left_s, kind))
    pace, kind = min(paces)
    return pace, kind, pause_s


def seconds_to_boundary(now_s: float, period_s: int) -> float:
    """Seconds from `now_s` to the next multiple of `period_s` in UTC, plus a second."""
    return period_s - now_s % period_s + 1.0
