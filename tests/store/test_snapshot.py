"""Reading answers into derived rows, including the quirks real answers carry."""

from __future__ import annotations

import json

import pytest

from harvester.store.loose import count, number
from harvester.store.posts import MentionRow
from harvester.store.snapshot import ContextRow, CountRow, ReaderRow, snapshot_of

# An answer in the older, flatter shape, with every quirk seen in the wild: numbers as
# strings and -1, `history` instead of `score_history`, top-level `context` with the
# older names and fields, dates in Unix seconds, sources the documentation never
# listed, a post without a URL and an author given as plain text.
QUIRKY = {
    "altmetric_id": "241939",
    "title": " Quirks of the flat answer ",
    "journal": "Journal of Quirks",
    "doi": "10.1234/QUIRK.1",
    "pmid": 123456,
    "isbns": ["9780306406157"],
    "handles": [],
    "published_on": 1388534400,
    "added_on": 1388620800,
    "type": "article",
    "score": "12.5",
    "history": {"1y": 10, "at": 12.5},
    "context": {
        "all": {"count": 5000, "mean": 6.1, "rank": 100, "pct": 98, "higher_than": 4900},
        "journal": {"count": "40", "mean": "2.5", "rank": "3", "pct": 93, "higher_than": 37},
        "similar_age_journal_3m": {"count": -1, "mean": None, "rank": 1, "pct": "x"},
        "broken": "not a context",
    },
    "readers": {"mendeley": "95", "citeulike": -1, "connotea": "0", "nested": {"x": 1}},
    "counts": {
        "twitter": {"posts_count": "7", "unique_users_count": -1},
        "bluesky": {"posts_count": 2, "unique_users_count": 2},
        "q&a": {"posts_count": 1},
        "total": {"posts_count": "11"},
        "weird": 5,
    },
    "posts": {
        "twitter": [
            {"tweet_id": "1234567890123456789", "author": {"tweeter_id": "42"}},
            {"tweet_id": 998877, "author": {"tweeter_id": 43}},
        ],
        "bluesky": [
            {
                "url": "https://bsky.app/profile/x/post/1",
                "title": "A skeet",
                "posted_on": 1700000000,
                "author": {"name": "Someone", "id_on_source": "did:plc:x"},
            }
        ],
        "wikipedia": [{"title": "Quirk (article)", "author": "Wiki Editor"}],
        "policy": "not a list",
        "q&a": ["not a post"],
    },
}


def test_a_quirky_answer_reads_into_clean_rows() -> None:
    snapshot = snapshot_of(json.dumps(QUIRKY).encode())
    assert snapshot is not None
    output = snapshot.output
    assert output.altmetric_id == 241939
    assert output.doi == "10.1234/quirk.1"  # lowercased like the job's identifier
    assert output.pmid == "123456"
    assert json.loads(output.identifiers) == {
        "doi": "10.1234/QUIRK.1",
        "pmid": 123456,
        "isbns": ["9780306406157"],
    }
    assert output.title == "Quirks of the flat answer"
    assert output.journal == "Journal of Quirks"
    assert output.pubdate == "2014-01-01T00:00:00+00:00"
    assert output.first_seen_at == "2014-01-02T00:00:00+00:00"
    assert output.output_type == "article"
    assert output.score == 12.5
    assert json.loads(output.score_history or "") == {"1y": 10, "at": 12.5}
    assert output.posts_count == 11

    assert snapshot.counts == [
        CountRow("twitter", 7, None),
        CountRow("bluesky", 2, 2),  # a source the docs never listed, kept
        CountRow("q&a", 1, None),
    ]
    assert snapshot.readers == [
        ReaderRow("mendeley", 95),
        ReaderRow("citeulike", None),  # -1: unknown
        ReaderRow("connotea", 0),
    ]
    assert snapshot.contexts == [
        ContextRow("all", 100, 98.0, 4900, 6.1, None, 5000, None),
        ContextRow("this_journal", 3, 93.0, 37, 2.5, None, 40, None),
        ContextRow("similar_age_this_journal_3m", 1, None, None, None, None, None, None),
    ]
    # a numeric tweet ID (not the API's text) is read the general way, to the same row
    assert snapshot.tweets == [(1234567890123456789, "42"), (998877, "43")]
    skeet, wiki = snapshot.mentions
    assert skeet == MentionRow(
        "bluesky",
        "https://bsky.app/profile/x/post/1",
        "https://bsky.app/profile/x/post/1",
        "A skeet",
        "2023-11-14T22:13:20+00:00",
        "Someone",
        "did:plc:x",
        None,
    )
    assert wiki.source == "wikipedia" and wiki.post_key.startswith("sha1:")
    assert (wiki.title, wiki.author_name, wiki.url) == ("Quirk (article)", "Wiki Editor", None)
    # the same post read twice gets the same key: a re-fetch updates, not duplicates
    again = snapshot_of(json.dumps(QUIRKY).encode())
    assert again is not None and again.mentions[1].post_key == wiki.post_key


