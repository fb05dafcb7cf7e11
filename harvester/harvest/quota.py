"""The tweet-ID quota: what is used, and which rung of the ladder to fetch on.

The fetch call allows `limit` unique tweet IDs per key in any rolling window. Before
each request the harvester picks a mode:

    full  ->  original_tweets (post_types=original_tweets)  ->  no_twitter (exclude twitter)

from how much of the window is used, plus headroom for the requests already in
flight (their tweets are unknown until they answer). It climbs back up as the window
frees. Usage comes from the server's X-TweetIDRateLimit headers when it sends them
(the server's count wins) and from our own ledger of charged IDs otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harvester.config import FilterSettings, QuotaSettings
from harvester.model import QuotaMode

_SERVER_FRESH_S = 120.0  # how long a server count stays the truth without a newer one
_DEFAULT_TWEETS_PER_ANSWER = 100  # the estimate before any answer was seen in a mode
_SAMPLES = 200


def params_for_mode(filters: FilterSettings, mode: QuotaMode) -> dict[str, str]:
    """The fetch query parameters for a mode, on top of the configured filters."""
    params = filters.as_query()
    if mode == QuotaMode.ORIGINAL_TWEETS:
        post_types = {*filters.post_types, "original_tweets"}
        params["post_types"] = ",".join(sorted(post_types))
    elif mode == QuotaMode.NO_TWITTER:
        if filters.include_sources:
            kept = [source for source in filters.include_sources if source != "twitter"]
            params.pop("include_sources", None)
            if kept:
                params["include_sources"] = ",".join(kept)
                return params
        excluded = [
            *filters.exclude_sources,
            *(() if "twitter" in filters.exclude_sources else ("twitter",)),
        ]
        params["exclude_sources"] = ",".join(excluded)
    return params


@dataclass
class QuotaState:
    """The daemon's live view of the quota. Not thread-safe: the event loop owns it."""

    settings: QuotaSettings
    ledger_used: int = 0  # rows in our ledger (all inside the window after each prune)
    unrecorded: int = 0  # tweet IDs in answers not yet written (an upper bound)
    server_limit: int | None = None
    server_used: int | None = None
    server_seen_s: float = 0.0
    refused_until_s: float = 0.0
    in_flight: dict[QuotaMode, int] = field(default_factory=lambda: dict.fromkeys(QuotaMode, 0))
    _samples: dict[QuotaMode, deque[int]] = field(
        default_factory=lambda: {mode: deque(maxlen=_SAMPLES) for mode in QuotaMode}
    )
    # (typical, largest) per mode, refreshed as answers arrive, not on every request.
    _estimates: dict[QuotaMode, tuple[int, int]] = field(default_factory=dict)
    _answers: int = 0

    @property
    def limit(self) -> int:
        return self.server_limit or self.settings.limit

    def used(self, now_s: float | None = None) -> int:
        """Tweet IDs used in the window: the server's count if fresh, else ours."""
        now_s = time.time() if now_s is None else now_s
        if self.server_used is not None and now_s - self.server_seen_s < _SERVER_FRESH_S:
            return self.server_used
        return self.ledger_used + self.unrecorded

    def typical(self, mode: QuotaMode) -> int:
        """Tweets a typical answer in `mode` brings: the 95th percentile of recent ones."""
        return self._estimate(mode)[0]

    def largest(self, mode: QuotaMode) -> int:
        """The most tweets one recent answer in `mode` brought (heavy outputs are rare
        but one alone can be a good part of a small quota)."""
        return self._estimate(mode)[1]

    def _estimate(self, mode: QuotaMode) -> tuple[int, int]:
        cached = self._estimates.get(mode)
        if cached is None:
            cached = self._estimates[mode] = self._compute_estimate(mode)
        return cached

    def _compute_estimate(self, mode: QuotaMode) -> tuple[int, int]:
        if mode == QuotaMode.NO_TWITTER:
            return 0, 0
        samples = sorted(self._samples[mode])
        if len(samples) < 10:
            typical = _DEFAULT_TWEETS_PER_ANSWER
        else:
            typical = samples[int(len(samples) * 0.95)]
        return typical, max(samples[-1] if samples else 0, _DEFAULT_TWEETS_PER_ANSWER)

    def headroom(self) -> int:
        """Tweets the requests in flight may still bring."""
        return sum(count * self.typical(mode) for mode, count in self.in_flight.items())

    def mode(self, now_s: float | None = None) -> QuotaMode:
        """The mode for the next request."""
        if self.settings.mode != "auto":
            return QuotaMode(self.settings.mode)
        now_s = time.time() if now_s is None else now_s
        if now_s < self.refused_until_s:
            return QuotaMode.NO_TWITTER
        committed = self.used(now_s) + self.headroom()
        limit = self.limit
        if committed + self.largest(QuotaMode.FULL) < self.settings.original_tweets_at * limit:
            return QuotaMode.FULL
        if (
            committed + self.largest(QuotaMode.ORIGINAL_TWEETS)
            < self.settings.no_twitter_at * limit
        ):
            return QuotaMode.ORIGINAL_TWEETS
        return QuotaMode.NO_TWITTER

    def started(self, mode: QuotaMode) -> None:
        self.in_flight[mode] += 1

    def answered(self, mode: QuotaMode, tweet_count: int | None) -> None:
        """A request in `mode` ended; `tweet_count` if it brought tweets to charge."""
        self.in_flight[mode] -= 1
        if tweet_count is not None:
            samples = self._samples[mode]
            samples.append(tweet_count)
            self.unrecorded += tweet_count
            self._answers += 1
            if len(samples) < 20 or self._answers % 16 == 0 or tweet_count > self.largest(mode):
                self._estimates.pop(mode, None)

    def recorded(self, tweet_count: int, charged: int, pruned: int) -> None:
        """The store wrote answers holding `tweet_count` IDs, `charged` of them new."""
        self.unrecorded = max(0, self.unrecorded - tweet_count)
        self.ledger_used = max(0, self.ledger_used + charged - pruned)

    def server_says(self, limit: int | None, remaining: int | None, now_s: float) -> None:
        if limit is None or remaining is None:
            return
        self.server_limit = limit
        self.server_used = max(0, limit - remaining)
        self.server_seen_s = now_s

    def refused(self, until_s: float) -> None:
        """The server refused for the quota: no Twitter until `until_s`."""
        self.refused_until_s = max(self.refused_until_s, until_s)

    def full_mode_usage(self) -> int:
        """The usage below which full mode is chosen again (room for the largest answer)."""
        return int(self.settings.original_tweets_at * self.limit) - self.largest(QuotaMode.FULL)

    def up_thresholds(self) -> dict[QuotaMode, int]:
        """For each mode above the bottom: the usage below which it is chosen again."""
        no_twitter_at = int(self.settings.no_twitter_at * self.limit)
        original = no_twitter_at - self.largest(QuotaMode.ORIGINAL_TWEETS)
        return {QuotaMode.FULL: self.full_mode_usage(), QuotaMode.ORIGINAL_TWEETS: original}

    def view(self, now_s: float) -> QuotaView:
        """The daemon's view at `now_s`, as the heartbeat saves it for `status`."""
        used = self.used(now_s)
        fresh_server = self.server_used is not None and now_s - self.server_seen_s < _SERVER_FRESH_S
        return QuotaView(
            limit=self.limit,
            used=used,
            remaining=max(0, self.limit - used),
            mode=self.mode(now_s),
            source="server" if fresh_server else "ledger",
            window_s=self.settings.window_s,
            refused_until_s=self.refused_until_s or None,
            up_thresholds=self.up_thresholds(),
            at_s=now_s,
        )


