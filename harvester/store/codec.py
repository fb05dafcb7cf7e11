"""Raw bodies, compressed: zstd, with a dictionary trained on the store's own answers.

Answers of one API share most of their structure (the same keys, the same URL
prefixes), which a 10 KB body alone cannot exploit but a dictionary can: trained once
on the store's first bodies, it takes the simulator's mix from 0.24 to 0.17 of the raw
size. Every frame carries zstd's content checksum, so a damaged body fails to
decompress rather than decompressing to other bytes; `verify` also recomputes the
sha256 of what comes out. Tiny bodies that compression would grow ("Not Found") are
stored as they are.

No SQL here: the store decides where bodies and dictionaries live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import zstandard

from harvester.errors import BodyCorrupt

IDENTITY = "identity"
ZSTD = "zstd"
CODECS = (IDENTITY, ZSTD)
LEVEL = 3  # level 6 or 9 buys < 1% on these bodies at 3-5x the time
DICTIONARY_SIZE_BYTES = 112_640  # zstd's own default (110 KiB)
TRAIN_AFTER_BODIES = 1_000  # enough samples for a dictionary worth having
TRAIN_SAMPLE_BODIES = 2_000
# fastcover's segment and d-mer sizes, fixed, and every sample trained on. Left to
# itself, zstd searches k from 50 to 2,000, each k trained on three quarters of the
# samples and tested on the rest: 0.25 s of CPU for 1,000 bodies, 0.5 s for 2,000. On
# the simulator's answers this takes a quarter of that time and compresses as well
# (0.1736 of the raw size against the search's 0.1740). The shorter the training, the
# fewer bodies are stored with plain zstd meanwhile (`bodies` trains in the background).
TRAIN_SEGMENT_BYTES, TRAIN_DMER_BYTES = 1536, 8


class Compressed(NamedTuple):
    codec: str
    dictionary_id: int | None
    data: bytes


class Dictionary(NamedTuple):
    id: int
    data: bytes


class BodyCodec:
    """Compresses new bodies with the newest dictionary; decompresses with any."""

    def __init__(self, dictionary: Dictionary | None = None) -> None:
        self.dictionary = dictionary
        self._compressor = self._compressor_for(dictionary)
        self._decompressors: dict[int | None, zstandard.ZstdDecompressor] = {
            None: zstandard.ZstdDecompressor()
        }
        if dictionary is not None:
            self.add_dictionary(dictionary)

    @staticmethod
    def _compressor_for(dictionary: Dictionary | None) -> zstandard.ZstdCompressor:
        dict_data = None if dictionary is None else zstandard.ZstdCompressionDict(dictionary.data)
        return zstandard.ZstdCompressor(level=LEVEL, dict_data=dict_data, write_checksum=True)

    def use_dictionary(self, dictionary: Dictionary) -> None:
        """Compress from now on with `dictionary` (just trained)."""
        self.add_dictionary(dictionary)
        self.dictionary = dictionary
        self._compressor = self._compressor_for(dictionary)

    def add_dictionary(self, dictionary: Dictionary) -> None:
        """Make bodies compressed with `dictionary` readable."""
        self._decompressors[dictionary.id] = zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(dictionary.data)
        )

    def knows(self, dictionary_id: int | None) -> bool:
        return dictionary_id in self._decompressors

    def compress(self, body: bytes) -> Compressed:
        data = self._compressor.compress(body)
        if len(data) >= len(body):
            return Compressed(IDENTITY, None, body)
        dictionary_id = None if self.dictionary is None else self.dictionary.id
        return Compressed(ZSTD, dictionary_id, data)

    def decompress(
        self, codec: str, dictionary_id: int | None, data: bytes, size_bytes: int
    ) -> bytes:
        """The original bytes, which must be `size_bytes` long; BodyCorrupt otherwise.

        The size is checked against the frame's header first: a damaged header must
        not make zstd allocate gigabytes."""
        if codec == IDENTITY:
            raw = bytes(data)
        elif codec == ZSTD:
            raw = self._unzstd(dictionary_id, data, size_bytes)
        else:
            raise BodyCorrupt(f"unknown codec {codec!r}")
        if len(raw) != size_bytes:
            raise BodyCorrupt(f"{len(raw)} bytes where {size_bytes} were stored")
        return raw

    def _unzstd(self, dictionary_id: int | None, data: bytes, size_bytes: int) -> bytes:
        decompressor = self._decompressors.get(dictionary_id)
        if decompressor is None:
            raise BodyCorrupt(f"zstd dictionary {dictionary_id} is missing")
        try:
            declared = zstandard.frame_content_size(data)
            if declared != size_bytes:
                raise BodyCorrupt(f"zstd frame declares {declared} bytes, not {size_bytes}")
            return decompressor.decompress(data, max_output_size=size_bytes)
        except (zstandard.ZstdError, MemoryError) as error:
            raise BodyCorrupt(f"zstd: {type(error).__name__}: {error}") from None


def train_dictionary(samples: Sequence[bytes]) -> bytes:
    """A zstd dictionary from sample bodies (~0.1 s of CPU for 1,000 bodies)."""
    buffers: list[bytes | bytearray | memoryview] = list(samples)
    trained = zstandard.train_dictionary(
        DICTIONARY_SIZE_BYTES,
        buffers,
        k=TRAIN_SEGMENT_BYTES,
        d=TRAIN_DMER_BYTES,
        split_point=1.0,
        level=LEVEL,
    )
    return trained.as_bytes()
