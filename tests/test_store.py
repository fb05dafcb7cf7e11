"""The store: queueing, claiming, recording under a lease, reading back."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from harvester.errors import StoreError
from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.store import Store


def ids(count: int, prefix: str = "x") -> list[Identifier]:
    return [Identifier("doi", f"10.1000/{prefix}{n}") for n in range(count)]


def response(body: bytes, status: int = 200) -> StoredResponse:
    return StoredResponse(status, body, "{}", "full", iso_utc(time.time()))


def test_schema_is_plain_sql_with_wal(store: Store, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "responses"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reopening_applies_no_migration_twice(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as again:
        assert again.jobs.counts_by_state()["pending"] == 0


def test_add_jobs_dedupes_and_counts(store: Store) -> None:
    first = store.jobs.add([*ids(5), *ids(2)])
    assert (first.added, first.already_queued) == (5, 2)
    second = store.jobs.add(ids(7))
    assert (second.added, second.already_queued) == (2, 5)
    assert store.jobs.counts_by_state()["pending"] == 7


def test_requeueing_a_done_job_does_not_reset_it(store: Store) -> None:
    store.jobs.add(ids(1))
    [job] = store.jobs.claim(10, lease_s=60)
    store.record([JobOutcome(job.id, job.lease_token, "done", True, response=response(b"{}"))])
    assert store.jobs.add(ids(1)).already_queued == 1
    assert store.jobs.counts_by_state()["done"] == 1


def test_claim_leases_each_job_once(store: Store) -> None:
    store.jobs.add(ids(10))
    first = store.jobs.claim(4, lease_s=60)
    second = store.jobs.claim(100, lease_s=60)
    assert len(first) == 4 and len(second) == 6
    assert not {job.id for job in first} & {job.id for job in second}
    assert store.jobs.claim(100, lease_s=60) == []
    assert store.jobs.counts_by_state()["in_progress"] == 10


def test_concurrent_claims_from_two_connections_never_overlap(db_path: Path) -> None:
    with Store(db_path) as setup:
        setup.jobs.add(ids(2000))
    claimed: list[list[int]] = [[], []]

    def claimer(slot: int) -> None:
        with Store(db_path) as own:
            while batch := own.jobs.claim(7, lease_s=60):
                claimed[slot].extend(job.id for job in batch)

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed[0] + claimed[1]
    assert len(everything) == 2000 == len(set(everything))


def test_claim_order_is_priority_then_age(store: Store) -> None:
    store.jobs.add(ids(3, "low"))
    store.jobs.add(ids(2, "high"), priority=5)
    first_two = store.jobs.claim(2, lease_s=60)
    assert {job.identifier for job in first_two} == {"10.1000/high0", "10.1000/high1"}


def test_record_with_a_stale_token_is_discarded(store: Store) -> None:
    store.jobs.add(ids(1))
    [job] = store.jobs.claim(1, lease_s=60)
    assert store.jobs.release([job]) == 1
    [again] = store.jobs.claim(1, lease_s=60)
    stale = JobOutcome(job.id, job.lease_token, "done", True, response=response(b'{"a":1}'))
    assert store.record([stale]).written == 0
    fresh = JobOutcome(again.id, again.lease_token, "done", True, response=response(b'{"a":2}'))
    assert store.record([fresh]).written == 1
    assert store.responses.count() == 1
    latest = store.responses.latest(job.id)
    assert latest is not None and bytes(latest["body"]) == b'{"a":2}'


def test_record_keeps_exact_bytes_and_checksum(store: Store) -> None:
    store.jobs.add(ids(1))
    [job] = store.jobs.claim(1, lease_s=60)
    body = '{"title": "caf\u00e9 \\u00e9", "n": 1.50}'.encode()
    store.record([JobOutcome(job.id, job.lease_token, "done", True, response=response(body))])
    row = store.responses.latest(job.id)
    assert row is not None
    assert bytes(row["body"]) == body
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["size_bytes"] == len(body)
    [(_, problem)] = list(store.bodies.iter_checks())
    assert problem is None


def test_retry_outcome_counts_attempt_and_schedules(store: Store) -> None:
    store.jobs.add(ids(1))
    [job] = store.jobs.claim(1, lease_s=60)
    later = iso_utc(time.time() + 3600)
    store.record([JobOutcome(job.id, job.lease_token, "pending", True, later, "HTTP 503")])
    assert store.jobs.claim(1, lease_s=60) == []  # not due yet
    assert store.jobs.outlook() == (0, later)
    row = store.jobs.find(Identifier(job.id_type, job.identifier))
    assert row is not None
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")


def test_requeue_leased_returns_orphans(store: Store) -> None:
    store.jobs.add(ids(3))
    store.jobs.claim(3, lease_s=60)
    assert store.jobs.requeue_leased(expired_only=True) == 0
    assert store.jobs.requeue_leased(expired_only=False) == 3
    assert store.jobs.counts_by_state()["pending"] == 3


def test_expired_leases_are_requeued(store: Store) -> None:
    store.jobs.add(ids(2))
    store.jobs.claim(2, lease_s=-1)
    assert store.jobs.requeue_leased(expired_only=True) == 2


def test_retry_jobs_resets_failed(store: Store) -> None:
    store.jobs.add(ids(2))
    for job in store.jobs.claim(2, lease_s=60):
        store.record([JobOutcome(job.id, job.lease_token, "failed", True, None, "HTTP 500")])
    assert store.jobs.retry("failed") == 2
    assert len(store.jobs.claim(5, lease_s=60)) == 2


def test_read_only_store_refuses_writes_and_missing_files(db_path: Path, store: Store) -> None:
    store.jobs.add(ids(1))
    with Store(db_path, read_only=True) as reader:
        assert reader.jobs.counts_by_state()["pending"] == 1
        with pytest.raises(sqlite3.OperationalError):
            reader.jobs.add(ids(1, "y"))
    with pytest.raises(StoreError, match="no store at"):
        Store(db_path.with_name("missing.db"), read_only=True)


def test_a_file_that_is_not_sqlite_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(path)
