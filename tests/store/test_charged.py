"""The in-memory index of charged tweet IDs: the same answers as a plain dict of the
latest charge of each ID, through many flushes and merges of its runs."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from harvester.store import charged
from harvester.store.charged import ChargedIndex, Run, distinct_sorted, merge_runs


def blob(*values: int) -> bytes:
    """IDs as a charge row stores them."""
    return charged.ids_to_blob(np.array(values, dtype=np.int64))


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_an_id_counts_as_charged_only_at_or_after_the_window_start() -> None:
    index = ChargedIndex.from_charges([[(100.0, blob(5, 1)), (200.0, blob(7))]])
    assert index.new_ids(ids(1, 5, 7, 9), since_s=50).tolist() == [9]
    assert index.new_ids(ids(1, 5, 7, 9), since_s=150).tolist() == [1, 5, 9]
    index.age_out(200.0)  # pruned up to 200: even a wider window sees 1 and 5 gone
    assert index.new_ids(ids(1, 5, 7, 9), since_s=0).tolist() == [1, 5, 9]
    index.add(ids(1), 300.0)
    assert index.new_ids(ids(1, 5), since_s=250).tolist() == [5]


def test_an_id_stored_in_several_charges_keeps_the_latest() -> None:
    chunks = [[(100.0, blob(1, 2)), (200.0, blob(2, 3))], [(300.0, blob(2))], []]
    index = ChargedIndex.from_charges(chunks)
    assert len(index) == 3
    assert index.new_ids(ids(1, 2, 3), since_s=250).tolist() == [1, 3]


def test_merging_runs_keeps_the_newer_charge_and_drops_the_aged() -> None:
    older = Run(ids(1, 3, 5, 7), np.array([10.0, 20.0, 30.0, 40.0]))  # sorted keys
    newer = Run(ids(0, 3, 8), np.array([50.0, 50.0, 50.0]))
    merged = merge_runs(older, newer, horizon_s=25.0)
    assert merged.keys.tolist() == [0, 3, 5, 7, 8]
    assert merged.times.tolist() == [50.0, 50.0, 30.0, 40.0, 50.0]


@pytest.mark.parametrize(("seed", "window", "filter_bits"), [(0, 32, 20), (1, 32, 4), (2, 3, 8)])
def test_the_index_agrees_with_a_dict_through_many_merges(
    seed: int, window: int, filter_bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small sizes, so runs flush and merge every few charges and get directories (but
    with a window of 3 keys, where buckets overflow it and runs go without), and the
    filter is rebuilt often (and made tiny, so that most keys pass it)."""
    monkeypatch.setattr(charged, "RECENT_MAX", 64)
    monkeypatch.setattr(charged, "DIRECTORY_MIN", 256)
    monkeypatch.setattr(charged, "PER_BUCKET", 4)
    monkeypatch.setattr(charged, "WINDOW", np.arange(window))
    monkeypatch.setattr(charged, "FILTER_MIN_BITS", filter_bits)
    monkeypatch.setattr(charged, "FILTER_BITS_PER_KEY", 0)
    rng = random.Random(seed)
    latest: dict[int, float] = {n: 0.0 for n in range(0, 4000, 7)}
    index = ChargedIndex.from_charges([[(0.0, blob(*sorted(latest)))]])
    horizon_s = -math.inf
    for now_s in range(1, 400):
        window_start_s = now_s - rng.choice((5, 50, 500))
        horizon_s = max(horizon_s, window_start_s)
        asked = distinct_sorted([rng.randrange(4000) for _ in range(rng.choice((1, 10, 100)))])
        since_s = max(window_start_s, horizon_s)
        expected = [n for n in asked.tolist() if latest.get(n, -math.inf) < since_s]
        assert index.new_ids(asked, window_start_s).tolist() == expected
        index.age_out(window_start_s)
        index.add(np.array(expected, dtype=np.int64), float(now_s))
        latest.update(dict.fromkeys(expected, float(now_s)))


def test_a_rebuilt_filter_keeps_every_live_key_of_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(charged, "RECENT_MAX", 4)  # a run every 4 IDs...
    monkeypatch.setattr(charged, "FANOUT", 0)  # ...never merged
    index = ChargedIndex.from_charges([])
    for n in range(0, 40, 3):  # the filter is rebuilt every few charges
        index.add(ids(n, n + 1, n + 2), float(n))
    index.age_out(3.0)
    assert index.new_ids(ids(*range(45)), since_s=0).tolist() == [0, 1, 2, *range(42, 45)]


def test_ids_round_trip_through_their_stored_bytes() -> None:
    values = np.array([0, 1, 2**63 - 1], dtype=np.int64)
    stored = charged.ids_to_blob(values)
    assert stored == bytes(8) + (1).to_bytes(8, "big") + (2**63 - 1).to_bytes(8, "big")
    index = ChargedIndex.from_charges([[(1.0, stored)]], expected=1)
    assert index.new_ids(ids(0, 2, 2**63 - 1), since_s=0).tolist() == [2]
    assert distinct_sorted([3, 1, 3, 2]).tolist() == [1, 2, 3]
    many = [n % 700 for n in range(2000, 0, -1)]  # past the small-batch path
    assert distinct_sorted(many).tolist() == list(range(700))
