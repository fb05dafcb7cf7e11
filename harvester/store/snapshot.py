"""One answer of the fetch API, read into the rows of the derived tables.

Pure functions: bytes in, rows out; the store writes them. The API's documented shape
is the guide, but real answers bend it, and every bend seen is read here rather than
dropped:
- numbers arrive as numbers, as strings ("95") or as -1 for "unknown" (kept as NULL);
- the score and its history sit in `altmetric_score` (`score`, `score_history`,
  `context_for_score`) or, in older answers, at the top (`score`, `history`, `context`
  with `journal`/`similar_age_journal_3m`, `count`, `pct`, `higher_than`);
- bibliographic fields sit in `citation` or at the top, dates as ISO text or as Unix
  seconds (`published_on`, `added_on`);
- sources the API adds later (bluesky, wikipedia, podcast, ...) are kept under their
  own names, in `counts` and `mentions` alike.
A body that is not a JSON object gives no snapshot (a 404's text, or damage).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

IDENTIFIER_FIELDS = (
    "doi",
    "pmid",
    "pmc",
    "arxiv_id",
    "ads_id",
    "handle",
    "handles",
    "isbn",
    "isbns",
    "ssrn",
    "repec_id",
    "uri",
    "urn",
    "nct_id",
    "dimensions_publication_id",
)
NOT_SOURCES = ("readers", "total")  # keys of `counts` that are not a source's counts
# Older answers name two contexts differently; the fetch API's names are kept.
CONTEXT_NAMES = {"journal": "this_journal", "similar_age_journal_3m": "similar_age_this_journal_3m"}


class OutputRow(NamedTuple):
    altmetric_id: int | None
    doi: str | None
    pmid: str | None
    arxiv_id: str | None
    identifiers: str  # JSON object of every identifier field found
    title: str | None
    journal: str | None
    pubdate: str | None
    output_type: str | None
    score: float | None
    score_history: str | None  # JSON object, as the API gave it
    posts_count: int | None
    first_seen_at: str | None


class CountRow(NamedTuple):
    source: str
    posts_count: int | None
    unique_users_count: int | None


class ReaderRow(NamedTuple):
    reference_manager: str
    readers: int | None


class ContextRow(NamedTuple):
    context: str
    rank: int | None
    percentile: float | None
    higher_than: int | None
    mean: float | None
    median: float | None
    sample_size: int | None
    rank_type: str | None


class MentionRow(NamedTuple):
    source: str
    post_key: str  # the tweet ID, else the URL, else a digest of the post
    url: str | None
    title: str | None
    posted_on: str | None
    author_name: str | None
    author_id: str | None
    tweet_id: int | None


class Snapshot(NamedTuple):
    output: OutputRow
    counts: list[CountRow]
    readers: list[ReaderRow]
    contexts: list[ContextRow]
    mentions: list[MentionRow]


def snapshot_of(body: bytes) -> Snapshot | None:
    """The derived rows of one answer, or None if it is not a JSON object."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    citation = _mapping(document.get("citation"))
    score_section = _mapping(document.get("altmetric_score"))
    counts = _mapping(document.get("counts"))
    return Snapshot(
        output=_output(document, citation, score_section, counts),
        counts=list(_counts(counts)),
        readers=list(_readers(_mapping(counts.get("readers") or document.get("readers")))),
        contexts=list(
            _contexts(_mapping(score_section.get("context_for_score") or document.get("context")))
        ),
        mentions=list(_mentions(_mapping(document.get("posts")))),
    )


def _output(
    document: dict[str, Any],
    citation: Mapping[str, Any],
    score_section: Mapping[str, Any],
    counts: Mapping[str, Any],
) -> OutputRow:
    def field(name: str) -> Any:
        value = citation.get(name)
        return document.get(name) if value in (None, "") else value

    identifiers = {name: value for name in IDENTIFIER_FIELDS if (value := field(name))}
    history = score_section.get("score_history") or document.get("history")
    score = score_section.get("score")
    return OutputRow(
        altmetric_id=count(document.get("altmetric_id")),
        doi=_text(identifiers.get("doi"), lower=True),
        pmid=_text(identifiers.get("pmid")),
        arxiv_id=_text(identifiers.get("arxiv_id")),
        identifiers=json.dumps(identifiers, ensure_ascii=False, sort_keys=True),
        title=_text(field("title")),
        journal=_text(field("journal")),
        pubdate=_timestamp(field("pubdate") or field("published_on")),
        output_type=_text(field("type")),
        score=number(document.get("score") if score is None else score),
        score_history=json.dumps(history, sort_keys=True) if isinstance(history, dict) else None,
        posts_count=count(_mapping(counts.get("total")).get("posts_count")),
        first_seen_at=_timestamp(field("first_seen_on") or field("added_on")),
    )


