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

import time
from collections import deque
from dataclasses import dataclass, field

import msgspec

from harvester.config import FilterSettings, QuotaSettings

FULL, ORIGINAL_TWEETS, NO_TWITTER = "full", "original_tweets", "no_twitter"
MODES = (FULL, ORIGINAL_TWEETS, NO_TWITTER)
_SERVER_FRESH_S = 120.0  # how long a server count stays the truth without a newer one
_DEFAULT_TWEETS_PER_ANSWER = 100  # the estimate before any answer was seen in a mode
_SAMPLES = 200


class _Tweet(msgspec.Struct):
    tweet_id: str | int


class _Posts(msgspec.Struct):
    twitter: list[_Tweet] = []


class _Body(msgspec.Struct):
    posts: _Posts | None = None


_TWEETS_DECODER = msgspec.json.Decoder(_Body)


def tweet_ids(body: bytes) -> tuple[int, ...]:
    """The tweet IDs in a fetch answer, as integers (unknown keys are skipped unread).

    An ID that is not a decimal number fitting 63 bits is folded into one by hashing,
    so it is still counted (once) rather than lost.
    """
    try:
        posts = _TWEETS_DECODER.decode(body).posts
    except msgspec.DecodeError:
        return ()
    if posts is None:
        return ()
    return tuple(_as_ledger_key(tweet.tweet_id) for tweet in posts.twitter)


def _as_ledger_key(tweet_id: str | int) -> int:
    if isinstance(tweet_id, int) and 0 <= tweet_id < 2**63:
        return tweet_id
    text = str(tweet_id)
    if text.isdigit() and len(text) <= 18:
        return int(text)
    if text.isdigit() and int(text) < 2**63:
        return int(text)
    return hash(("tweet", text)) & (2**63 - 1)


def params_for_mode(filters: FilterSettings, mode: str) -> dict[str, str]:
    """The fetch query parameters for a mode, on top of the configured filters."""
    params = filters.as_query()
    if mode == ORIGINAL_TWEETS:
        post_types = {*filters.post_types, "original_tweets"}
        params["post_types"] = ",".join(sorted(post_types))
    elif mode == NO_TWITTER:
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
    in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    _samples: dict[str, deque[int]] = field(
        default_factory=lambda: {mode: deque(maxlen=_SAMPLES) for mode in MODES}
    )

    @property
    def limit(self) -> int:
        return self.server_limit or self.settings.limit

    def used(self, now_s: float | None = None) -> int:
        """Tweet IDs used in the window: the server's count if fresh, else ours."""
        now_s = time.time() if now_s is None else now_s
        if self.server_used is not None and now_s - self.server_seen_s < _SERVER_FRESH_S:
            return self.server_used
        return self.ledger_used + self.unrecorded

    def estimate(self, mode: str) -> int:
        """Tweets one answer in `mode` may bring: the 95th percentile of recent ones."""
        samples = sorted(self._samples[mode])
        if len(samples) < 10:
            return _DEFAULT_TWEETS_PER_ANSWER if mode != NO_TWITTER else 0
        return samples[int(len(samples) * 0.95)]

    def headroom(self) -> int:
        return sum(count * self.estimate(mode) for mode, count in self.in_flight.items())

    def mode(self, now_s: float | None = None) -> str:
        """The mode for the next request."""
        if self.settings.mode != "auto":
            return self.settings.mode
        now_s = time.time() if now_s is None else now_s
        if now_s < self.refused_until_s:
            return NO_TWITTER
        committed = self.used(now_s) + self.headroom()
        limit = self.limit
        if committed + self.estimate(FULL) < self.settings.original_tweets_at * limit:
            return FULL
        if committed + self.estimate(ORIGINAL_TWEETS) < self.settings.no_twitter_at * limit:
            return ORIGINAL_TWEETS
        return NO_TWITTER

    def started(self, mode: str) -> None:
        self.in_flight[mode] += 1

    def answered(self, mode: str, tweet_count: int | None) -> None:
        """A request in `mode` ended; `tweet_count` if it brought tweets to charge."""
        self.in_flight[mode] -= 1
        if tweet_count is not None:
            self._samples[mode].append(tweet_count)
            self.unrecorded += tweet_count

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

    def threshold_used(self, mode: str) -> int:
        """The usage below which `mode` is allowed again (for 'next change' estimates)."""
        fraction = self.settings.original_tweets_at if mode == FULL else self.settings.no_twitter_at
        return int(fraction * self.limit) - self.estimate(mode)


def quota_snapshot(state: QuotaState, now_s: float) -> dict[str, object]:
    """The daemon's view, saved for `status`."""
    used = state.used(now_s)
    fresh_server = state.server_used is not None and now_s - state.server_seen_s < _SERVER_FRESH_S
    return {
        "limit": state.limit,
        "used": used,
        "remaining": max(0, state.limit - used),
        "mode": state.mode(now_s),
        "source": "server" if fresh_server else "ledger",
        "window_s": state.settings.window_s,
        "refused_until_s": state.refused_until_s or None,
        "at_s": now_s,
    }
