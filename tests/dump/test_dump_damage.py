"""A damaged dump: cut short anywhere or corrupt, it yields everything before the damage
and then one `Truncated`, never an exception; and member names never touch the disk."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from harvester.dump import DumpItem, DumpRecord, Rejected, Truncated, iter_records
from harvester.errors import DumpError, HarvesterError
from harvester.sim.dump import write_dump


def positions(items: list[DumpItem]) -> list[tuple[str, int, bytes]]:
    return [(i.member, i.line, i.body) for i in items if isinstance(i, DumpRecord)]


def where(item: DumpItem) -> tuple[str, int]:
    assert isinstance(item, DumpRecord | Rejected)
    return item.position


@pytest.mark.parametrize("layout", ["ndjson", "per_file"])
@pytest.mark.parametrize("compressed", [True, False])
def test_a_cut_archive_yields_all_before_the_cut_then_truncated(tmp_path, layout, compressed):
    name = "dump.tar.gz" if compressed else "dump.tar"
    whole = write_dump(tmp_path / f"whole-{name}", 300, layout=layout, gzip=compressed)
    cut = write_dump(tmp_path / name, 300, layout=layout, gzip=compressed, truncate=True)
    assert cut.size_bytes < whole.size_bytes

    items = list(iter_records(cut.path))

    assert isinstance(items[-1], Truncated)
    assert items[-1].member in (cut.truncated_member, None)
    assert items[-1].consumed_bytes > 0
    found, complete = positions(items), positions(list(iter_records(whole.path)))
    assert found == complete[: len(found)]  # a prefix: nothing made up, nothing skipped
    assert cut.records_before_cut <= len(found) < cut.records


def test_a_cut_inside_a_newline_delimited_file_keeps_its_complete_lines(tmp_path):
    """In a .tar the cut falls where we choose: halfway into the last file's data."""
    cut = write_dump(tmp_path / "dump.tar", 200, layout="ndjson", gzip=False, truncate=True)
    items = list(iter_records(cut.path))
    in_cut_member = [
        i for i in items if isinstance(i, DumpRecord) and i.member == cut.truncated_member
    ]
    assert in_cut_member, "the complete lines before the cut are records"
    assert items[-1] == Truncated(
        cut.truncated_member,
        "the archive is cut short inside this member",
        items[-1].consumed_bytes,
    )


@pytest.mark.parametrize("keep_bytes", [512, 513, 1024, 1500, 5000, 20_000, 40_000])
def test_a_cut_anywhere_in_a_tar_is_reported_not_raised(tmp_path, keep_bytes):
    whole = write_dump(tmp_path / "dump.tar", 60, layout="per_file", gzip=False)
    data = whole.path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:keep_bytes])
    items = list(iter_records(cut))
    assert isinstance(items[-1], Truncated)
    assert positions(items) == positions(list(iter_records(whole.path)))[: len(positions(items))]


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
def test_a_cut_anywhere_in_a_tar_gz_is_reported_not_raised(tmp_path, fraction):
    whole = write_dump(tmp_path / "dump.tar.gz", 300, layout="mixed")
    data = whole.path.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: int(len(data) * fraction)])
    items = list(iter_records(cut))
    assert isinstance(items[-1], Truncated), items[-1]
    assert positions(items) == positions(list(iter_records(whole.path)))[: len(positions(items))]


def test_a_tar_cut_inside_its_first_header_is_not_a_tar(tmp_path):
    whole = write_dump(tmp_path / "dump.tar", 60, gzip=False)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.path.read_bytes()[:100])
    with pytest.raises(DumpError, match="not a tar archive"):
        iter_records(cut)


