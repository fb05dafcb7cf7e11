"""The compression around a tar dump, undone as a forward-only stream that checks as it goes.

A dump file is a tar archive, bare or compressed with gzip (.tar.gz, .tgz), bzip2, xz (or
its legacy .lzma) or zstd (.tar.zst): its first bytes say which, never its name.
`open_layer` gives the archive's bytes as a stream tarfile reads (read, tell, forward
seek), and the libraries check, as the bytes go through, all that each format carries:

- gzip: zlib checks every member's CRC-32 and length (its trailer), and the header's
  CRC when it has one;
- bzip2: every block's CRC and the stream's;
- xz: every block's check (CRC-32, CRC-64 or SHA-256, as the file chose; a file made
  with `--check=none`, or in the legacy .lzma format, has none);
- zstd: every frame's content checksum, when the frame carries one (the zstd tool
  writes one by default; a frame without one can be checked for its structure only).

Concatenated members, streams or frames (pigz, pbzip2, pzstd, `cat a.gz b.gz`) are read
in turn, as the tools read them; zero bytes between or after them are padding. A file
that ends inside one, a check that fails, or anything but zeros after the last one is
damage: the read that meets it raises `DumpDamaged`, naming the file and what is wrong,
once every byte before it has been delivered.

Memory stays bounded: output comes in chunks of `CHUNK_BYTES`, and zstd (whose library
call has no output limit) is fed `ZSTD_SLICE_BYTES` at a time, which no frame can blow
up past 128 MB (real dumps give a few tens of KB a slice).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

import zstandard

from harvester.errors import DumpDamaged

RAW_CHUNK_BYTES = 256 * 1024  # read from the file at a time
CHUNK_BYTES = 256 * 1024  # decompressed at a time, at most (zstd: see ZSTD_SLICE_BYTES)
ZSTD_SLICE_BYTES = 4096  # x 32,768, zstd's largest expansion: 128 MB at the very worst
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_HEADER_MAX_BYTES = 18


class Codec(Protocol):
    """One member (stream, frame) of a compressed file being decompressed."""

    @property
    def eof(self) -> bool:
        """Whether the member ended, its checks passed (every byte of it delivered)."""

    def feed(self, data: bytes) -> None:
        """More of the compressed file."""

    def pull(self, limit: int) -> bytes:
        """Up to about `limit` bytes of output; b"" when it needs more input first."""

    def leftover(self) -> bytes:
        """Once `eof`, what was fed past the member's end."""

    def unchecked(self) -> bool:
        """Once `eof`, whether the member carried no check of the bytes it held."""


