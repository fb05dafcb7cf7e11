"""The tweet ledger: each tweet ID charged once within its window, one `tweet_charges`
row per charging transaction, the `tweet_ledger` view over them, the in-memory index
that never disagrees with the table, and when a charge ages out."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import dois, outcome_with_tweets, rows

from harvester.model import ClaimedJob
from harvester.store import Store
from harvester.store.charged import STORED_ID, ids_to_blob
from harvester.store.ledger import ChargeBatch


def claim(store: Store, count: int, stem: str = "10.1000/") -> list[ClaimedJob]:
    store.jobs.add(dois(count, stem))
    return store.jobs.claim(count, lease_s=60)


def charge(store: Store, job: ClaimedJob, tweets: tuple[int, ...], window_s: float = 60) -> int:
    return store.record([outcome_with_tweets(job, tweets)], ledger_window_s=window_s).charged


def charges(store: Store) -> list[tuple[int, list[int]]]:
    """Each tweet_charges row as (id_count, IDs), oldest first."""
    found = rows(store, "SELECT id_count, tweet_ids FROM tweet_charges ORDER BY id")
    return [(count, np.frombuffer(blob, STORED_ID).tolist()) for count, blob in found]


def test_ids_are_charged_once_within_a_batch_and_across_batches(store: Store) -> None:
    first, second, third, fourth = claim(store, 4)
    both = [outcome_with_tweets(first, (5, 3, 3, 1)), outcome_with_tweets(second, (3, 9))]
    assert store.record(both, ledger_window_s=60).charged == 4
    assert charge(store, third, (9, 1, 7, 2)) == 2
    assert charge(store, fourth, (1, 2, 3)) == 0  # nothing new: no row either
    assert charges(store) == [(4, [1, 3, 5, 9]), (2, [2, 7])]
    assert store.ledger.count(60) == 6
    assert store.ledger.charged_since(time.time() - 60) == 6


def test_a_charge_that_aged_out_is_pruned_and_charged_again(store: Store) -> None:
    first, second, third = claim(store, 3)
    assert charge(store, first, (1, 2), window_s=0.3) == 2
    time.sleep(0.35)
    result = store.record([outcome_with_tweets(second, (2, 3))], ledger_window_s=0.3)
    assert (result.charged, result.pruned) == (2, 2)  # 2 aged out, so it costs again
    assert charges(store) == [(2, [2, 3])]
    # Without a window nothing is pruned, but 1's charge is gone from the table: it
    # must not count as charged, whatever the index held.
    assert store.record([outcome_with_tweets(third, (1, 2, 3))]).charged == 1
    assert sorted(rows(store, "SELECT tweet_id FROM tweet_ledger")) == [(1,), (2,), (3,)]


def test_the_view_has_the_documented_columns_and_counts_the_window(store: Store) -> None:
    first, second, third = claim(store, 3)
    every_hex_digit = 0x0123456789ABCDEF  # the view reads the stored bytes' hex digits
    charge(store, first, (2**63 - 1, 10, every_hex_digit, 0))
    charge(store, second, (10, 11, 12))
    columns = [row[1] for row in rows(store, "PRAGMA table_info(tweet_ledger)")]
    assert columns == ["tweet_id", "charged_at_s"]
    found = rows(store, "SELECT tweet_id, typeof(tweet_id), charged_at_s FROM tweet_ledger")
    assert sorted(tweet_id for tweet_id, _, _ in found) == [
        0,
        10,
        11,
        12,
        every_hex_digit,
        2**63 - 1,
    ]
    assert {kind for _, kind, _ in found} == {"integer"}
    assert all(time.time() - 60 < at_s <= time.time() for _, _, at_s in found)
    assert rows(store, "SELECT count(*) FROM tweet_ledger") == [(6,)]
    store.conn.execute("UPDATE tweet_charges SET charged_at_s = charged_at_s - 100 WHERE id = 1")
    store.record([outcome_with_tweets(third, ())], ledger_window_s=60)  # prunes the first
    assert rows(store, "SELECT count(*) FROM tweet_ledger") == [(2,)]
    assert store.ledger.count(60) == 2


def test_a_failed_transaction_leaves_the_index_agreeing_with_the_table(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = claim(store, 3)
    assert charge(store, first, (1, 2)) == 2
    written = store.ledger.charge

    def charge_then_fail(conn: sqlite3.Connection, batch: ChargeBatch) -> int:
        written(conn, batch)  # the row is written, then the transaction fails
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store.ledger, "charge", charge_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        charge(store, second, (2, 3, 4))
    monkeypatch.undo()
    assert charges(store) == [(2, [1, 2])]  # rolled back
    assert charge(store, second, (2, 3, 4)) == 2  # 3 and 4 were never charged
    assert charge(store, third, (1, 2, 3, 4)) == 0


def test_another_store_on_the_file_sees_the_charges(db_path: Path) -> None:
    with Store(db_path) as one, Store(db_path) as other:
        jobs = claim(one, 4)
        assert charge(one, jobs[0], (1, 2)) == 2
        assert charge(other, jobs[1], (2, 3)) == 1  # loaded fresh: 2 is charged
        assert charge(one, jobs[2], (3, 4)) == 1  # one's index saw other's commit
        assert charge(other, jobs[3], (4, 5)) == 1
    with Store(db_path) as fresh:
        [job] = claim(fresh, 1, "10.2000/")
        assert charge(fresh, job, (1, 2, 3, 4, 5, 6)) == 1
        assert fresh.ledger.count(60) == 6


def test_ledger_frees_at_is_the_aging_of_the_right_charge(store: Store) -> None:
    now_s = time.time()
    store.conn.executemany(
        "INSERT INTO tweet_charges (charged_at_s, id_count, tweet_ids) VALUES (?, ?, ?)",
        [
            (now_s - 100, 7, ids_to_blob(np.arange(100, 107))),  # outside the window
            (now_s - 50, 3, "[1,2,3]"),
            (now_s - 40, 2, "[4,5]"),
            (now_s - 30, 5, "[6,7,8,9,10]"),
        ],
    )
    assert store.ledger.count(60) == 10
    assert store.ledger.frees_at(60, target_used=10) is None
    assert store.ledger.frees_at(60, target_used=7) == pytest.approx(now_s - 50 + 60)
    assert store.ledger.frees_at(60, target_used=6) == pytest.approx(now_s - 40 + 60)
    assert store.ledger.frees_at(60, target_used=5) == pytest.approx(now_s - 40 + 60)
    assert store.ledger.frees_at(60, target_used=0) == pytest.approx(now_s - 30 + 60)