def test_corrupt_compressed_data_is_reported_not_raised(tmp_path):
    whole = write_dump(tmp_path / "dump.tar.gz", 300, layout="ndjson")
    data = bytearray(whole.path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    items = list(iter_records(bad))
    assert isinstance(items[-1], Truncated)
    assert "damaged" in items[-1].reason
    assert 0 < len(positions(items)) < 300


def test_resume_skips_up_to_and_including_the_position(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 300, layout="mixed", not_objects=3)
    items = list(iter_records(summary.path))
    for index in (0, 1, 50, 51, 52, 177, len(items) - 2):
        resumed = list(iter_records(summary.path, start_after=where(items[index])))
        assert resumed == items[index + 1 :], index
    assert list(iter_records(summary.path, start_after=where(items[-1]))) == []


def test_resume_after_a_rejected_record(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 300, layout="ndjson", not_objects=2)
    items = list(iter_records(summary.path))
    index = next(i for i, item in enumerate(items) if isinstance(item, Rejected))
    assert list(iter_records(summary.path, start_after=where(items[index]))) == items[index + 1 :]


def test_resume_after_a_member_the_dump_lacks_says_so(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 60)
    with pytest.raises(DumpError, match=r"has no member 'elsewhere/1\.json' to resume after"):
        list(iter_records(summary.path, start_after=("elsewhere/1.json", 3)))


def test_member_names_are_labels_never_paths(tmp_path, monkeypatch):
    """Traversal and absolute names, links, a device and a FIFO: read or skipped, and
    nothing is written anywhere."""
    work = tmp_path / "work" / "inner"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    outside = tmp_path / "outside"
    archive_path = tmp_path / "evil.tar.gz"
    record = b'{"altmetric_id": 1}'
    with tarfile.open(archive_path, "w:gz") as archive:
        for name in ("../../escape.json", f"{outside}/absolute.json", "./ok/../../up.json"):
            info = tarfile.TarInfo(name)
            info.size = len(record)
            archive.addfile(info, io.BytesIO(record))
        for kind, name, target in (
            (tarfile.SYMTYPE, "link.json", "/etc/passwd"),
            (tarfile.LNKTYPE, "hard.json", "../../escape.json"),
            (tarfile.CHRTYPE, "device.json", ""),
            (tarfile.FIFOTYPE, "fifo.json", ""),
            (tarfile.DIRTYPE, "folder.json", ""),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    items = list(iter_records(archive_path))

    assert [(i.member, i.body) for i in items if isinstance(i, DumpRecord)] == [
        ("../../escape.json", record),
        (f"{outside}/absolute.json", record),
        ("./ok/../../up.json", record),
    ]
    assert len(items) == 3
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not outside.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file or directory"),
        (lambda p: (p.write_text("hello\n"), p)[1], "not a tar archive"),
        (
            lambda p: (p.write_bytes(gzip.compress(b'{"a": 1}\n' * 100)), p)[1],
            "a gzip file holding no tar archive",
        ),
        (lambda p: (p.write_bytes(b""), p)[1], "not a tar archive"),
        (
            lambda p: (p.mkdir(), (p / "README").write_text("x"), p)[2],
            "no JSON files in this directory",
        ),
    ],
    ids=["missing", "text", "gzip-not-tar", "empty", "dir-without-json"],
)
def test_a_path_that_is_not_a_dump_raises_a_one_line_error_naming_it(tmp_path, make, message):
    path = make(tmp_path / "input")
    with pytest.raises(DumpError) as raised:
        iter_records(path)  # at the call, before anything is read
    text = str(raised.value)
    assert message in text and str(path) in text and "\n" not in text
    assert isinstance(raised.value, HarvesterError)


def test_a_tar_without_json_files_raises_once_read(tmp_path):
    path = tmp_path / "nothing.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("README.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    items = iter_records(path)
    with pytest.raises(DumpError, match="holds no JSON files"):
        list(items)


def test_a_fifo_is_not_a_dump(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DumpError, match="neither a file nor a directory"):
        iter_records(fifo)


def test_stopping_early_closes_the_file(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 200)
    items = iter_records(summary.path)
    next(items)
    items.close()  # no ResourceWarning (pytest turns warnings into errors)
    assert Path(summary.path).exists()
