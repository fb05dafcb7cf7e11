"""The derived tables: each answer read into rows as it is stored, a snapshot per
fetch, the latest marked, and the raw JSON always the truth they are checked against."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import harvest_from_simulator, rows, store_answer

from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.store import Store, derived
from harvester.store.snapshot import Answer


def answer(posts: dict[str, list[dict[str, Any]]], score: float) -> bytes:
    return json.dumps(
        {"altmetric_id": 5, "altmetric_score": {"score": score}, "posts": posts}
    ).encode()


def test_a_changed_refetch_keeps_both_snapshots_and_an_identical_one_adds_no_body(
    store: Store,
) -> None:
    doi = Identifier("doi", "10.5150/history")
    tweet = {"tweet_id": "101", "author": {"tweeter_id": "1"}}
    blog = {"url": "https://blog.example/a", "title": "Old title"}
    first = store_answer(store, doi, answer({"twitter": [tweet], "blogs": [blog]}, 1.0))
    newer_blog = {**blog, "title": "New title"}
    second_body = answer({"blogs": [newer_blog], "news": [{"url": "https://n.example/1"}]}, 4.5)
    second = store_answer(store, doi, second_body)
    third = store_answer(store, doi, second_body)  # identical bytes

    assert rows(store, "SELECT count(*) FROM responses") == [(3,)]
    assert rows(store, "SELECT count(*) FROM bodies") == [(2,)]
    assert rows(store, "SELECT body_id FROM responses ORDER BY id") == [(1,), (2,), (2,)]
    assert rows(store, "SELECT response_id, score FROM outputs ORDER BY 1") == [
        (first, 1.0),
        (second, 4.5),
        (third, 4.5),
    ]
    assert rows(store, "SELECT response_id, score FROM latest_outputs") == [(third, 4.5)]
    mentions = rows(
        store,
        "SELECT source, post_key, title, first_response_id, last_response_id"
        " FROM mentions ORDER BY source",
    )
    assert mentions == [
        ("blogs", "https://blog.example/a", "New title", first, third),
        ("news", "https://n.example/1", None, second, third),
        ("twitter", "101", None, first, first),  # gone after the first snapshot
    ]


# -- derived rows against the raw JSON, for a real harvest ------------------------------


def loose(value: Any) -> Any:
    """The simulator, like the API, sends some counts as text and -1 for unknown."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None if value in (-1, "-1") else value


def expected_rows(raw: dict[str, Any]) -> dict[str, Any]:
    """What the derived tables should hold for one simulator answer, read from its JSON
    here independently of harvester.snapshot."""
    counts = raw.get("counts", {})
    score = raw.get("altmetric_score", {})
    return {
        "title": raw["citation"].get("title"),
        "journal": raw["citation"].get("journal"),
        "score": score.get("score"),
        "counts": {
            (source, loose(entry.get("posts_count")), loose(entry.get("unique_users_count")))
            for source, entry in counts.items()
            if source not in ("readers", "total")
        },
        "readers": {(name, loose(value)) for name, value in counts.get("readers", {}).items()},
        "contexts": {
            (name, entry["rank"], entry["sample_size"], entry["percentile"])
            for name, entry in score.get("context_for_score", {}).items()
        },
        "mentions": {
            (source, str(post.get("tweet_id") or post["url"]))
            for source, posts in raw.get("posts", {}).items()
            for post in posts
        },
    }


def derived_rows(store: Store, response_id: int, job_id: int) -> dict[str, Any]:
    [(title, journal, score)] = rows(
        store, f"SELECT title, journal, score FROM outputs WHERE response_id = {response_id}"
    )
    return {
        "title": title,
        "journal": journal,
        "score": score,
        "counts": set(
            rows(
                store,
                "SELECT source, posts_count, unique_users_count FROM counts"
                f" WHERE response_id = {response_id}",
            )
        ),
        "readers": set(
            rows(
                store,
                f"SELECT reference_manager, readers FROM readers WHERE response_id = {response_id}",
            )
        ),
        "contexts": set(
            rows(
                store,
                "SELECT context, rank, sample_size, percentile FROM score_context"
                f" WHERE response_id = {response_id}",
            )
        ),
        "mentions": set(
            rows(store, f"SELECT source, post_key FROM mentions WHERE job_id = {job_id}")
        ),
    }


