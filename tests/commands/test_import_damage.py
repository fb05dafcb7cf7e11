"""`harvester import` of a damaged dump: proven bytes only. The file is read whole with
every check its compression and its tar archive carry before any record is stored; a
damaged one gets one line on stderr naming the file and the damage, exit 1, and leaves
the store as it was (no store at all if there was none). A good copy imported later
completes the store as if the damaged one had never been tried.

Real files: dumps from the simulator's generator, compressed by the formats' own
libraries, damaged byte by byte; the command is a real subprocess.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from helpers import harvester, rows

from harvester.sim.dump import write_dump

COUNT = 60
Damage = Callable[[bytes], bytes]


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def _gzip_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0)


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "tar.gz": lambda data: gzip.compress(data, mtime=0),
    "tar.gz2": _gzip_members,  # two gzip members, as pigz or `cat` make
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar.zst": _zstd,
}


def flip(offset: int, bit: int = 0x04) -> Damage:
    """A bit flipped at `offset` (negative: from the end)."""

    def damage(data: bytes) -> bytes:
        damaged = bytearray(data)
        damaged[offset] ^= bit
        return bytes(damaged)

    return damage


def flip_at(fraction: float) -> Damage:
    return lambda data: flip(int(len(data) * fraction))(data)


def in_second_member(data: bytes) -> bytes:
    second = data.index(b"\x1f\x8b\x08", 10)
    return flip(second + (len(data) - second) // 2)(data)


def cut(fraction: float) -> Damage:
    return lambda data: data[: int(len(data) * fraction)]


@pytest.fixture(scope="module")
def tar_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("dump") / "dump.tar"
    write_dump(path, COUNT, layout="mixed", seed=21, gzip=False)
    return path.read_bytes()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused(db: Path, dump: Path) -> str:
    """Import `dump`, expecting the refusal: its one line on stderr."""
    done = harvester("--db", str(db), "import", str(dump))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"harvester import: {dump}: ")
    assert lines[0].endswith(": nothing imported")
    return lines[0]


@pytest.mark.parametrize(
    ("suffix", "damage", "said"),
    [
        ("tar.gz", flip(3), "gzip member 1 holds corrupt data"),  # the header's flags
        ("tar.gz", flip(10), "gzip member 1 "),  # the first compressed byte
        ("tar.gz", flip_at(0.5), "gzip member 1 "),
        ("tar.gz", flip(-100), "gzip member 1 "),
        ("tar.gz", flip(-7, 0x01), "gzip member 1 fails its CRC-32 check"),  # trailer
        ("tar.gz", flip(-2, 0x01), "gzip member 1 fails its length check"),  # trailer
        ("tar.gz", cut(0.6), "cut short: the file ends inside gzip member 1"),
        ("tar.gz", cut(0.999), "cut short"),
        ("tar.gz2", in_second_member, "gzip member 2 "),
        ("tar.zst", flip(6), "zstd frame 1 "),  # in the frame's header
        ("tar.zst", flip_at(0.5), "zstd frame 1 "),
        ("tar.zst", flip(-100), "zstd frame 1 "),
        ("tar.zst", flip(-2, 0x01), "zstd frame 1 fails its checksum check"),
        ("tar.zst", cut(0.5), "cut short: the file ends inside zstd frame 1"),
        ("tar.bz2", flip_at(0.5), "bzip2 stream 1 holds corrupt data"),
        ("tar.bz2", cut(0.7), "cut short"),
        ("tar.xz", flip_at(0.5), "xz stream 1 holds corrupt data"),
        ("tar.xz", cut(0.7), "cut short"),
        ("tar.gz", lambda data: data + b"appended", "bytes that are not gzip data follow"),
    ],
)
def test_a_damaged_dump_stores_nothing_and_says_what_is_wrong(
    tmp_path: Path, tar_bytes: bytes, suffix: str, damage: Damage, said: str
) -> None:
    dump = write(tmp_path / f"dump.{suffix}", damage(COMPRESS[suffix](tar_bytes)))
    db = tmp_path / "s.db"
    line = refused(db, dump)
    assert said in line, line
    assert "damaged" in line
    assert not db.exists()  # no store was made for it


def test_damage_inside_the_archive_itself_is_refused_too(tmp_path: Path, tar_bytes: bytes) -> None:
    """Sound compression around a broken archive: a header failing its checksum, an
    archive cut before its end, and data after its end (another archive appended)."""
    header = tar_bytes.index(b"ustar", 20_000) - 257
    bad_header = flip(header + 2)(tar_bytes)
    for name, data, said in (
        ("header.tar.gz", bad_header, f"the tar header at byte {header:,} of the archive"),
        ("header.tar", bad_header, "the tar header"),
        ("cut.tar.gz", tar_bytes[: header + 512 + 100], "the tar archive is cut short"),
        ("cut.tar", tar_bytes[: header + 512 + 100], "the tar archive is cut short"),
        ("two.tar.gz", tar_bytes + tar_bytes, "data follows the tar archive's end"),
    ):
        compressed = COMPRESS["tar.gz"](data) if name.endswith(".gz") else data
        line = refused(tmp_path / "s.db", write(tmp_path / name, compressed))
        assert said in line, line


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_every_compression_imports_whole_and_zero_padding_is_no_damage(
    tmp_path: Path, tar_bytes: bytes, suffix: str
) -> None:
    """Zeros after tar's end blocks (as tar pads) and after the compressed data (as
    tapes and some tools pad) are not damage."""
    data = COMPRESS[suffix](tar_bytes + bytes(20_480)) + bytes(512)
    dump = write(tmp_path / f"dump.{suffix}", data)
    db = tmp_path / "s.db"
    done = harvester("--db", str(db), "import", str(dump))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {COUNT}, already present 0, rejected 0"
    assert "harvester import:" not in done.stderr  # nothing to warn of
    assert rows(db, "SELECT count(*) FROM responses") == [(COUNT,)]


def test_zstd_frames_without_a_checksum_import_and_say_what_was_checked(
    tmp_path: Path, tar_bytes: bytes
) -> None:
    data = zstandard.ZstdCompressor(write_checksum=False).compress(tar_bytes)
    dump = write(tmp_path / "dump.tar.zst", data)
    db = tmp_path / "s.db"
    done = harvester("--db", str(db), "import", str(dump))
    assert done.returncode == 0, done.stderr
    assert (
        f"harvester import: {dump}: its zstd frames carry no checksum: only its framing "
        "could be checked, not the bytes of the records"
    ) in done.stderr
    assert rows(db, "SELECT count(*) FROM responses") == [(COUNT,)]


def test_a_good_copy_imported_after_a_damaged_one_completes_the_store(
    tmp_path: Path, tar_bytes: bytes
) -> None:
    """A store with an earlier import in it: the damaged file adds nothing and leaves
    no resume point; its good copy, at the same path, then imports whole, and the store
    ends as if the damaged one had never been tried."""
    other = write_dump(tmp_path / "other.tar.gz", 40, seed=22)
    good = COMPRESS["tar.gz"](tar_bytes)
    dump = tmp_path / "dump.tar.gz"
    tried, clean = tmp_path / "tried.db", tmp_path / "clean.db"
    for db in (tried, clean):
        assert harvester("--db", str(db), "import", str(other.path)).returncode == 0
    before = store_contents(tried)

    write(dump, flip(-7, 0x01)(good))  # only the CRC tells
    assert "fails its CRC-32 check" in refused(tried, dump)
    assert store_contents(tried) == before

    write(dump, good)
    for db in (tried, clean):
        done = harvester("--db", str(db), "import", str(dump))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"imported {COUNT}, already present 0, rejected 0"
        assert "resuming" not in done.stderr
    assert store_contents(tried) == store_contents(clean)
    assert rows(tried, "SELECT count(*) FROM responses") == [(COUNT + 40,)]


def store_contents(db: Path) -> list[tuple[object, ...]]:
    return rows(
        db,
        """SELECT jobs.id_type, jobs.identifier, jobs.state, responses.sha256,
                  responses.fetched_at
           FROM jobs LEFT JOIN responses ON responses.job_id = jobs.id
           ORDER BY 1, 2, 4""",
    )
