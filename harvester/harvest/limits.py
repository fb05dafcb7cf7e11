"""What an answer's headers say of the limits: the allowance left in the hour and the
day, the tweet-ID quota, and Retry-After (seconds or an HTTP date, bounded: a pause of
days or a negative one is nobody's intent). Read once per answer by `client.classify`;
most answers carry none of them and share one empty record."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 86_400.0  # a longer (or absurd) Retry-After is read as a day


@dataclass(frozen=True, slots=True)
class LimitHeaders:
    """The rate and quota headers of one answer (None where absent or unreadable)."""

    hourly_remaining: int | None = None
    daily_remaining: int | None = None
    tweet_limit: int | None = None
    tweet_remaining: int | None = None
    retry_after_s: float | None = None
    retry_after_note: str = ""  # why a Retry-After was ignored or bounded ("" if it was not)
    hourly_limit: int | None = None
    daily_limit: int | None = None


NO_LIMITS = LimitHeaders()  # shared by every answer without limit headers


_LIMIT_HEADERS = (
    "x-hourlyratelimit-limit",
    "x-hourlyratelimit-remaining",
    "x-dailyratelimit-limit",
    "x-dailyratelimit-remaining",
    "x-tweetidratelimit-limit",
    "x-tweetidratelimit-remaining",
    "retry-after",
)


def read_limit_headers(headers: Mapping[str, str]) -> LimitHeaders:
    """The limit headers; `headers` has its names lowercased (or is case-insensitive).
    An answer with none of them, the common case, shares one empty record."""
    if not any(name in headers for name in _LIMIT_HEADERS):
        return NO_LIMITS
    retry_after_s, retry_after_note = read_retry_after(headers.get("retry-after"))
    return LimitHeaders(
        hourly_remaining=_int_header(headers, "x-hourlyratelimit-remaining"),
        daily_remaining=_int_header(headers, "x-dailyratelimit-remaining"),
        tweet_limit=_int_header(headers, "x-tweetidratelimit-limit"),
        tweet_remaining=_int_header(headers, "x-tweetidratelimit-remaining"),
        retry_after_s=retry_after_s,
        retry_after_note=retry_after_note,
        hourly_limit=_int_header(headers, "x-hourlyratelimit-limit"),
        daily_limit=_int_header(headers, "x-dailyratelimit-limit"),
    )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def read_retry_after(value: str | None, now_s: float | None = None) -> tuple[float | None, str]:
    """Retry-After as (seconds, note): the note is "" for a sane value, else what was
    wrong with it, for the log. A pause of days or a negative one is nobody's intent."""
    if value is None:
        return None, ""
    text = value.strip()
    if re.fullmatch(r"[+-]?[0-9]{1,12}(\.[0-9]+)?", text):
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None, "unreadable"
        if when.tzinfo is None:
            return None, "unreadable"
        seconds = when.timestamp() - (time.time() if now_s is None else now_s)
        if seconds < 0:
            return 0.0, ""  # a date already past: retry now, as the server meant
    if seconds < 0:
        return None, "negative"
    if seconds > MAX_RETRY_AFTER_S:
        return MAX_RETRY_AFTER_S, "capped at a day"
    return seconds, ""
