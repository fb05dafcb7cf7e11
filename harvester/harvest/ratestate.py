"""The rate's records: the configured policy, what refusals taught (saved in the
store and read back at the next start), and the view `status`, the heartbeat and the
metrics show."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from harvester.config import RateSettings
from harvester.harvest.ratesignals import LimitedBy

if TYPE_CHECKING:  # a type only: `status` reads LearnedRate without opening a store
    from harvester.store.aio import AsyncStore

LEARNED_RATE_KEY = "learned_rate"  # the daemon_state entry that keeps it across runs


@dataclass(frozen=True)
class RatePolicy:
    """The configured side: a ceiling (None for "auto"), a burst, the probing pace."""

    requests_per_s: float | None
    burst: int
    decrease_factor: float = 0.5
    increase_after_s: float = 5.0

    @classmethod
    def of(cls, rate: RateSettings) -> RatePolicy:
        return cls(
            rate.requests_per_s,
            rate.burst,
            decrease_factor=rate.decrease_factor,
            increase_after_s=rate.increase_after_s,
        )


@dataclass(frozen=True)
class LearnedRate:
    """What refusals taught, as saved in the store (`daemon_state`, `learned_rate`)."""

    requests_per_s: float
    burst: int
    refused_per_s: float | None  # the lowest recent rate the server refused
    learned_at_s: float  # Unix time

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LearnedRate | None:
        """The saved record, or None if it is not one (a store from another version)."""
        try:
            fields = json.loads(text)
            learned = cls(
                float(fields["requests_per_s"]),
                int(fields["burst"]),
                None if fields["refused_per_s"] is None else float(fields["refused_per_s"]),
                float(fields["learned_at_s"]),
            )
        except (ValueError, TypeError, KeyError):
            return None
        sane = math.isfinite(learned.requests_per_s) and learned.requests_per_s > 0
        return learned if sane and learned.burst >= 1 else None


@dataclass(frozen=True, slots=True)
class RateView:
    """The rate as `status`, the heartbeat and metrics show it."""

    configured_per_s: float | None  # None: "auto"
    learned_per_s: float | None  # None until a refusal taught something
    allowance_per_s: float | None  # what the hourly/daily headers leave, spread out
    allowed_per_s: float  # what the workers are admitted at now
    burst: int
    limited_by: LimitedBy


async def saved_learned_rate(store: AsyncStore) -> LearnedRate | None:
    """The rate an earlier run learned, so this one starts there, not in refusals."""
    saved = await store.load_state(LEARNED_RATE_KEY)
    return None if saved is None else LearnedRate.from_json(saved)
