"""Reading `posts`: the typed one-pass read of tweet lists in the common shape must
give exactly the rows the general, post-by-post read gives."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import msgspec
import pytest

from harvester.store.posts import MentionRow, read_posts, stored_author
from harvester.store.upgrade_mentions import compact_author

COMMON = {"citation_ids": [7], "author": {"tweeter_id": "1755973004"}, "tweet_id": "502762406"}
# In a list, this one sends the whole list the general way (the typed read refuses a
# URL); it is a mention of its own, so it never hides a difference in the others.
FORCES_GENERAL_URL = "https://twitter.com/x/status/1"
FORCES_GENERAL = {"tweet_id": "1", "url": FORCES_GENERAL_URL}

VARIANTS: list[Any] = [
    COMMON,
    {"tweet_id": "0123", "author": {"tweeter_id": "042"}},
    {"tweet_id": " 123 ", "author": {"tweeter_id": " 7 "}},
    {"tweet_id": "1e3"},
    {"tweet_id": "1.0", "author": None},
    {"tweet_id": "1.5", "author": {}},
    {"tweet_id": 5, "author": {"tweeter_id": 42}},
    {"tweet_id": 5.0, "author": {"tweeter_id": "x"}},
    {"tweet_id": "-5"},
    {"tweet_id": "99999999999999999999"},
    {"tweet_id": "9223372036854775807", "author": "Someone"},
    {"tweet_id": "12", "author": {"name": "N", "tweeter_id": "1"}},
    {"tweet_id": "13", "author": {"id_on_source": "x"}},
    {"tweet_id": "14", "title": "A tweet with a title"},
    {"tweet_id": True},
    {"tweet_id": None, "author": {"tweeter_id": "1"}},
    {"author": {"tweeter_id": "1"}},
    {"tweet_id": "15", "author": {"tweeter_id": True}},
    "not a post",
]


def posts_of(section: dict[str, Any]) -> msgspec.Raw:
    return msgspec.Raw(json.dumps(section).encode())


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: json.dumps(v)[:60])
def test_the_one_pass_read_of_tweets_gives_the_general_reads_rows(variant: Any) -> None:
    alone = read_posts(posts_of({"twitter": [variant, COMMON]}))
    general = read_posts(posts_of({"twitter": [variant, COMMON, FORCES_GENERAL]}))
    forced = MentionRow("twitter", "1", FORCES_GENERAL_URL, None, None, None, None, 1)
    assert general[1][-1] == forced
    assert alone == (general[0], general[1][:-1])


def test_tweets_in_the_common_shape_are_read_in_one_pass_into_id_pairs() -> None:
    tweets, mentions = read_posts(posts_of({"twitter": [COMMON, {"tweet_id": "9"}]}))
    assert tweets == [(502762406, "1755973004"), (9, None)]
    assert mentions == []


def test_other_sources_and_unusual_tweets_are_mentions() -> None:
    url = "https://blog.example/a"
    blog = {"url": url, "title": " A post ", "posted_on": 0}
    tweets, mentions = read_posts(
        posts_of({"blogs": [blog], "twitter": [{"tweet_id": "14", "title": "T"}]})
    )
    assert tweets == []
    assert mentions == [
        MentionRow("blogs", url, url, "A post", None, None, None, None),
        MentionRow("twitter", "14", None, "T", None, None, None, 14),
    ]


@pytest.mark.parametrize("section", [b"[]", b"null", b'"text"', b'{"twitter": "x"}'])
def test_a_posts_section_of_another_shape_gives_nothing(section: bytes) -> None:
    assert read_posts(msgspec.Raw(section)) == ([], [])


TWEETER_IDS = [
    *("42", "0", "-42", "042", "-0", " 42", "42 ", "+42", "4_2", "1e3", "42.0", ""),
    *("\u0664\u0662", "x", "9223372036854775807", "9223372036854775808"),
    *("-9223372036854775808", "-9223372036854775809", "1" * 5000, None),
]


@pytest.mark.parametrize("tweeter_id", TWEETER_IDS)
def test_a_tweeter_id_is_stored_as_the_upgrades_sql_stores_it(tweeter_id: str | None) -> None:
    """`stored_author` (run where answers are read) and `compact_author` (the m006
    upgrade's SQL) keep the same value of the same text, and it reads back as that
    text, in a real SQLite column without a declared type like `tweets.author_id`."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (by_sql, by_python)")
    conn.execute(
        f"INSERT INTO t VALUES ({compact_author(':by_sql')}, :by_python)",
        {"by_sql": tweeter_id, "by_python": stored_author(tweeter_id)},
    )
    [(by_sql, by_python, type_sql, type_python, text)] = conn.execute(
        "SELECT by_sql, by_python, typeof(by_sql), typeof(by_python), CAST(by_python AS TEXT)"
        " FROM t"
    ).fetchall()
    conn.close()
    assert (by_python, type_python) == (by_sql, type_sql)
    assert text == tweeter_id
