"""The bodies of answers: each distinct answer stored once, compressed, with a
dictionary trained on the store's own answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import rows, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.store.bodies import BodyStore


def test_identical_404s_share_one_body(store: Store) -> None:
    for n in range(5):
        store_answer(store, Identifier("doi", f"10.5150/missing.{n}"), b"Not Found", status=404)
    assert rows(store, "SELECT count(*) FROM responses") == [(5,)]
    assert rows(store, "SELECT count(*), codec, sum(size_bytes) FROM bodies") == [
        (1, "identity", 9)  # compression would only grow nine bytes
    ]
    assert rows(store, "SELECT count(*) FROM outputs") == [(0,)]


def test_a_dictionary_is_trained_once_enough_bodies_are_stored(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BodyStore, "train_after_bodies", 40)
    pool = universe.body_pool(60)
    with Store(db_path) as store:
        for n, body in enumerate(pool):
            store_answer(store, Identifier("doi", f"10.5150/dict.{n}"), body)
        dictionaries = rows(store, "SELECT id, sample_count, size_bytes FROM zstd_dictionaries")
        assert len(dictionaries) == 1 and dictionaries[0][1] >= 40
        used = rows(store, "SELECT dictionary_id, count(*) FROM bodies GROUP BY 1 ORDER BY 1")
    assert used[0][0] is None and used[-1] == (1, len(pool) - used[0][1])
    assert used[-1][1] >= 15  # bodies after the training use it
    with Store(db_path, read_only=True) as reader:  # a fresh process reads them all
        for response_id, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(response_id) == original
        assert all(problem is None for _, problem in reader.bodies.iter_checks())


def test_compressed_bodies_take_well_under_a_third_of_the_raw_bytes(store: Store) -> None:
    for n, body in enumerate(universe.body_pool(200)):
        store_answer(store, Identifier("doi", f"10.5150/size.{n}"), body)
    [(raw, stored)] = rows(store, "SELECT sum(size_bytes), sum(length(data)) FROM bodies")
    assert stored < 0.3 * raw
