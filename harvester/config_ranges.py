"""The range of every number in the config: what a daemon can really run on.

A value outside its range would not fail at once but later, and far from its cause: a
lease of 1e300 seconds overflows the clock, a rate of 1e-300 requests a second waits
forever for its first token. So each numeric setting has its bounds here, in one table
(`RANGES`, with `AGE_RANGES` for the ages of `[schedule]`), checked by `config` when a
file is read, and so on every SIGHUP, which reads the file the same way. A value out
of range, NaN, infinity and a boolean are refused in one line that names the key and
its range: `workers.lease_s must be between 1 and 86400 (seconds), not 1e+300`.

The bounds are generous, never the tightest that would do: every value the example
config, the README and the tests use is inside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from harvester.errors import ConfigError

DAY_S = 86_400
YEAR_S = 365 * DAY_S
# The rate controller's own floor (harvest.ratelimit.FLOOR_PER_S): one request in 100 s.
# A slower configured rate would be raised to it silently, so it is refused instead.
LOWEST_RATE_PER_S = 0.01


@dataclass(frozen=True, slots=True)
class Range:
    """A closed interval unless a bound is marked open; `unit` is said with it."""

    low: float
    high: float
    unit: str
    low_open: bool = False  # the low bound itself is outside (a share above 0)
    high_open: bool = False
    besides: str = ""  # a value allowed beside the numbers, said after the range

    def holds(self, value: object) -> bool:
        """Whether `value` is a number (not a boolean, not NaN) inside the range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def says(self, shown: str) -> str:
        """`must be between 1 and 86400 (seconds), not 1e+300`; `shown` is the value."""
        return f"must be {self.bounds()}{self.besides}, not {shown}"

    def bounds(self) -> str:
        """The range in words: `between 1 and 86400 (seconds)`."""
        low, high = self._shown(self.low), self._shown(self.high)
        unit = f" ({self.unit})" if self.unit else ""
        if self.low_open or self.high_open:
            lower = f"{self._above} {low}" if self.low_open else f"at least {low}"
            upper = f"less than {high}" if self.high_open else f"at most {high}"
            return f"{lower} and {upper}{unit}"
        return f"between {low} and {high}{unit}"

    def interval(self) -> str:
        """The range as the example config writes it: `[1, 86400]`, `(0, 1]`."""
        low, high = self._shown(self.low), self._shown(self.high)
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    _above = "more than"

    def _shown(self, bound: float) -> str:
        return number(bound)


@dataclass(frozen=True, slots=True)
class AgeRange(Range):
    """The range of an age (`30d`, `12h`): bounds in seconds, written as ages."""

    _above = "longer than"

    def _shown(self, bound: float) -> str:
        return age(bound)


# Every numeric setting, as "section.key". tests/test_config_ranges.py checks that no
# numeric field of the settings is missing here.
RANGES: Mapping[str, Range] = {
    "api.timeout_s": Range(0.1, 3_600, "seconds"),
    "api.max_answer_bytes": Range(1_024, 2**31, "bytes"),
    "rate.requests_per_s": Range(
        LOWEST_RATE_PER_S, 1_000_000, "requests a second", besides=' or "auto"'
    ),
    "rate.burst": Range(1, 10_000, "requests"),
    "rate.decrease_factor": Range(0, 1, "a factor", low_open=True, high_open=True),
    "rate.increase_after_s": Range(0.1, DAY_S, "seconds"),
    "workers.concurrency": Range(1, 1_024, "requests in flight"),
    "workers.max_attempts": Range(1, 1_000, "attempts"),
    "workers.backoff_base_s": Range(0.01, DAY_S, "seconds"),
    "workers.backoff_max_s": Range(0.01, DAY_S, "seconds"),
    "workers.lease_s": Range(1, DAY_S, "seconds"),
    "workers.drain_deadline_s": Range(0.1, 3_600, "seconds"),
    "quota.limit": Range(1, 1_000_000_000, "tweet IDs"),
    "quota.window_s": Range(1, YEAR_S, "seconds"),
    "quota.original_tweets_at": Range(0, 1, "a share of quota.limit", low_open=True),
    "quota.no_twitter_at": Range(0, 1, "a share of quota.limit", low_open=True),
    "log.progress_every_s": Range(0.01, DAY_S, "seconds"),
    "schedule.discover_max_pages": Range(0, 100_000, "pages; 0: every page"),
}

# The ages of [schedule], in seconds. A period under a second would keep the store busy
# scanning rather than harvesting; no snapshot is older than ten years.
AGE_RANGES: Mapping[str, AgeRange] = {
    "schedule.discover_every": AgeRange(1, YEAR_S, ""),
    "schedule.refresh_every": AgeRange(1, YEAR_S, ""),
    "schedule.refresh_older_than": AgeRange(0, 10 * YEAR_S, "", low_open=True),
    "schedule.export_every": AgeRange(1, YEAR_S, ""),
}

# Whatever it is for, an age beyond this is a typing slip (and past it, the clock's
# arithmetic overflows): `parse_age` refuses it.
LONGEST_AGE_S = 100 * YEAR_S


def check_ranges(values: Mapping[str, object]) -> None:
    """Refuse the first value of `values` ("section.key" to value) outside its range
    in `RANGES`; a key without a range, and None ("auto"), pass."""
    for key, value in values.items():
        allowed = RANGES.get(key)
        if allowed is not None and value is not None and not allowed.holds(value):
            raise ConfigError(f"{key} {allowed.says(shown(value))}")


def check_age_range(key: str, text: str, seconds: float) -> None:
    """Refuse an age of `[schedule]` outside its range; `text` is the age as written."""
    allowed = AGE_RANGES[key]
    if not allowed.holds(seconds):
        raise ConfigError(f"{key} {allowed.says(repr(text))}")


def shown(value: object) -> str:
    """A value as the message shows it: numbers as `number` writes them."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    return number(value)


def number(value: float) -> str:
    """Whole numbers in plain digits (86400, 1000000), others as %g (0.01, 1e+300)."""
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


_AGE_UNITS = (("d", DAY_S), ("h", 3_600), ("m", 60))


def age(seconds: float) -> str:
    """Seconds as an age in the largest unit that divides them: 86400 is 1d, 90 is 90s."""
    for unit, size in _AGE_UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{number(seconds / size)}{unit}"
    return f"{number(seconds)}s"
