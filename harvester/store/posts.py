"""An answer's `posts` section, read into plain tweets and other mentions.

Nine posts in ten are tweets, and in the fetch API a tweet is only an ID and a
tweeter ID (plus `citation_ids`). Those are read straight into `TweetRow`s by a typed
msgspec decoder, which builds no dict per tweet; a tweet list that does not fit that
shape exactly (a URL, an author as text, an ID with spaces...) is read the general
way, post by post, and gives the same rows. Every other post becomes a `MentionRow`, keyed
by its tweet ID, else its URL, else a digest of its JSON, so a re-fetch finds it again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, NamedTuple

import msgspec

from harvester.store.loose import MAX_INTEGER, count, first, text, timestamp

# (tweet ID, tweeter ID as the API wrote it): a plain tuple, as there are millions.
# The store keeps the tweeter ID as an integer when its text is one (`stored_author`).
TweetRow = tuple[int, str | None]
_MIN_INTEGER = -(2**63)  # SQLite's smallest integer


class MentionRow(NamedTuple):
    source: str
    post_key: str  # the tweet ID, else the URL, else a digest of the post
    url: str | None
    title: str | None
    posted_on: str | None
    author_name: str | None
    author_id: str | None
    tweet_id: int | None


# A tweet ID as `loose.count` reads one; msgspec's lax mode accepts a subset of what
# count does (digits, a number, "1e3") and gives the same value for it.
_TweetId = Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)]


# gc=False: these hold only text and numbers, never a cycle, and a tweet list of
# thousands of tracked objects set off the cyclic collector again and again (it
# took three quarters of the time of reading them).
class _Author(msgspec.Struct, gc=False):
    tweeter_id: str | None = None


class _PlainTweet(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    tweet_id: _TweetId
    author: _Author | None = None
    citation_ids: msgspec.Raw = msgspec.Raw(b"null")  # skipped, not read


_SECTIONS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_PLAIN_TWEETS = msgspec.json.Decoder(list[_PlainTweet], strict=False)
_TWEET_KEYS = frozenset(("tweet_id", "author", "citation_ids"))


def read_posts(raw: msgspec.Raw | None) -> tuple[list[TweetRow], list[MentionRow]]:
    """(plain tweets, every other post) of a `posts` section; nothing if it is absent
    or not an object."""
    tweets: list[TweetRow] = []
    mentions: list[MentionRow] = []
    if raw is None:
        return tweets, mentions
    try:
        sources = _SECTIONS.decode(raw)
    except msgspec.DecodeError:
        return tweets, mentions
    for source, items in sources.items():
        plain = _plain_tweets(items) if source == "twitter" else None
        if plain is not None:
            tweets += plain
        else:
            _read_generally(source, msgspec.json.decode(items), tweets, mentions)
    return tweets, mentions


def _plain_tweets(raw: msgspec.Raw) -> list[TweetRow] | None:
    """The tweets of a list in which every one has the common shape, read in one pass
    of C; None if any differs (the list is then read the general way)."""
    try:
        items = _PLAIN_TWEETS.decode(raw)
    except msgspec.DecodeError:
        return None
    return [(item.tweet_id, item.author.tweeter_id if item.author else None) for item in items]


def stored_author(tweeter_id: str | None) -> int | str | None:
    """The tweeter ID as `tweets` keeps it: an integer when its text reads back the
    same from one ("42"; not "042", " 42", "+42" or "1e3") and fits SQLite, else the
    text as it is; the view gives back the very same text. The rule of
    `upgrade_mentions.compact_author`, which the m006 upgrade runs in SQL; here it runs
    where answers are read (in `derive`'s worker processes), where SQL took ~0.4 us a
    tweet of the one writing process."""
    if tweeter_id is None:
        return None
    try:
        number = int(tweeter_id)
    except ValueError:
        return tweeter_id
    if _MIN_INTEGER <= number <= MAX_INTEGER and str(number) == tweeter_id:
        return number
    return tweeter_id


def _read_generally(
    source: str, items: Any, tweets: list[TweetRow], mentions: list[MentionRow]
) -> None:
    if not isinstance(items, list):
        return
    for post in items:
        if not isinstance(post, dict):
            continue
        tweet = _plain_tweet(post) if source == "twitter" else None
        if tweet is not None:
            tweets.append(tweet)
        else:
            mentions.append(_mention(source, post))


def _plain_tweet(post: dict[str, Any]) -> TweetRow | None:
    """A tweet in the common shape (a tweet ID that reads as a number; an author with
    a tweeter ID; citation IDs; nothing else): its ID and its tweeter ID as given."""
    raw_id = post.get("tweet_id")
    tweet_id = count(raw_id) if type(raw_id) in (str, int, float) else None
    if tweet_id is None or not post.keys() <= _TWEET_KEYS:
        return None
    author = post.get("author")
    tweeter = author.get("tweeter_id") if type(author) is dict else None
    return tweet_id, None if tweeter is None else str(tweeter)


def _mention(source: str, post: dict[str, Any]) -> MentionRow:
    author = post.get("author")
    if isinstance(author, dict):
        name = author.get("name")
        author_id = first(author, "tweeter_id", "id_on_source")
    else:
        name, author_id = author, None
    tweet_id = count(post.get("tweet_id"))
    raw_tweet_id = text(post.get("tweet_id"))
    url = text(post.get("url"))
    if tweet_id is not None:
        key = str(tweet_id)
    elif raw_tweet_id:  # a tweet ID we cannot hold as a number still names the post
        key = raw_tweet_id
    elif url:
        key = url
    else:
        canonical = json.dumps(post, sort_keys=True, ensure_ascii=False).encode()
        key = "sha1:" + hashlib.sha1(canonical, usedforsecurity=False).hexdigest()
    return MentionRow(
        source=source,
        post_key=key,
        url=url,
        title=text(post.get("title")),
        posted_on=timestamp(post.get("posted_on")),
        author_name=text(name),
        author_id=text(author_id),
        tweet_id=tweet_id,
    )