@dataclass(frozen=True, slots=True)
class QuotaView:
    """The daemon's view of the quota at one moment. Saved as JSON in `daemon_state`
    under `quota`, where `status` reads these very field names."""

    limit: int
    used: int
    remaining: int
    mode: QuotaMode
    source: str  # "server" (its headers, lately) or "ledger" (our own count)
    window_s: float
    refused_until_s: float | None  # after a quota refusal: no Twitter until then
    up_thresholds: dict[QuotaMode, int]  # per mode above the bottom: usage to return at
    at_s: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def mode_for_usage(used: int, limit: int, settings: QuotaSettings) -> QuotaMode:
    """The rung for a usage, without in-flight headroom (for reports)."""
    if settings.mode != "auto":
        return QuotaMode(settings.mode)
    if used < settings.original_tweets_at * limit:
        return QuotaMode.FULL
    if used < settings.no_twitter_at * limit:
        return QuotaMode.ORIGINAL_TWEETS
    return QuotaMode.NO_TWITTER


def next_mode_change(
    mode: QuotaMode,
    used: int,
    settings: QuotaSettings,
    up_thresholds: Mapping[QuotaMode, int],
    *,
    frees_at_s: Callable[[int], float | None],
    charge_rate_per_s: float,
    now_s: float,
) -> tuple[QuotaMode | None, float | None]:
    """(next mode, when) expected: down the ladder at the recent charging rate, or up
    it as the ledger's charges age out of the window. (None, None) when pinned."""
    if settings.mode != "auto":
        return None, None
    if mode == QuotaMode.FULL:
        if charge_rate_per_s <= 0:
            return QuotaMode.ORIGINAL_TWEETS, None
        room = max(up_thresholds[QuotaMode.FULL] - used, 0)
        return QuotaMode.ORIGINAL_TWEETS, now_s + room / charge_rate_per_s
    upper = QuotaMode.ORIGINAL_TWEETS if mode == QuotaMode.NO_TWITTER else QuotaMode.FULL
    return upper, frees_at_s(up_thresholds[upper] - 1) or now_s


def default_up_thresholds(limit: int, settings: QuotaSettings) -> dict[QuotaMode, int]:
    """The usage levels where modes return, for a store without a daemon's view."""
    return {
        QuotaMode.FULL: int(settings.original_tweets_at * limit),
        QuotaMode.ORIGINAL_TWEETS: int(settings.no_twitter_at * limit),
    }