def test_the_fetch_shape_reads_from_its_sections() -> None:
    answer = {
        "altmetric_id": 7,
        "citation": {
            "title": "Nested",
            "journal": "J",
            "doi": "10.1/ABC",
            "pubdate": "2020-05-01T00:00:00+00:00",
            "first_seen_on": "2020-05-02T10:00:00+00:00",
        },
        "altmetric_score": {
            "score": 3.25,
            "score_history": {"at": 3.25},
            "context_for_score": {
                "this_journal": {
                    "rank": 2,
                    "mean": 1.5,
                    "median": 1,
                    "sample_size": 10,
                    "this_scored_higher_than": 8,
                    "this_scored_higher_than_pct": 80,
                    "percentile": 79,
                    "rank_type": "exact",
                }
            },
        },
        "counts": {"readers": {"mendeley": 4}, "news": {"posts_count": 1, "unique_users_count": 1}},
        "title": "the top-level title loses to citation's",
    }
    snapshot = snapshot_of(json.dumps(answer).encode())
    assert snapshot is not None
    assert (snapshot.output.title, snapshot.output.doi, snapshot.output.score) == (
        "Nested",
        "10.1/abc",
        3.25,
    )
    assert snapshot.output.pubdate == "2020-05-01T00:00:00+00:00"
    assert snapshot.contexts == [ContextRow("this_journal", 2, 79.0, 8, 1.5, 1.0, 10, "exact")]
    assert snapshot.readers == [ReaderRow("mendeley", 4)]
    assert snapshot.counts == [CountRow("news", 1, 1)]


def test_a_section_filtered_answer_gives_a_sparse_row() -> None:
    snapshot = snapshot_of(b'{"altmetric_id": 9, "counts": {"total": {"posts_count": 0}}}')
    assert snapshot is not None
    assert snapshot.output.altmetric_id == 9 and snapshot.output.title is None
    assert snapshot.output.posts_count == 0
    assert (snapshot.counts, snapshot.readers, snapshot.contexts) == ([], [], [])
    assert (snapshot.tweets, snapshot.mentions) == ([], [])


@pytest.mark.parametrize("body", [b"Not Found", b"[1, 2]", b'{"cut', b"", b"null"])
def test_what_is_not_a_json_object_gives_no_snapshot(body: bytes) -> None:
    assert snapshot_of(body) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (95, 95),
        ("95", 95),
        (" 7 ", 7),
        (3.0, 3),
        ("4.7", 4),
        (-1, None),
        ("-1", None),
        (True, None),
        (None, None),
        ("many", None),
        ([], None),
        (float("nan"), None),
    ],
)
def test_count_reads_the_apis_loose_numbers(value: object, expected: int | None) -> None:
    assert count(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12.5, 12.5), ("12.5", 12.5), (0, 0.0), (-1, None), ("x", None), (False, None)],
)
def test_number_reads_the_apis_loose_numbers(value: object, expected: float | None) -> None:
    assert number(value) == expected


# The counts call's answer: identity, score and context at the top, and accounts per
# source as `cited_by_<name>_count` (the provider's documented fields).
COUNTS_ANSWER = {
    "title": "A counted output",
    "doi": "10.1234/Counted",
    "pmid": "31234567",
    "altmetric_id": 241939,
    "journal": "Journal of Counts",
    "published_on": 1388534400,
    "added_on": 1388620800,
    "score": 31.5,
    "history": {"1d": 0, "1y": 30, "at": 31.5},
    "context": {
        "all": {"count": 9000, "mean": 6.0, "rank": 120, "pct": 98, "higher_than": 8880},
    },
    "cited_by_tweeters_count": 12,
    "cited_by_msm_count": "2",
    "cited_by_feeds_count": 1,
    "cited_by_peer_review_sites_count": 1,
    "cited_by_brand_new_count": 3,
    "cited_by_posts_count": 21,
    "cited_by_accounts_count": 19,
    "readers": {"mendeley": "40", "citeulike": 0, "connotea": 0},
    "readers_count": 40,
}


def test_a_counts_answer_fills_counts_under_the_fetch_calls_source_names() -> None:
    snapshot = snapshot_of(json.dumps(COUNTS_ANSWER).encode())
    assert snapshot is not None
    assert sorted(snapshot.counts) == [
        CountRow("blogs", None, 1),
        CountRow("brand_new", None, 3),
        CountRow("news", None, 2),
        CountRow("peer_reviews", None, 1),
        CountRow("twitter", None, 12),
    ]
    output = snapshot.output
    assert (output.altmetric_id, output.doi, output.pmid) == (241939, "10.1234/counted", "31234567")
    assert output.score == 31.5 and output.posts_count == 21
    assert json.loads(output.score_history or "{}") == {"1d": 0, "1y": 30, "at": 31.5}
    assert output.pubdate is not None and output.pubdate.startswith("2014-01-01")
    assert ReaderRow("mendeley", 40) in snapshot.readers
    assert [context.context for context in snapshot.contexts] == ["all"]
    assert snapshot.contexts[0].rank == 120 and snapshot.contexts[0].sample_size == 9000
    assert snapshot.tweets == [] and snapshot.mentions == []


def test_a_fetch_answer_ignores_stray_cited_by_fields() -> None:
    answer = {
        "counts": {"twitter": {"posts_count": 3, "unique_users_count": 2}},
        "cited_by_tweeters_count": 99,
    }
    snapshot = snapshot_of(json.dumps(answer).encode())
    assert snapshot is not None
    assert snapshot.counts == [CountRow("twitter", 3, 2)]
