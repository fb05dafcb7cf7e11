"""One answer (of the fetch call, the counts call, a discovery page or the dump), read
into the rows of the derived tables.

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
  own names, in `counts` and `mentions` alike;
- the counts call has no `counts` section but `cited_by_<name>_count` fields (accounts
  per source), read into `counts` under the fetch call's source names.
The loose values are read by `loose`, the posts by `posts`.
A body that is not a JSON object gives no snapshot (a 404's text, or damage).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from harvester.store.loose import count, first, mapping, number, text, timestamp
from harvester.store.posts import MentionRow, TweetRow, read_posts, stored_author

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
# The counts call's `cited_by_<name>_count` fields count accounts (unique users) per
# source; they are stored under the source names the fetch call's `counts` uses, so one
# query reads both. A name not listed keeps its own (a source added later).
CITED_BY_SOURCES = {
    "tweeters": "twitter", "msm": "news", "feeds": "blogs", "fbwalls": "facebook",
    "gplus": "googleplus", "rdts": "reddit", "videos": "video", "policies": "policy",
    "patents": "patent", "guidelines": "guideline", "podcasts": "podcast",
    "peer_review_sites": "peer_reviews", "qna": "q&a", "qs": "q&a", "forums": "forum",
    "pinners": "pinterest",
}  # fmt: skip
CITED_BY_TOTALS = ("posts", "accounts")  # all sources together: not a source's counts
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


class Snapshot(NamedTuple):
    output: OutputRow
    counts: list[CountRow]
    readers: list[ReaderRow]
    contexts: list[ContextRow]
    tweets: list[TweetRow]  # plain tweets (an ID and a tweeter ID)
    mentions: list[MentionRow]  # every other post


class Answer(NamedTuple):
    """A stored 200 answer, to be derived."""

    response_id: int
    job_id: int
    fetched_at: str
    mode: str
    body: bytes


Row = tuple[Any, ...]


class AnswerRows(NamedTuple):
    """One answer's rows, in the derived tables' column order; plain tuples, which
    `derive_pool`'s workers send back cheaply."""

    response_id: int
    output: Row  # `outputs` but `is_latest`, which the store decides
    counts: list[Row]
    readers: list[Row]
    contexts: list[Row]  # score_context
    tweets: list[Row]  # job, tweet ID, tweeter ID as stored (`stored_author`), first snapshot
    posts: list[Row]  # job, MentionRow..., first snapshot


def rows_of(answer: Answer, snapshot: Snapshot) -> AnswerRows:
    response_id, job_id = answer.response_id, answer.job_id
    return AnswerRows(
        response_id,
        (response_id, job_id, *snapshot.output, answer.fetched_at, answer.mode),
        [(response_id, job_id, *row) for row in snapshot.counts],
        [(response_id, job_id, *row) for row in snapshot.readers],
        [(response_id, job_id, *row) for row in snapshot.contexts],
        [
            (job_id, tweet_id, stored_author(tweeter_id), response_id)
            for tweet_id, tweeter_id in snapshot.tweets
        ],
        [(job_id, *_url_kept_once(row), response_id) for row in snapshot.mentions],
    )


def _url_kept_once(row: MentionRow) -> MentionRow:
    """A post's URL as `posts` stores it: '' when it is the post's key too (the
    `mentions` view gives it back), so a URL-keyed post holds its URL once."""
    return row._replace(url="") if row.url == row.post_key else row


class Read(NamedTuple):
    rows: list[AnswerRows]  # of the answers with rows to write
    problems: list[str]  # why each answer that failed to read did


def read_answers(answers: Sequence[Answer]) -> Read:
    """Each answer's rows (`derive_pool` runs this in other processes too)."""
    rows: list[AnswerRows] = []
    problems: list[str] = []
    for answer in answers:
        try:
            snapshot = snapshot_of(answer.body)
            if snapshot is not None:
                rows.append(rows_of(answer, snapshot))
        except Exception as error:
            problems.append(problem_of(answer, error))
    return Read(rows, problems)


def problem_of(answer: Answer, error: Exception) -> str:
    return f"response {answer.response_id}: {type(error).__name__}: {error}"


# The top level with every value left as raw bytes: one pass checks the syntax of the
# whole document, and `posts` (most of its bytes) is read by `posts.read_posts`
# without turning each tweet into a dict first.
_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])


def snapshot_of(body: bytes) -> Snapshot | None:
    """The derived rows of one answer, or None if it is not a JSON object (in UTF-8,
    every string a valid one)."""
    try:
        top = _TOP_LEVEL.decode(body)
        if not body.isascii():
            body.decode("utf-8")  # raw values are not checked for it
        posts = top.pop("posts", None)
        document = {name: msgspec.json.decode(raw) for name, raw in top.items()}
        tweets, mentions = read_posts(posts)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    citation = mapping(document.get("citation"))
    score_section = mapping(document.get("altmetric_score"))
    counts = mapping(document.get("counts"))
    return Snapshot(
        output=_output(document, citation, score_section, counts),
        counts=list(_counts(counts) if counts else _cited_by_counts(document)),
        readers=list(_readers(mapping(counts.get("readers") or document.get("readers")))),
        contexts=list(
            _contexts(mapping(score_section.get("context_for_score") or document.get("context")))
        ),
        tweets=tweets,
        mentions=mentions,
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
        doi=text(identifiers.get("doi"), lower=True),
        pmid=text(identifiers.get("pmid")),
        arxiv_id=text(identifiers.get("arxiv_id")),
        identifiers=json.dumps(identifiers, ensure_ascii=False, sort_keys=True),
        title=text(field("title")),
        journal=text(field("journal")),
        pubdate=timestamp(field("pubdate") or field("published_on")),
        output_type=text(field("type")),
        score=number(document.get("score") if score is None else score),
        score_history=json.dumps(history, sort_keys=True) if isinstance(history, dict) else None,
        posts_count=count(
            mapping(counts.get("total")).get("posts_count")
            if counts
            else document.get("cited_by_posts_count")
        ),
        first_seen_at=timestamp(field("first_seen_on") or field("added_on")),
    )


def _counts(counts: Mapping[str, Any]) -> Iterator[CountRow]:
    for source, entry in counts.items():
        if source in NOT_SOURCES or not isinstance(entry, dict):
            continue
        yield CountRow(
            str(source), count(entry.get("posts_count")), count(entry.get("unique_users_count"))
        )


def _cited_by_counts(document: Mapping[str, Any]) -> Iterator[CountRow]:
    """A counts answer's `cited_by_<name>_count` fields, as per-source counts of
    accounts (the counts call gives no post counts per source)."""
    for key, value in document.items():
        if not (key.startswith("cited_by_") and key.endswith("_count")):
            continue
        name = key[len("cited_by_") : -len("_count")]
        if name and name not in CITED_BY_TOTALS:
            yield CountRow(CITED_BY_SOURCES.get(name, name), None, count(value))


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
                first(entry, "sample_size", "count", "total_number_of_other_articles")
            ),
            rank_type=text(entry.get("rank_type")),
        )