class _Gzip:
    """A gzip member: zlib reads its header and checks its trailer's CRC-32 and length."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the gzip wrapper, checked
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._inflate.eof

    def feed(self, data: bytes) -> None:
        self._pending += data

    def pull(self, limit: int) -> bytes:
        out = self._inflate.decompress(self._pending, limit)
        self._pending = self._inflate.unconsumed_tail
        return out

    def leftover(self) -> bytes:
        return self._inflate.unused_data

    def unchecked(self) -> bool:
        return False


class _Buffered:
    """A bzip2 or xz stream: those decompressors keep their input and take an output limit."""

    def __init__(self, decompressor: bz2.BZ2Decompressor | lzma.LZMADecompressor) -> None:
        self._decompressor = decompressor
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._decompressor.eof

    def feed(self, data: bytes) -> None:
        self._pending += data

    def pull(self, limit: int) -> bytes:
        data, self._pending = self._pending, b""
        return self._decompressor.decompress(data, limit)

    def leftover(self) -> bytes:
        return self._decompressor.unused_data

    def unchecked(self) -> bool:
        decompressor = self._decompressor
        return isinstance(decompressor, lzma.LZMADecompressor) and (
            decompressor.check == lzma.CHECK_NONE
        )


class _Zstd:
    """A zstd frame (or skippable frame): the library checks its content checksum, if any."""

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._at = 0
        self._head = b""  # the frame's first bytes, to read its header from

    @property
    def eof(self) -> bool:
        return bool(self._decompressor.eof)

    def feed(self, data: bytes) -> None:
        self._pending = self._pending[self._at :] + data
        self._at = 0
        if len(self._head) < ZSTD_HEADER_MAX_BYTES:
            self._head = (self._head + data)[:ZSTD_HEADER_MAX_BYTES]

    def pull(self, limit: int) -> bytes:
        del limit  # the library has none: slices keep the output small
        while self._at < len(self._pending) and not self._decompressor.eof:
            piece = self._pending[self._at : self._at + ZSTD_SLICE_BYTES]
            self._at += len(piece)
            out: bytes = self._decompressor.decompress(piece)
            if out:
                return out
        return b""

    def leftover(self) -> bytes:
        return bytes(self._decompressor.unused_data) + self._pending[self._at :]

    def unchecked(self) -> bool:
        if not self._head.startswith(ZSTD_MAGIC):
            return False  # a skippable frame: nothing in it is read
        return not zstandard.get_frame_parameters(self._head).has_checksum


@dataclass(frozen=True, slots=True)
class Format:
    """A compression format: how to tell it, what to call its parts, how to undo one."""

    name: str
    part: str  # what one of its concatenated units is called: member, stream, frame
    starts: Callable[[bytes], bool]
    codec: Callable[[], Codec]
    unchecked_note: str  # why a part without a check of its own cannot be proven


def _is_zstd(head: bytes) -> bool:
    skippable = len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"
    return head.startswith(ZSTD_MAGIC) or skippable


FORMATS = (
    Format("gzip", "member", lambda head: head.startswith(b"\x1f\x8b\x08"), _Gzip, ""),
    Format(
        "bzip2",
        "stream",
        lambda head: head[:3] == b"BZh" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"),
        lambda: _Buffered(bz2.BZ2Decompressor()),
        "",
    ),
    Format(
        "xz",
        "stream",
        lambda head: head.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80")),
        lambda: _Buffered(lzma.LZMADecompressor()),
        "its xz data carries no integrity check (written with --check=none, or as .lzma)",
    ),
    Format("zstd", "frame", _is_zstd, _Zstd, "its zstd frames carry no checksum"),
)


class TarBytes(Protocol):
    """What tarfile reads a dump's archive from, and what we ask of it besides."""

    compression: str | None  # the format's name; None for a bare tar

    def read(self, size: int = -1) -> bytes: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def tell(self) -> int: ...
    def rest(self) -> Iterator[bytes]:
        """What remains of the archive's bytes, in chunks, to the very end (and its checks)."""

    def consumed_bytes(self) -> int:
        """Bytes of the file itself read so far."""

    def caveats(self) -> tuple[str, ...]:
        """What could not be checked of what was read (for the parts that carry no check)."""


def open_layer(raw: IO[bytes], label: str) -> TarBytes:
    """The archive inside `raw` (a binary file at its start): decompressed as its first
    bytes say, or the file itself for a bare tar. `label` names it in messages."""
    head = raw.read(16)
    raw.seek(0)
    for fmt in FORMATS:
        if fmt.starts(head):
            return Decompressed(raw, fmt, label)
    return Bare(raw)


