"""Proven bytes only: `verify_dump` reads a dump whole with every check its compression
and its tar framing carry, and raises `DumpDamaged` naming the file and the damage;
`iter_records` meets the same checks as it reads, and ends with a `Truncated` when the
damage shows only at the end (after records that parse fine). Real files, compressed
by the formats' own libraries, damaged byte by byte."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from harvester.dump import DumpRecord, Truncated, iter_records, verify_dump
from harvester.errors import DumpDamaged, DumpError
from harvester.sim.dump import write_dump

COUNT = 120


def _members(data: bytes, parts: int, compress: Callable[[bytes], bytes]) -> bytes:
    """`data` cut in `parts` pieces, each compressed on its own, concatenated."""
    step = len(data) // parts + 1
    return b"".join(compress(data[at : at + step]) for at in range(0, len(data), step))


def _zstd(checksum: bool) -> Callable[[bytes], bytes]:
    return zstandard.ZstdCompressor(write_checksum=checksum).compress


COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "gzip-members": lambda data: _members(data, 3, lambda p: gzip.compress(p, mtime=0)),
    "bzip2": bz2.compress,
    "bzip2-streams": lambda data: _members(data, 3, bz2.compress),
    "xz": lzma.compress,
    "zstd": _zstd(True),
    "zstd-frames": lambda data: _members(data, 3, _zstd(True)),
}


@pytest.fixture(scope="module")
def tar_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small dump as a bare tar (both layouts, the quirks), to compress every way."""
    path = tmp_path_factory.mktemp("dump") / "dump.tar"
    write_dump(path, COUNT, layout="mixed", seed=4, gzip=False)
    return path.read_bytes()


def records(path: Path) -> list[tuple[str, int, bytes]]:
    items = list(iter_records(path))
    return [(i.member, i.line, i.body) for i in items if isinstance(i, DumpRecord)]