async def test_derived_rows_match_the_raw_json_of_a_simulator_harvest(db_path: Path) -> None:
    await harvest_from_simulator(db_path, 60)
    with Store(db_path, read_only=True) as store:
        answers = rows(store, "SELECT id, job_id FROM responses WHERE http_status = 200")
        assert len(answers) >= 50
        for response_id, job_id in answers:
            raw = json.loads(store.bodies.of_response(response_id))
            assert derived_rows(store, response_id, job_id) == expected_rows(raw), response_id
        assert rows(store, "SELECT count(*) FROM outputs") == [(len(answers),)]
        sample = rows(store, "SELECT count(*) FROM mentions")[0][0]
    assert sample > 60  # the harvest carried mentions to compare


# -- what cannot be derived --------------------------------------------------------------


def test_an_answer_that_cannot_be_derived_is_still_stored_raw(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in deriving")

    body = answer({"news": [{"url": "https://n.example/2"}]}, 2.0)
    with monkeypatch.context() as patched:
        patched.setattr(derived, "insert_rows", broken)
        store.jobs.add([Identifier("doi", "10.5150/bug")])
        [job] = store.jobs.claim(1, lease_s=60)
        response = StoredResponse(200, body, "{}", "full", iso_utc(time.time()))
        result = store.record(
            [JobOutcome(job.id, job.lease_token, "done", True, response=response)]
        )
    assert result.written == 1 and "RuntimeError: a bug in deriving" in result.underived[0]
    assert rows(store, "SELECT state FROM jobs") == [("done",)]
    assert store.bodies.of_response(1) == body
    assert rows(store, "SELECT count(*) FROM outputs") == [(0,)]
    assert derived.derive_missing(store.conn, store.bodies) == (
        1,
        0,
    )  # derive tries again, and now succeeds
    assert rows(store, "SELECT score FROM outputs") == [(2.0,)]


def test_numbers_too_big_for_sqlite_are_dropped_not_fatal(store: Store) -> None:
    body = json.dumps(
        {
            "altmetric_id": 10**30,
            "counts": {"news": {"posts_count": "1e300", "unique_users_count": "²"}},
            "posts": {"twitter": [{"tweet_id": "9" * 40, "author": {"tweeter_id": "1"}}]},
        }
    ).encode()
    response_id = store_answer(store, Identifier("doi", "10.5150/huge"), body)
    assert rows(store, f"SELECT altmetric_id FROM outputs WHERE response_id = {response_id}") == [
        (None,)
    ]
    assert rows(store, "SELECT posts_count, unique_users_count FROM counts") == [(None, None)]
    assert rows(store, "SELECT post_key, tweet_id FROM mentions") == [("9" * 40, None)]


def test_the_latest_snapshot_is_the_highest_response_whatever_the_order_derived(
    store: Store,
) -> None:
    doi = Identifier("doi", "10.5150/order")
    ids = [store_answer(store, doi, answer({}, score)) for score in (1.0, 2.0, 3.0)]
    other = store_answer(store, Identifier("doi", "10.5150/other"), answer({}, 9.0))
    assert rows(store, "SELECT response_id FROM latest_outputs ORDER BY 1") == [
        (ids[2],),
        (other,),
    ]
    derived.clear_all(store.conn)
    with store.transaction() as conn:
        for response_id in (ids[2], ids[0], ids[1]):  # newest first, as a rebuild racing
            body = store.bodies.of_response(response_id)  # the daemon might meet them
            answer_of = Answer(response_id, 1, "t", "full", body)
            assert derived.derive_answers(conn, [answer_of]) == (1, [])
    assert rows(store, "SELECT response_id, is_latest FROM outputs ORDER BY 1") == [
        (ids[0], 0),
        (ids[1], 0),
        (ids[2], 1),
    ]
    assert rows(store, "SELECT response_id, score FROM latest_outputs") == [(ids[2], 3.0)]


# -- tweets and posts behind the `mentions` view ----------------------------------------


def test_tweets_are_stored_compactly_and_read_back_through_mentions_as_given(
    store: Store,
) -> None:
    tweeters = ["42", "042", "-5", " 7", "1e3", "12345678901234567890123", None]
    tweets = [
        {"tweet_id": str(100 + n), "author": {"tweeter_id": tweeter}}
        for n, tweeter in enumerate(tweeters)
    ]
    store_answer(store, Identifier("doi", "10.5150/compact"), answer({"twitter": tweets}, 1.0))
    assert rows(store, "SELECT tweet_id, typeof(author_id) FROM tweets ORDER BY 1") == [
        (100, "integer"),
        (101, "text"),  # "042" as an integer would read back as "42"
        (102, "integer"),
        (103, "text"),
        (104, "text"),
        (105, "text"),  # too big for an integer
        (106, "null"),
    ]
    assert rows(
        store, "SELECT source, post_key, author_id, tweet_id FROM mentions ORDER BY tweet_id"
    ) == [("twitter", str(100 + n), tweeter, 100 + n) for n, tweeter in enumerate(tweeters)]
    assert rows(store, "SELECT count(*) FROM posts") == [(0,)]


def test_one_answer_whose_rows_fail_leaves_the_rest_of_its_batch_derived(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_rows = derived.insert_rows

    def failing_for_tweet_3(conn: Any, answers: Any) -> None:
        if any(tweet[1] == 3 for answer in answers for tweet in answer.tweets):
            conn.execute("INSERT INTO counts VALUES (1, 1, 'half-written', 1, 1)")
            raise ValueError("refused")
        insert_rows(conn, answers)

    identifiers = [Identifier("doi", f"10.5150/batch.{n}") for n in range(5)]
    store.jobs.add(identifiers)
    jobs = store.jobs.claim(5, lease_s=60)
    outcomes = [
        JobOutcome(
            job.id,
            job.lease_token,
            "done",
            True,
            response=StoredResponse(
                200,
                answer({"twitter": [{"tweet_id": str(n)}]}, 10.0 + n),
                "{}",
                "full",
                iso_utc(time.time()),
            ),
        )
        for n, job in enumerate(jobs)
    ]
    with monkeypatch.context() as patched:
        patched.setattr(derived, "insert_rows", failing_for_tweet_3)
        result = store.record(outcomes)
    assert result.written == 5
    [problem] = result.underived
    assert "ValueError: refused" in problem
    assert rows(store, "SELECT score FROM outputs ORDER BY 1") == [
        (10.0,),
        (11.0,),
        (12.0,),
        (14.0,),
    ]
    assert rows(store, "SELECT tweet_id FROM tweets ORDER BY 1") == [(0,), (1,), (2,), (4,)]
    assert rows(store, "SELECT count(*) FROM counts") == [(0,)]  # the half-written row is gone
    assert rows(store, "SELECT count(*) FROM responses") == [(5,)]  # every answer stored raw
    assert derived.derive_missing(store.conn, store.bodies) == (1, 0)
    assert rows(store, "SELECT count(*) FROM outputs") == [(5,)]


def test_posts_keep_their_first_and_last_snapshot_whatever_the_order_derived(
    store: Store,
) -> None:
    doi = Identifier("doi", "10.5150/posts-order")
    blog = {"url": "https://blog.example/b", "title": "v1"}
    tweet: dict[str, Any] = {"tweet_id": "77", "author": {"tweeter_id": "1"}}
    ids = []
    for version in (1, 2, 3):
        posts = {"blogs": [{**blog, "title": f"v{version}"}], "twitter": [tweet]}
        ids.append(store_answer(store, doi, answer(posts, float(version))))
    expected = [
        ("blogs", blog["url"], "v3", ids[0], ids[2]),
        ("twitter", None, None, ids[0], ids[2]),
    ]
    query = (
        "SELECT source, url, title, first_response_id, last_response_id FROM mentions"
        " ORDER BY source"
    )
    assert rows(store, query) == expected
    derived.clear_all(store.conn)
    with store.transaction() as conn:
        for response_id in (ids[2], ids[0], ids[1]):
            body = store.bodies.of_response(response_id)
            derived.derive_answers(conn, [Answer(response_id, 1, "t", "full", body)])
    assert rows(store, query) == expected
    # stored compactly: the URL once (it is the key), the last snapshot where it differs
    assert rows(store, "SELECT url, last_response_id FROM posts") == [("", ids[2])]


def test_a_post_seen_once_stores_no_last_snapshot_and_the_view_gives_the_first(
    store: Store,
) -> None:
    news = {"url": "https://n.example/once", "title": "Once"}
    response_id = store_answer(
        store, Identifier("doi", "10.5150/once"), answer({"news": [news]}, 1.0)
    )
    assert rows(store, "SELECT url, last_response_id FROM posts") == [("", None)]
    assert rows(store, "SELECT url, first_response_id, last_response_id FROM mentions") == [
        (news["url"], response_id, response_id)
    ]


DERIVED_DUMP = (
    "SELECT * FROM outputs ORDER BY response_id",
    "SELECT * FROM counts ORDER BY response_id, source",
    "SELECT * FROM readers ORDER BY response_id, reference_manager",
    "SELECT * FROM score_context ORDER BY response_id, context",
    "SELECT * FROM tweets ORDER BY job_id, tweet_id",
    "SELECT * FROM posts ORDER BY job_id, source, post_key",
)


async def test_deriving_in_worker_processes_gives_the_same_rows(db_path: Path) -> None:
    await harvest_from_simulator(db_path, 40)
    with Store(db_path) as store:
        store.conn.execute(
            "INSERT INTO bodies (sha256, size_bytes, codec, data) VALUES"
            " ('damaged', 10, 'zstd', X'00')"
        )
        store.conn.execute("UPDATE responses SET body_id = last_insert_rowid() WHERE id = 3")
        inline = [rows(store, query) for query in DERIVED_DUMP]
        derived.clear_all(store.conn)
        done, skipped = derived.derive_missing(store.conn, store.bodies, batch_size=7, workers=2)
        assert (done, skipped) == (len(inline[0]) - 1, 1)  # response 3's body is damaged
        assert rows(store, "PRAGMA foreign_keys") == [(1,)]  # unchecked only while deriving
        assert rows(store, "PRAGMA foreign_key_check") == []
        pooled = [rows(store, query) for query in DERIVED_DUMP]
    [(job_of_3,)] = rows(db_path, "SELECT job_id FROM responses WHERE id = 3")
    by_snapshot = [[row for row in table if row[0] != 3] for table in inline[:4]]
    by_job = [[row for row in table if row[0] != job_of_3] for table in inline[4:]]
    assert pooled == by_snapshot + by_job
    assert len(pooled[4]) > 100  # tweets were compared


def test_the_mentions_view_declares_the_column_types_of_m005s_table(store: Store) -> None:
    declared = rows(store, "SELECT name, type FROM pragma_table_info('mentions')")
    assert declared == [
        ("job_id", "INTEGER"),
        ("source", "TEXT"),
        ("post_key", "TEXT"),
        ("url", "TEXT"),
        ("title", "TEXT"),
        ("posted_on", "TEXT"),
        ("author_name", "TEXT"),
        ("author_id", "TEXT"),
        ("tweet_id", "INTEGER"),
        ("first_response_id", "INTEGER"),
        ("last_response_id", "INTEGER"),
    ]


async def test_clearing_empties_every_derived_table_and_nothing_else(db_path: Path) -> None:
    await harvest_from_simulator(db_path, 30)
    raw_tables = ("jobs", "responses", "bodies", "tweet_charges")
    count = "SELECT count(*) FROM {}"
    with Store(db_path) as store:
        derived_rows = sum(rows(store, count.format(t))[0][0] for t in derived.DERIVED_TABLES)
        raw_before = [rows(store, count.format(table)) for table in raw_tables]
        assert derived_rows > 30 * 5
        assert derived.clear_all(store.conn) == derived_rows
        assert [rows(store, count.format(t)) for t in derived.DERIVED_TABLES] == [[(0,)]] * 6
        assert [rows(store, count.format(table)) for table in raw_tables] == raw_before
        assert rows(store, "PRAGMA foreign_keys") == [(1,)]  # unchecked only while clearing
        assert derived.derive_missing(store.conn, store.bodies) == (30 - len(not_found(store)), 0)
        assert rows(store, "PRAGMA foreign_key_check") == []


def not_found(store: Store) -> list[tuple[Any, ...]]:
    return rows(store, "SELECT id FROM responses WHERE http_status != 200")
