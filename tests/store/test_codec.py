"""The body codec: compression, dictionaries, and damage always detected as such."""

from __future__ import annotations

import pytest

from harvester.errors import BodyCorrupt
from harvester.sim import universe
from harvester.store.codec import (
    IDENTITY,
    ZSTD,
    BodyCodec,
    Dictionary,
    train_dictionary,
)


@pytest.fixture(scope="module")
def pool() -> list[bytes]:
    return universe.body_pool(300)


def test_round_trip_with_and_without_a_dictionary(pool: list[bytes]) -> None:
    plain = BodyCodec()
    trained = BodyCodec(Dictionary(7, train_dictionary(pool[:200])))
    for body in pool[200:]:
        for codec in (plain, trained):
            stored = codec.compress(body)
            assert stored.codec == ZSTD
            assert codec.decompress(*stored, len(body)) == body
    with_dict = trained.compress(pool[250])
    assert with_dict.dictionary_id == 7
    with pytest.raises(BodyCorrupt, match="dictionary 7 is missing"):
        plain.decompress(*with_dict, len(pool[250]))
    assert sum(len(trained.compress(b).data) for b in pool[200:]) < sum(
        len(plain.compress(b).data) for b in pool[200:]
    )


def test_tiny_bodies_are_kept_as_they_are() -> None:
    stored = BodyCodec().compress(b"Not Found")
    assert stored == (IDENTITY, None, b"Not Found")
    with pytest.raises(BodyCorrupt, match="9 were stored"):
        BodyCodec().decompress(IDENTITY, None, b"Not Foun", 9)


def test_every_flipped_bit_is_caught_or_harmless(pool: list[bytes]) -> None:
    """Damage anywhere in a frame, header included, is BodyCorrupt or yields the very
    same bytes: never other bytes, never another exception (a damaged size field once
    made zstd try to allocate gigabytes)."""
    codec = BodyCodec()
    body = pool[3]
    stored = codec.compress(body)
    positions = [*range(min(len(stored.data), 24)), *range(24, len(stored.data), 97)]
    caught = 0
    for position in positions:
        for bit in range(8):
            damaged = bytearray(stored.data)
            damaged[position] ^= 1 << bit
            try:
                assert codec.decompress(ZSTD, None, bytes(damaged), len(body)) == body
            except BodyCorrupt:
                caught += 1
    assert caught >= len(positions) * 8 * 0.9