def written(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def flipped(data: bytes, offset: int, bit: int = 0x10) -> bytes:
    damaged = bytearray(data)
    damaged[offset] ^= bit
    return bytes(damaged)


def damage_of(path: Path) -> str:
    with pytest.raises(DumpDamaged) as raised:
        verify_dump(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("how", sorted(COMPRESSIONS))
def test_a_sound_dump_in_every_compression_verifies_and_reads_the_same(tmp_path, tar_bytes, how):
    bare = written(tmp_path, "dump.tar", tar_bytes)
    path = written(tmp_path, f"dump.{how}", COMPRESSIONS[how](tar_bytes))
    verified = verify_dump(path)
    assert verified.compression == how.split("-")[0]
    assert verified.caveats == ()
    assert records(path) == records(bare)
    assert len(records(path)) == COUNT
    assert not any(isinstance(item, Truncated) for item in iter_records(path))


@pytest.mark.parametrize("how", ["gzip", "zstd", "bzip2", "xz"])
def test_a_bit_flipped_anywhere_is_refused_or_changed_nothing(tmp_path, tar_bytes, how):
    """At fifty places from the first byte to the last (the header, all through the
    data, the trailer): the file is refused, or the flip fell on bits nothing reads (a
    gzip header's time, a zstd header's unused bit, a bzip2 stream's padding) and every
    record comes out as it was. Never an altered record."""
    good = COMPRESSIONS[how](tar_bytes)
    expected = records(written(tmp_path, "good", good))
    offsets = sorted({*range(0, len(good), max(1, len(good) // 50)), len(good) - 1})
    refused = 0
    for offset in offsets:
        path = written(tmp_path, f"dump-{offset}", flipped(good, offset))
        try:
            verify_dump(path)
        except DumpError as error:  # the header: it may no longer open as this format
            assert str(path) in str(error), offset
            refused += 1
        else:
            assert records(path) == expected, offset
    assert refused >= len(offsets) - 3


def test_damage_only_the_gzip_trailer_shows_is_refused(tmp_path, tar_bytes):
    """A flip in the CRC or the length: the compressed data is whole and every record
    parses as it was; only the end of the stream tells. The reader ends with a
    Truncated after the records it yielded before the end."""
    good = COMPRESSIONS["gzip"](tar_bytes)
    expected = records(written(tmp_path, "good.tar.gz", good))
    for offset, check in ((len(good) - 8, "CRC-32"), (len(good) - 1, "length")):
        damaged = flipped(good, offset, 0x01)
        assert zlib.decompress(damaged[10:-8], -zlib.MAX_WBITS) == tar_bytes  # data intact
        path = written(tmp_path, f"trailer-{offset}.tar.gz", damaged)
        assert f"gzip member 1 fails its {check} check (the file is damaged)" in damage_of(path)
        items = list(iter_records(path))
        found = [(i.member, i.line, i.body) for i in items if isinstance(i, DumpRecord)]
        assert found == expected[: len(found)]
        assert isinstance(items[-1], Truncated) and check in items[-1].reason


def test_damage_in_a_later_gzip_member_is_named(tmp_path, tar_bytes):
    good = COMPRESSIONS["gzip-members"](tar_bytes)
    second = good.index(b"\x1f\x8b\x08", 10)
    third = good.index(b"\x1f\x8b\x08", second + 10)
    path = written(tmp_path, "dump.tar.gz", flipped(good, (second + third) // 2))
    assert "gzip member 2 " in damage_of(path)
    crc = written(tmp_path, "crc.tar.gz", flipped(good, third - 8, 0x01))
    assert "gzip member 2 fails its CRC-32 check" in damage_of(crc)


@pytest.mark.parametrize("how", sorted(COMPRESSIONS))
@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97, -1])
def test_a_file_cut_short_is_damage(tmp_path, tar_bytes, how, fraction):
    good = COMPRESSIONS[how](tar_bytes)
    keep = len(good) - 1 if fraction == -1 else int(len(good) * fraction)
    path = written(tmp_path, "dump", good[:keep])
    with pytest.raises(DumpError) as raised:
        verify_dump(path)
    assert str(path) in str(raised.value)
    if fraction != 0.02:  # the first KB may not even open as an archive
        assert "cut short" in str(raised.value) and isinstance(raised.value, DumpDamaged)


@pytest.mark.parametrize("keep", [700, 5000, -4096, -10240, -10241])
def test_a_bare_tar_cut_short_is_damage(tmp_path, tar_bytes, keep):
    """Cut inside a member's data, between members, or inside the end blocks."""
    cut = tar_bytes[:keep]
    path = written(tmp_path, "dump.tar", cut)
    if not cut.endswith(bytes(1024)):  # two end blocks still whole: nothing is lost
        assert "cut short" in damage_of(path)


def test_a_damaged_tar_header_inside_sound_gzip_is_named(tmp_path, tar_bytes):
    """The compression is sound, the archive in it is not: a member's header fails its
    checksum (tarfile alone would quietly end there, as if the archive ended)."""
    header = tar_bytes.index(b"ustar", 20_000) - 257  # a header well inside the archive
    damaged_tar = flipped(tar_bytes, header + 3)  # in the member's name
    path = written(tmp_path, "dump.tar.gz", gzip.compress(damaged_tar, mtime=0))
    message = damage_of(path)
    assert f"the tar header at byte {header:,} of the archive is damaged" in message
    assert "bad checksum" in message
    bare = written(tmp_path, "dump.tar", damaged_tar)
    assert "the tar header" in damage_of(bare)


def test_after_the_archive_zeros_pass_and_anything_else_is_damage(tmp_path, tar_bytes):
    """Zero padding after tar's end blocks (tar's own) or after the compressed stream
    (tape blocks) is fine; data there would be an archive nobody reads: damage."""
    for name, data in (
        ("padded.tar.gz", gzip.compress(tar_bytes + bytes(30_000), mtime=0)),
        ("padded-file.tar.gz", gzip.compress(tar_bytes, mtime=0) + bytes(5000)),
        ("padded.tar", tar_bytes + bytes(7000)),
        ("padded.tar.zst", _zstd(True)(tar_bytes) + bytes(100)),
    ):
        assert verify_dump(written(tmp_path, name, data)).caveats == (), name
    appended = gzip.compress(tar_bytes + b"more data, say another archive", mtime=0)
    message = damage_of(written(tmp_path, "appended.tar.gz", appended))
    assert f"data follows the tar archive's end (at byte {len(tar_bytes):,}" in message
    for name, data in (
        ("trailing.tar.gz", gzip.compress(tar_bytes, mtime=0) + b"garbage"),
        ("trailing.tar.zst", _zstd(True)(tar_bytes) + b"\0\0garbage"),
        ("trailing.tar.xz", lzma.compress(tar_bytes) + b"garbage!"),
    ):
        assert "that are not" in damage_of(written(tmp_path, name, data)), name
    tail = tar_bytes + struct.pack("<I", 7)
    assert "data follows" in damage_of(written(tmp_path, "tail.tar", tail))


def test_two_archives_concatenated_are_refused_not_half_read(tmp_path, tar_bytes):
    """`cat a.tar.gz b.tar.gz`: tar (and we) would read only the first archive."""
    one = gzip.compress(tar_bytes, mtime=0)
    assert "data follows the tar archive's end" in damage_of(
        written(tmp_path, "two.tar.gz", one + one)
    )


def test_what_carries_no_checksum_is_said(tmp_path, tar_bytes):
    for name, data in (
        ("unchecked.tar.zst", _zstd(False)(tar_bytes)),
        ("unchecked.tar.xz", lzma.compress(tar_bytes, check=lzma.CHECK_NONE)),
        ("legacy.tar.lzma", lzma.compress(tar_bytes, format=lzma.FORMAT_ALONE)),
    ):
        path = written(tmp_path, name, data)
        verified = verify_dump(path)
        assert len(verified.caveats) == 1 and "no" in verified.caveats[0], name
        assert len(records(path)) == COUNT
    mixed = _zstd(True)(tar_bytes[:10_240]) + _zstd(False)(tar_bytes[10_240:])
    assert verify_dump(written(tmp_path, "mixed.tar.zst", mixed)).caveats == (
        "its zstd frames carry no checksum",
    )


def test_a_zstd_skippable_frame_is_passed_over(tmp_path, tar_bytes):
    skippable = struct.pack("<II", 0x184D2A50, 6) + b"pzstd!"
    path = written(tmp_path, "dump.tar.zst", skippable + _zstd(True)(tar_bytes))
    assert verify_dump(path).compression == "zstd"
    assert len(records(path)) == COUNT


def test_a_directory_has_nothing_to_verify(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.json").write_bytes(b'{"altmetric_id": 1}')
    assert verify_dump(tmp_path / "d").compression is None


def test_progress_is_told_in_bytes_of_the_file(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 1500, layout="per_file")
    heard: list[int] = []
    verify_dump(summary.path, on_progress=heard.append)
    assert heard == sorted(heard) and len(heard) > 2
    assert heard[-1] == summary.size_bytes


def test_not_a_dump_is_still_not_a_dump(tmp_path):
    path = written(tmp_path, "notes.tar.zst", _zstd(True)(b'{"a": 1}\n' * 100))
    with pytest.raises(DumpError, match="a zstd file holding no tar archive"):
        verify_dump(path)
    text = written(tmp_path, "notes.txt", b"hello\n")
    with pytest.raises(DumpError, match="not a tar archive"):
        verify_dump(text)


def test_a_big_member_read_line_by_line_meets_the_checks_too(tmp_path, monkeypatch):
    monkeypatch.setattr("harvester.dump.records.WHOLE_MEMBER_LIMIT_BYTES", 1000)
    body = b"".join(
        b'{"altmetric_id": %d, "x": "%s"}\n' % (n, os.urandom(40).hex().encode())
        for n in range(20_000)
    )
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("d/many.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    good = gzip.compress(archive.getvalue(), mtime=0)
    assert len(good) > 2 * 256 * 1024  # more than the first read: not refused at once
    path = written(tmp_path, "big.tar.gz", flipped(good, len(good) - 6, 0x01))
    items = list(iter_records(path))
    assert 0 < len(items) - 1 < 20_000 and isinstance(items[-1], Truncated)
    assert all(isinstance(item, DumpRecord) for item in items[:-1])
    assert "CRC-32" in items[-1].reason
