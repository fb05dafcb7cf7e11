"""What a 200's bytes must be before they are stored: one complete JSON object in
UTF-8; and the tweet IDs it carries, which the tweet quota charges.

msgspec checks the whole document's syntax without building Python objects for it,
so a truncated or garbled body is never stored as done, at a fraction of a full
parse's cost.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Annotated

import msgspec


class _Tweet(msgspec.Struct):
    tweet_id: str | int


class _Posts(msgspec.Struct):
    twitter: list[_Tweet] = []


class _Body(msgspec.Struct):
    posts: _Posts | None = None


_MAX_KEY = 2**63 - 1


# gc=False: the decoded structs hold only ints, never a cycle, so the collector need
# not track them (tens per answer, which would otherwise set off its passes often).
class _NumericTweet(msgspec.Struct, gc=False):
    tweet_id: Annotated[int, msgspec.Meta(ge=0, le=_MAX_KEY)]


class _NumericPosts(msgspec.Struct, gc=False):
    twitter: list[_NumericTweet] = []


class _NumericBody(msgspec.Struct, gc=False):
    posts: _NumericPosts | None = None


# One pass for the common answer: msgspec checks the whole document's syntax while it
# skips every key but posts.twitter[].tweet_id, which it reads as an int within the
# ledger's range ("4273..." too, being lax). An answer of another shape takes the two
# careful passes below.
_NUMERIC_DECODER = msgspec.json.Decoder(_NumericBody, strict=False)
_TWEETS_DECODER = msgspec.json.Decoder(_Body)
_tweet_id = attrgetter("tweet_id")


def read_body(body: bytes) -> tuple[str | None, tuple[int, ...]]:
    """(why the body is not a valid JSON object, or None; the tweet IDs it carries)."""
    try:
        posts = _NUMERIC_DECODER.decode(body).posts
        ids = tuple(map(_tweet_id, posts.twitter)) if posts else ()
        if _is_utf8(body):
            return None, ids
    except msgspec.DecodeError:  # ValidationError included: the careful path decides
        pass
    problem = json_object_problem(body)
    return problem, () if problem else tweet_ids(body)


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def tweet_ids(body: bytes) -> tuple[int, ...]:
    """The tweet IDs in a fetch answer, as integers; an ID that is not a decimal number
    fitting 63 bits is folded into one by a stable hash, so it is counted once, in this
    run and every later one."""
    try:
        posts = _TWEETS_DECODER.decode(body).posts
    except msgspec.DecodeError:
        return ()
    if posts is None:
        return ()
    return tuple(_as_ledger_key(tweet.tweet_id) for tweet in posts.twitter)


def _as_ledger_key(tweet_id: str | int) -> int:
    text = str(tweet_id)
    if text.isascii() and text.isdigit() and int(text) <= _MAX_KEY:
        return int(text)
    # Not hash(): Python salts it per process, so a restart would charge the ID again.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _MAX_KEY


# Top-level keys as str, every value kept as raw bytes: msgspec still checks the whole
# document's syntax but builds no Python objects for it, ~13x faster than a full parse
# on the real mix of sizes (a few outputs carry thousands of tweets).
_OBJECT_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])


def json_object_problem(body: bytes) -> str | None:
    """Why `body` is not one complete, valid JSON object in UTF-8; None when it is."""
    try:
        _OBJECT_DECODER.decode(body)
    except msgspec.ValidationError:
        return "JSON body is not an object"
    except msgspec.DecodeError:
        return "invalid JSON body"
    if not body.isascii():
        try:
            body.decode("utf-8")  # the decoder does not check raw values for UTF-8
        except UnicodeDecodeError:
            return "JSON body is not valid UTF-8"
    return None


__all__ = ["json_object_problem", "read_body", "tweet_ids"]
