"""Schema m007: a store whose ledger is a row per tweet ID (m002-m006) upgraded to a
row per charge, every (tweet_id, charged_at_s) kept, `tweet_ledger` then a view."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from helpers import dois, outcome_with_tweets, rows
from sqlite_utils import Database

from harvester.store import Store
from harvester.store.schema import migrations


def build_old_ledger_store(db_path: Path, stop_before: str) -> set[tuple[int, float]]:
    """A store at the schema before `stop_before`, its ledger holding a few charges of
    many IDs (one with thousands, one aged out of a 60 s window); the pairs written."""
    rng = random.Random(7)
    now_s = time.time()
    pairs: set[tuple[int, float]] = set()
    for charged_at_s, count in ((now_s - 600, 5), (now_s - 30, 4000), (now_s - 20, 1)):
        pairs |= {(rng.getrandbits(63), charged_at_s) for _ in range(count)}
    pairs |= {(0, now_s - 10), (2**63 - 1, now_s - 10), (42, now_s - 10)}
    database = Database(db_path)
    migrations.apply(database, stop_before=stop_before)
    database.conn.executemany("INSERT INTO tweet_ledger VALUES (?, ?)", sorted(pairs))
    database.conn.commit()
    database.close()
    return pairs


@pytest.mark.parametrize("stop_before", ["m006_compact_mentions", "m007_tweet_charges"])
def test_every_charge_of_an_old_ledger_survives_the_upgrade(
    db_path: Path, stop_before: str
) -> None:
    pairs = build_old_ledger_store(db_path, stop_before)
    with Store(db_path) as store:
        kinds = dict(rows(store, "SELECT name, type FROM sqlite_master"))
        assert kinds["tweet_ledger"] == "view"
        assert "tweet_ledger_charged" not in kinds
        found = rows(store, "SELECT tweet_id, charged_at_s FROM tweet_ledger")
        assert len(found) == len(pairs)
        assert set(found) == pairs
        charges = rows(store, "SELECT charged_at_s, id_count FROM tweet_charges ORDER BY id")
        assert [at_s for at_s, _ in charges] == sorted({at_s for _, at_s in pairs})
        assert sum(count for _, count in charges) == len(pairs)
        assert store.ledger.count(60) == len(pairs) - 5  # the oldest charge is outside

        store.jobs.add(dois(1, "10.7000/"))
        [job] = store.jobs.claim(1, lease_s=60)
        known = (0, 42, 2**63 - 1, *(tweet_id for tweet_id, _ in sorted(pairs)[:50]))
        result = store.record([outcome_with_tweets(job, (*known, 43))], ledger_window_s=60)
    aged = {tweet_id for tweet_id, at_s in pairs if at_s < time.time() - 60}
    assert result.pruned == 5
    assert result.charged == 1 + len(aged & set(known))  # 43, and those aged out
