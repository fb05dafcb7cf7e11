"""The tweet ledger: each tweet ID charged once within its window, and when a charge
ages out."""

from __future__ import annotations

import time

import pytest
from helpers import dois, outcome_with_tweets

from harvester.store import Store


def test_the_ledger_charges_each_id_once_and_prunes_the_window(store: Store) -> None:
    store.jobs.add(dois(3, "10.1000/"))
    first, second, third = store.jobs.claim(3, lease_s=60)
    result = store.record([outcome_with_tweets(first, (1, 2, 3))], ledger_window_s=60)
    assert (result.charged, result.pruned) == (3, 0)
    assert store.record([outcome_with_tweets(second, (2, 3, 4))], 60).charged == 1
    assert store.ledger.count(60) == 4
    store.conn.execute(
        "UPDATE tweet_ledger SET charged_at_s = charged_at_s - 100 WHERE tweet_id IN (1, 2)"
    )
    assert store.ledger.frees_at(60, target_used=2) is None  # two already aged out
    assert store.ledger.count(60) == 2
    result = store.record([outcome_with_tweets(third, (1,))], ledger_window_s=60)
    assert (result.charged, result.pruned) == (1, 2)  # aged out, so charged again
    assert store.ledger.count(60) == 3


def test_ledger_frees_at_is_the_aging_of_the_right_charge(store: Store) -> None:
    now_s = time.time()
    store.conn.executemany(
        "INSERT INTO tweet_ledger VALUES (?, ?)", [(n, now_s - 50 + n) for n in range(10)]
    )
    frees = store.ledger.frees_at(60, target_used=7)  # 3 must age out: the third oldest
    assert frees == pytest.approx(now_s - 50 + 2 + 60)
