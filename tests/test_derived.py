"""The store's raw bodies and derived tables: compression, snapshots, rebuilds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import build_pre_compression_store

from harvester.cli import main
from harvester.config import ApiSettings, RateSettings, Secret, Settings, StoreSettings
from harvester.errors import StoreError
from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.service.daemon import daemon_lock, run_daemon
from harvester.sim import universe
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store, derived
from harvester.store.bodies import BodyStore

KEY = "derived-key-5150"
DERIVED = ("outputs", "counts", "readers", "score_context", "mentions")


def fetch(store: Store, identifier: Identifier, body: bytes, status: int = 200) -> int:
    """Claim the job of `identifier` and store `body` as its answer; the response id."""
    store.jobs.add([identifier])
    store.conn.execute(
        "UPDATE jobs SET state = 'pending' WHERE id_type = ? AND identifier = ?", identifier
    )
    [job] = store.jobs.claim(1, lease_s=60)
    response = StoredResponse(status, body, "{}", "full", iso_utc(time.time()))
    state = "done" if status == 200 else "not_found"
    store.record([JobOutcome(job.id, job.lease_token, state, True, response=response)])
    return int(store.conn.execute("SELECT max(id) FROM responses").fetchone()[0])


def answer(posts: dict[str, list[dict[str, Any]]], score: float) -> bytes:
    return json.dumps(
        {"altmetric_id": 5, "altmetric_score": {"score": score}, "posts": posts}
    ).encode()


def table(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return store.conn.execute(sql).fetchall()


def test_a_changed_refetch_keeps_both_snapshots_and_an_identical_one_adds_no_body(
    store: Store,
) -> None:
    doi = Identifier("doi", "10.5150/history")
    tweet = {"tweet_id": "101", "author": {"tweeter_id": "1"}}
    blog = {"url": "https://blog.example/a", "title": "Old title"}
    first = fetch(store, doi, answer({"twitter": [tweet], "blogs": [blog]}, 1.0))
    newer_blog = {**blog, "title": "New title"}
    second_body = answer({"blogs": [newer_blog], "news": [{"url": "https://n.example/1"}]}, 4.5)
    second = fetch(store, doi, second_body)
    third = fetch(store, doi, second_body)  # identical bytes

    assert table(store, "SELECT count(*) FROM responses") == [(3,)]
    assert table(store, "SELECT count(*) FROM bodies") == [(2,)]
    assert table(store, "SELECT body_id FROM responses ORDER BY id") == [(1,), (2,), (2,)]
    assert table(store, "SELECT response_id, score FROM outputs ORDER BY 1") == [
        (first, 1.0),
        (second, 4.5),
        (third, 4.5),
    ]
    assert table(store, "SELECT response_id, score FROM latest_outputs") == [(third, 4.5)]
    mentions = table(
        store,
        "SELECT source, post_key, title, first_response_id, last_response_id"
        " FROM mentions ORDER BY source",
    )
    assert mentions == [
        ("blogs", "https://blog.example/a", "New title", first, third),
        ("news", "https://n.example/1", None, second, third),
        ("twitter", "101", None, first, first),  # gone after the first snapshot
    ]


def test_identical_404s_share_one_body(store: Store) -> None:
    for n in range(5):
        fetch(store, Identifier("doi", f"10.5150/missing.{n}"), b"Not Found", status=404)
    assert table(store, "SELECT count(*) FROM responses") == [(5,)]
    assert table(store, "SELECT count(*), codec, sum(size_bytes) FROM bodies") == [
        (1, "identity", 9)  # compression would only grow nine bytes
    ]
    assert table(store, "SELECT count(*) FROM outputs") == [(0,)]


def test_a_dictionary_is_trained_once_enough_bodies_are_stored(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BodyStore, "train_after_bodies", 40)
    pool = universe.body_pool(60)
    with Store(db_path) as store:
        for n, body in enumerate(pool):
            fetch(store, Identifier("doi", f"10.5150/dict.{n}"), body)
        dictionaries = table(store, "SELECT id, sample_count, size_bytes FROM zstd_dictionaries")
        assert len(dictionaries) == 1 and dictionaries[0][1] >= 40
        used = table(store, "SELECT dictionary_id, count(*) FROM bodies GROUP BY 1 ORDER BY 1")
    assert used[0][0] is None and used[-1] == (1, len(pool) - used[0][1])
    assert used[-1][1] >= 15  # bodies after the training use it
    with Store(db_path, read_only=True) as reader:  # a fresh process reads them all
        for response_id, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(response_id) == original
        assert all(problem is None for _, problem in reader.bodies.iter_checks())


def test_compressed_bodies_take_well_under_a_third_of_the_raw_bytes(store: Store) -> None:
    for n, body in enumerate(universe.body_pool(200)):
        fetch(store, Identifier("doi", f"10.5150/size.{n}"), body)
    [(raw, stored)] = table(store, "SELECT sum(size_bytes), sum(length(data)) FROM bodies")
    assert stored < 0.3 * raw


def test_verify_catches_a_flipped_byte_in_a_compressed_body(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(db_path) as store:
        for n, body in enumerate(universe.body_pool(5)):
            fetch(store, Identifier("doi", f"10.5150/flip.{n}"), body)
    assert main(["--db", str(db_path), "verify"]) == 0
    assert "checked 5 distinct bodies of 5 responses, 0 mismatches" in capsys.readouterr().out
    conn = sqlite3.connect(db_path)
    [(data,)] = conn.execute("SELECT data FROM bodies WHERE id = 3").fetchall()
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x10
    conn.execute("UPDATE bodies SET data = ? WHERE id = 3", (bytes(damaged),))
    conn.commit()
    conn.close()
    assert main(["--db", str(db_path), "verify"]) == 1
    output = capsys.readouterr().out
    assert "MISMATCH response 3 doi:10.5150/flip.2" in output
    assert "1 mismatches" in output
    assert main(["--db", str(db_path), "show", "doi", "10.5150/flip.2"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert main(["--db", str(db_path), "show", "doi", "10.5150/flip.1", "--raw"]) == 0


# -- derived rows against the raw JSON, for a real harvest ------------------------------


async def harvest_from_simulator(db_path: Path, count: int) -> None:
    with Store(db_path) as store:
        store.jobs.add([Identifier("doi", f"10.5150/sim.{n}") for n in range(count)])
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            rate=RateSettings(requests_per_s=500, burst=10),
            store=StoreSettings(path=db_path),
        )
        report = await run_daemon(
            settings, Secret(KEY), drain=True, show_progress=False, install_signals=False
        )
    assert report.exit_code == 0


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
    [(title, journal, score)] = table(
        store, f"SELECT title, journal, score FROM outputs WHERE response_id = {response_id}"
    )
    return {
        "title": title,
        "journal": journal,
        "score": score,
        "counts": set(
            table(
                store,
                "SELECT source, posts_count, unique_users_count FROM counts"
                f" WHERE response_id = {response_id}",
            )
        ),
        "readers": set(
            table(
                store,
                f"SELECT reference_manager, readers FROM readers WHERE response_id = {response_id}",
            )
        ),
        "contexts": set(
            table(
                store,
                "SELECT context, rank, sample_size, percentile FROM score_context"
                f" WHERE response_id = {response_id}",
            )
        ),
        "mentions": set(
            table(store, f"SELECT source, post_key FROM mentions WHERE job_id = {job_id}")
        ),
    }


async def test_derived_rows_match_the_raw_json_of_a_simulator_harvest(db_path: Path) -> None:
    await harvest_from_simulator(db_path, 60)
    with Store(db_path, read_only=True) as store:
        answers = table(store, "SELECT id, job_id FROM responses WHERE http_status = 200")
        assert len(answers) >= 50
        for response_id, job_id in answers:
            raw = json.loads(store.bodies.of_response(response_id))
            assert derived_rows(store, response_id, job_id) == expected_rows(raw), response_id
        assert table(store, "SELECT count(*) FROM outputs") == [(len(answers),)]
        sample = table(store, "SELECT count(*) FROM mentions")[0][0]
    assert sample > 60  # the harvest carried mentions to compare


async def test_derive_rebuild_gives_the_same_tables(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await harvest_from_simulator(db_path, 40)

    def snapshot_of_tables() -> dict[str, list[tuple[Any, ...]]]:
        with Store(db_path, read_only=True) as store:
            return {name: sorted(table(store, f"SELECT * FROM {name}")) for name in DERIVED}

    before = snapshot_of_tables()
    assert main(["--db", str(db_path), "derive"]) == 0
    assert "derived 0 answers" in capsys.readouterr().out  # nothing was missing
    assert main(["--db", str(db_path), "derive", "--rebuild"]) == 0
    assert f"derived {len(before['outputs'])} answers" in capsys.readouterr().out
    assert snapshot_of_tables() == before


# -- an older store, upgraded ----------------------------------------------------------------


def test_a_store_from_before_compression_is_upgraded_without_losing_a_byte(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = universe.body_pool(30)
    build_pre_compression_store(db_path, [*pool, b"Not Found", b"Not Found"])

    with pytest.raises(StoreError, match="older version"):
        Store(db_path, read_only=True)  # reading an old store waits for its upgrade
    assert main(["--db", str(db_path), "derive"]) == 0  # a writing command upgrades it
    assert f"derived {len(pool)} answers" in capsys.readouterr().out
    with Store(db_path, read_only=True) as reader:
        for n, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(n) == original
        assert reader.bodies.of_response(len(pool) + 2) == b"Not Found"
        assert table(reader, "SELECT count(*) FROM bodies") == [(len(pool) + 1,)]
        assert "body" not in {row[1] for row in table(reader, "PRAGMA table_info(responses)")}
    assert main(["--db", str(db_path), "verify"]) == 0


def test_an_answer_that_cannot_be_derived_is_still_stored_raw(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in deriving")

    body = answer({"news": [{"url": "https://n.example/2"}]}, 2.0)
    with monkeypatch.context() as patched:
        patched.setattr(derived, "insert_snapshot", broken)
        store.jobs.add([Identifier("doi", "10.5150/bug")])
        [job] = store.jobs.claim(1, lease_s=60)
        response = StoredResponse(200, body, "{}", "full", iso_utc(time.time()))
        result = store.record(
            [JobOutcome(job.id, job.lease_token, "done", True, response=response)]
        )
    assert result.written == 1 and "RuntimeError: a bug in deriving" in result.underived[0]
    assert table(store, "SELECT state FROM jobs") == [("done",)]
    assert store.bodies.of_response(1) == body
    assert table(store, "SELECT count(*) FROM outputs") == [(0,)]
    assert derived.derive_missing(store.conn, store.bodies) == (
        1,
        0,
    )  # derive tries again, and now succeeds
    assert table(store, "SELECT score FROM outputs") == [(2.0,)]


def test_numbers_too_big_for_sqlite_are_dropped_not_fatal(store: Store) -> None:
    body = json.dumps(
        {
            "altmetric_id": 10**30,
            "counts": {"news": {"posts_count": "1e300", "unique_users_count": "²"}},
            "posts": {"twitter": [{"tweet_id": "9" * 40, "author": {"tweeter_id": "1"}}]},
        }
    ).encode()
    response_id = fetch(store, Identifier("doi", "10.5150/huge"), body)
    assert table(store, f"SELECT altmetric_id FROM outputs WHERE response_id = {response_id}") == [
        (None,)
    ]
    assert table(store, "SELECT posts_count, unique_users_count FROM counts") == [(None, None)]
    assert table(store, "SELECT post_key, tweet_id FROM mentions") == [("9" * 40, None)]


async def test_derive_rebuild_waits_for_no_daemon(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await harvest_from_simulator(db_path, 10)
    with daemon_lock(db_path):
        assert main(["--db", str(db_path), "derive", "--rebuild"]) == 1
        assert "stop it before derive --rebuild" in capsys.readouterr().err
        assert main(["--db", str(db_path), "derive"]) == 0  # catching up is fine
    with Store(db_path, read_only=True) as store:
        assert table(store, "SELECT count(*) FROM outputs")[0][0] >= 8


def test_the_latest_snapshot_is_the_highest_response_whatever_the_order_derived(
    store: Store,
) -> None:
    doi = Identifier("doi", "10.5150/order")
    ids = [fetch(store, doi, answer({}, score)) for score in (1.0, 2.0, 3.0)]
    other = fetch(store, Identifier("doi", "10.5150/other"), answer({}, 9.0))
    assert table(store, "SELECT response_id FROM latest_outputs ORDER BY 1") == [
        (ids[2],),
        (other,),
    ]
    derived.clear_all(store.conn)
    with store.transaction() as conn:
        for response_id in (ids[2], ids[0], ids[1]):  # newest first, as a rebuild racing
            body = store.bodies.of_response(response_id)  # the daemon might meet them
            assert (
                derived.derive_answer(
                    conn, response_id=response_id, job_id=1, fetched_at="t", mode="full", body=body
                )
                is None
            )
    assert table(store, "SELECT response_id, is_latest FROM outputs ORDER BY 1") == [
        (ids[0], 0),
        (ids[1], 0),
        (ids[2], 1),
    ]
    assert table(store, "SELECT response_id, score FROM latest_outputs") == [(ids[2], 3.0)]