def _counts(counts: Mapping[str, Any]) -> Iterator[CountRow]:
    for source, entry in counts.items():
        if source in NOT_SOURCES or not isinstance(entry, dict):
            continue
        yield CountRow(
            str(source), count(entry.get("posts_count")), count(entry.get("unique_users_count"))
        )


def _readers(readers: Mapping[str, Any]) -> Iterator[ReaderRow]:
    for manager, value in readers.items():
        if not isinstance(value, dict | list):
            yield ReaderRow(str(manager), count(value))


def _contexts(contexts: Mapping[str, Any]) -> Iterator[ContextRow]:
    seen: set[str] = set()
    for name, entry in contexts.items():
        context = CONTEXT_NAMES.get(name, str(name))
        if not isinstance(entry, dict) or context in seen:
            continue  # an answer with both `journal` and `this_journal` keeps the first
        seen.add(context)
        percentile = entry.get("percentile", entry.get("pct"))
        yield ContextRow(
            context=context,
            rank=count(entry.get("rank")),
            percentile=number(percentile),
            higher_than=count(entry.get("this_scored_higher_than", entry.get("higher_than"))),
            mean=number(entry.get("mean")),
            median=number(entry.get("median")),
            sample_size=count(
                _first(entry, "sample_size", "count", "total_number_of_other_articles")
            ),
            rank_type=_text(entry.get("rank_type")),
        )


def _mentions(posts: Mapping[str, Any]) -> Iterator[MentionRow]:
    for source, items in posts.items():
        if not isinstance(items, list):
            continue
        read = _tweet if source == "twitter" else _mention
        for post in items:
            if isinstance(post, dict):
                yield read(str(source), post)


_TWEET_KEYS = frozenset(("tweet_id", "author", "citation_ids"))


def _tweet(source: str, post: dict[str, Any]) -> MentionRow:
    """Tweets are most mentions and look alike (an ID and a tweeter ID): read the
    common shape directly, anything else the general way."""
    raw_id, author = post.get("tweet_id"), post.get("author")
    tweet_id = count(raw_id) if type(raw_id) is str else None
    if tweet_id is None or not post.keys() <= _TWEET_KEYS:
        return _mention(source, post)
    tweeter = author.get("tweeter_id") if type(author) is dict else None
    return MentionRow(
        source,
        str(tweet_id),
        None,
        None,
        None,
        None,
        None if tweeter is None else str(tweeter),
        tweet_id,
    )


def _mention(source: str, post: dict[str, Any]) -> MentionRow:
    author = post.get("author")
    if isinstance(author, dict):
        name = author.get("name")
        author_id = _first(author, "tweeter_id", "id_on_source")
    else:
        name, author_id = author, None
    tweet_id = count(post.get("tweet_id"))
    raw_tweet_id = _text(post.get("tweet_id"))
    url = _text(post.get("url"))
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
        title=_text(post.get("title")),
        posted_on=_timestamp(post.get("posted_on")),
        author_name=_text(name),
        author_id=_text(author_id),
        tweet_id=tweet_id,
    )


# -- the API's loose values --------------------------------------------------------------


MAX_INTEGER = 2**63 - 1  # SQLite's largest integer


def count(value: Any) -> int | None:
    """A non-negative whole number that fits SQLite, from a number or numeric text;
    None for -1 (the API's "unknown"), booleans, and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            value = int(text)
        else:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, float):
        if not 0 <= value <= MAX_INTEGER:  # NaN fails this too
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_INTEGER:
        return value
    return None


def number(value: Any) -> float | None:
    """A non-negative number from a number or numeric text; None otherwise (and for -1)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return result if 0 <= result < float("inf") else None


def _timestamp(value: Any) -> str | None:
    """ISO 8601 text as the API wrote it, or Unix seconds turned into it (UTC)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _text(value: Any, *, lower: bool = False) -> str | None:
    if isinstance(value, list):  # handles, isbns: the first names the output
        value = value[0] if value else None
    if value is None or isinstance(value, dict | bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.lower() if lower else text


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(entry: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if entry.get(name) is not None:
            return entry[name]
    return None
