"""The store as a whole: recording outcomes under a lease, opening read-only, refusing
what is not a store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import dois, stored_response

from harvester.errors import StoreError
from harvester.model import JobOutcome
from harvester.store import Store


def test_record_with_a_stale_token_is_discarded(store: Store) -> None:
    store.jobs.add(dois(1, "10.1000/x"))
    [job] = store.jobs.claim(1, lease_s=60)
    assert store.jobs.release([job]) == 1
    [again] = store.jobs.claim(1, lease_s=60)
    stale = JobOutcome(job.id, job.lease_token, "done", True, response=stored_response(b'{"a":1}'))
    assert store.record([stale]).written == 0
    fresh = JobOutcome(
        again.id, again.lease_token, "done", True, response=stored_response(b'{"a":2}')
    )
    assert store.record([fresh]).written == 1
    assert store.responses.count() == 1
    latest = store.responses.latest(job.id)
    assert latest is not None and bytes(latest["body"]) == b'{"a":2}'


def test_read_only_store_refuses_writes_and_missing_files(db_path: Path, store: Store) -> None:
    store.jobs.add(dois(1, "10.1000/x"))
    with Store(db_path, read_only=True) as reader:
        assert reader.jobs.counts_by_state()["pending"] == 1
        with pytest.raises(sqlite3.OperationalError):
            reader.jobs.add(dois(1, "10.1000/y"))
    with pytest.raises(StoreError, match="no store at"):
        Store(db_path.with_name("missing.db"), read_only=True)


def test_a_file_that_is_not_sqlite_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        Store(path)