class Bare:
    """A tar archive with no compression around it: the file itself (no check to make)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.compression: str | None = None
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def rest(self) -> Iterator[bytes]:
        while chunk := self._raw.read(RAW_CHUNK_BYTES):
            yield chunk

    def consumed_bytes(self) -> int:
        return self._raw.tell()

    def caveats(self) -> tuple[str, ...]:
        return ()


class Decompressed:
    """The decompressed bytes of a compressed file, read front to back, checked on the way."""

    def __init__(self, raw: IO[bytes], fmt: Format, label: str) -> None:
        self.compression: str | None = fmt.name
        self._raw, self._format, self._label = raw, fmt, label
        self._codec: Codec | None = fmt.codec()
        self._parts = 1  # which member (stream, frame) is being read, from 1
        self._unchecked = False
        self._chunk = b""  # the latest output, read from `_at` on
        self._at = 0
        self._base = 0  # where `_chunk` starts in the decompressed stream

    def read(self, size: int = -1) -> bytes:
        """`size` bytes (fewer only at the end); all that remains for a negative size."""
        end = self._at + size
        if size >= 0 and end <= len(self._chunk):
            self._at = end
            return self._chunk[end - size : end]
        parts = [self._chunk[self._at :]]
        wanted = size - len(parts[0]) if size >= 0 else -1
        self._skip_chunk()
        while wanted != 0 and (chunk := self._next_chunk()):
            if 0 <= wanted < len(chunk):
                self._chunk, self._at = chunk, wanted
                parts.append(chunk[:wanted])
                break
            parts.append(chunk)
            self._base += len(chunk)
            wanted -= len(chunk) if wanted > 0 else 0
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Forward only: what is passed over is decompressed (and checked) all the same."""
        target = offset if whence == 0 else self.tell() + offset
        if whence not in (0, 1) or target < self.tell():
            raise OSError(f"{self._label}: a compressed stream is read forward only")
        while target > self._base + len(self._chunk):
            self._skip_chunk()
            if not (chunk := self._next_chunk()):
                return self.tell()  # the end: short, as a file's seek past its end reads
            self._chunk = chunk
        self._at = target - self._base
        return target

    def tell(self) -> int:
        return self._base + self._at

    def rest(self) -> Iterator[bytes]:
        if tail := self._chunk[self._at :]:
            yield tail
        self._skip_chunk()
        while chunk := self._next_chunk():
            self._base += len(chunk)
            yield chunk

    def consumed_bytes(self) -> int:
        return self._raw.tell()

    def caveats(self) -> tuple[str, ...]:
        return (self._format.unchecked_note,) if self._unchecked else ()

    def _skip_chunk(self) -> None:
        self._base += len(self._chunk)
        self._chunk, self._at = b"", 0

    def _next_chunk(self) -> bytes:
        """The next output (b"" at the end, every part checked); raises DumpDamaged."""
        while (codec := self._codec) is not None:
            if codec.eof:
                self._next_part(codec)
                continue
            try:
                out = codec.pull(CHUNK_BYTES)
            except (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as error:
                raise self._damaged(self._failure(error)) from None
            if out:
                return out
            if not codec.eof:
                if not (data := self._raw.read(RAW_CHUNK_BYTES)):
                    raise self._damaged(
                        f"cut short: the file ends inside {self._format.name} "
                        f"{self._format.part} {self._parts}",
                        "the file is incomplete or damaged",
                    )
                codec.feed(data)
        return b""

    def _next_part(self, ended: Codec) -> None:
        """After a part's end: the next part, or the end of the file (zeros allowed)."""
        self._unchecked = self._unchecked or ended.unchecked()
        following = ended.leftover().lstrip(b"\0")
        while not following and (data := self._raw.read(RAW_CHUNK_BYTES)):
            following = data.lstrip(b"\0")
        if not following:
            self._codec = None
            return
        while len(following) < 16 and (data := self._raw.read(RAW_CHUNK_BYTES)):
            following += data
        if not self._format.starts(following):
            where = self._raw.tell() - len(following)
            raise self._damaged(
                f"bytes that are not {self._format.name} data follow its end "
                f"(from byte {where:,} of the file)"
            )
        self._parts += 1
        self._codec = self._format.codec()
        self._codec.feed(following)

    def _failure(self, error: Exception) -> str:
        where = f"{self._format.name} {self._format.part} {self._parts}"
        text = str(error)
        if "incorrect data check" in text:
            return f"{where} fails its CRC-32 check"
        if "incorrect length check" in text:
            return f"{where} fails its length check"
        if "checksum" in text:
            return f"{where} fails its checksum check ({text})"
        return f"{where} holds corrupt data ({text})"

    def _damaged(self, problem: str, verdict: str = "the file is damaged") -> DumpDamaged:
        return DumpDamaged(f"{self._label}: {problem} ({verdict})")
