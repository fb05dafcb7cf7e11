"""The bodies of answers: each distinct answer stored once, compressed, with a
dictionary trained on the store's own answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import zstandard
from helpers import rows, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.store import bodies as bodies_module
from harvester.store.bodies import BodyStore
from harvester.store.codec import train_dictionary


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
        for n, body in enumerate(pool[:40]):
            store_answer(store, Identifier("doi", f"10.5150/dict.{n}"), body)
        assert store.bodies.finish_training(timeout_s=60)  # under way since the 40th
        for n, body in enumerate(pool[40:], start=40):
            store_answer(store, Identifier("doi", f"10.5150/dict.{n}"), body)
        assert rows(store, "SELECT id, sample_count FROM zstd_dictionaries") == [(1, 40)]
        used = rows(store, "SELECT dictionary_id, count(*) FROM bodies GROUP BY 1 ORDER BY 1")
    assert used == [(None, 40), (1, 20)]  # bodies after the training use it
    assert_all_read_back(db_path, pool)


def test_bodies_are_stored_with_plain_zstd_while_the_dictionary_trains(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training runs on a thread of its own: storing goes on meanwhile, and every
    body, whichever codec took it, reads back as it was received."""
    monkeypatch.setattr(BodyStore, "train_after_bodies", 40)
    may_finish = threading.Event()

    def slow_training(samples: list[bytes]) -> bytes:
        assert may_finish.wait(timeout=60)
        return train_dictionary(samples)

    monkeypatch.setattr(bodies_module, "train_dictionary", slow_training)
    pool = universe.body_pool(70)
    with Store(db_path) as store:
        for n, body in enumerate(pool[:60]):  # training starts after the 40th
            store_answer(store, Identifier("doi", f"10.5150/bg.{n}"), body)
        assert rows(store, "SELECT count(*) FROM zstd_dictionaries") == [(0,)]
        may_finish.set()
        assert store.bodies.finish_training(timeout_s=60)
        for n, body in enumerate(pool[60:], start=60):
            store_answer(store, Identifier("doi", f"10.5150/bg.{n}"), body)
        used = rows(store, "SELECT dictionary_id, count(*) FROM bodies GROUP BY 1 ORDER BY 1")
    assert used == [(None, 60), (1, 10)]
    assert_all_read_back(db_path, pool)


def test_a_failed_training_waits_for_as_many_new_bodies_again(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BodyStore, "train_after_bodies", 20)
    attempts: list[int] = []

    def failing_training(samples: list[bytes]) -> bytes:
        attempts.append(len(samples))
        raise zstandard.ZstdError("cannot train dictionary")

    monkeypatch.setattr(bodies_module, "train_dictionary", failing_training)
    pool = universe.body_pool(45)
    with Store(db_path) as store:
        for n, body in enumerate(pool):
            store_answer(store, Identifier("doi", f"10.5150/fail.{n}"), body)
            store.bodies.finish_training(timeout_s=60)
        assert rows(store, "SELECT count(*) FROM zstd_dictionaries") == [(0,)]
    assert attempts == [20, 40]  # after the 20th body, then 20 bodies later
    assert_all_read_back(db_path, pool)


def assert_all_read_back(db_path: Path, pool: list[bytes]) -> None:
    """A fresh process (a read-only open) reads every body back as received."""
    with Store(db_path, read_only=True) as reader:
        for response_id, original in enumerate(pool, start=1):
            assert reader.bodies.of_response(response_id) == original
        assert all(problem is None for _, problem in reader.bodies.iter_checks())


def test_compressed_bodies_take_well_under_a_third_of_the_raw_bytes(store: Store) -> None:
    for n, body in enumerate(universe.body_pool(200)):
        store_answer(store, Identifier("doi", f"10.5150/size.{n}"), body)
    [(raw, stored)] = rows(store, "SELECT sum(size_bytes), sum(length(data)) FROM bodies")
    assert stored < 0.3 * raw
