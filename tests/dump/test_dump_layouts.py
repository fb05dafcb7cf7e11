"""Reading a dump: both file layouts, every quirk as its exact bytes, records that are
not JSON objects reported where they are, the archive's order, and tar, tar.gz and
directory inputs giving the same records."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from pathlib import Path

import pytest

from harvester.dump import (
    DumpItem,
    DumpRecord,
    Rejected,
    Truncated,
    input_size_bytes,
    iter_records,
)
from harvester.sim.dump import PlannedMember, plan_members, write_dump

Found = tuple[str, int, bytes]


def records_of(path: Path, **kwargs: object) -> list[Found]:
    items = list(iter_records(path, **kwargs))  # type: ignore[arg-type]
    return [(item.member, item.line, item.body) for item in records_only(items)]


def records_only(items: list[DumpItem]) -> list[DumpRecord]:
    assert all(isinstance(item, DumpRecord) for item in items)
    return [item for item in items if isinstance(item, DumpRecord)]


def planned(members: list[PlannedMember]) -> list[Found]:
    return [(m.name, line, body) for m in members for line, body in m.records]


def write_tar(path: Path, files: dict[str, bytes], mtime_s: int = 1_700_000_000) -> Path:
    """A .tar.gz (or .tar, by the suffix) holding `files` in this order."""
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime_s
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("layout", ["ndjson", "per_file", "mixed"])
def test_every_record_is_read_as_its_exact_bytes_in_archive_order(tmp_path, layout):
    summary = write_dump(tmp_path / "dump.tar.gz", 300, layout=layout, seed=3)
    members = list(plan_members(300, layout=layout, seed=3))

    found = records_of(summary.path)

    assert found == planned(members)
    assert len(found) == summary.records == 300


def test_ndjson_files_hold_51_records_named_by_running_offset(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 120, layout="ndjson")
    items = list(iter_records(summary.path))
    names = list(dict.fromkeys(i.member for i in items if isinstance(i, DumpRecord)))
    assert [name.rsplit("/", 1)[1] for name in names] == [
        "17.txt.json.json",
        "68.txt.json.json",
        "119.txt.json.json",
    ]
    lines = [item.line for item in items if isinstance(item, DumpRecord)]
    assert lines[:51] == list(range(1, 52))
    assert all(b"\n" not in item.body for item in items if isinstance(item, DumpRecord))


def test_pretty_printed_single_records_are_one_record_each_whole(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 200, layout="per_file", seed=1)
    pretty = [
        item
        for item in iter_records(summary.path)
        if isinstance(item, DumpRecord) and item.body.startswith(b"{\n")
    ]
    assert pretty, "the generator pretty-prints a tenth of one-per-file records"
    assert all(item.line == 1 and item.body.endswith(b"}\n") for item in pretty)


def test_the_dumps_quirks_survive_as_exact_bytes(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 1500, layout="mixed", seed=7)
    bodies = [item.body for item in iter_records(summary.path) if isinstance(item, DumpRecord)]
    assert bodies == [
        body for _, _, body in planned(list(plan_members(1500, layout="mixed", seed=7)))
    ]
    joined = b"\x1e".join(bodies)
    for quirk in (
        b'"posts":[]',
        b'"demographics":[]',
        b'"mendeley":"',  # a number as a string
        b'"citeulike":-1',
        "Ã¼".encode(),  # "ü" as UTF-8 read as Latin-1: mojibake
        b'"history":{',  # instead of score_history
        b'"selected_quotes":',
        b'"bluesky":',
        b'"followers":',
        b'"context":{"all"',
    ):
        assert quirk in joined, quirk
    assert any(b'"images":' not in body for body in bodies)  # keys come and go


def test_records_that_are_not_json_objects_are_reported_with_member_and_line(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 400, layout="mixed", not_objects=6, seed=2)
    items = list(iter_records(summary.path))
    rejected = [item for item in items if isinstance(item, Rejected)]
    assert [item.position for item in rejected] == list(summary.rejects)
    assert len(rejected) == 6
    assert sum(isinstance(item, DumpRecord) for item in items) == 400
    assert all(item.reason for item in rejected)


def test_what_is_wrong_with_a_record_is_said(tmp_path):
    lines = [b'{"ok":1}', b"[1, 2]", b'"text"', b"null", b"3", b'{"cut": ', b'{"a": "\xff"}', b"}{"]
    path = write_tar(tmp_path / "d.tar.gz", {"d/1.txt.json.json": b"\n".join(lines) + b"\n"})
    reasons = {item.line: item.reason for item in iter_records(path) if isinstance(item, Rejected)}
    assert reasons == {
        2: "an array, not a JSON object",
        3: "a string, not a JSON object",
        4: "null, not a JSON object",
        5: "a number, not a JSON object",
        6: "not JSON: Input data was truncated",
        7: "not UTF-8 at byte 7",
        8: "not JSON: JSON is malformed: invalid character (byte 0)",
    }


def test_each_member_is_split_as_its_layout_says(tmp_path):
    files = {
        "d/compact.json": b'{"a":1}',
        "d/compact_newline.json": b'{"a":1}\n',
        "d/pretty.json": b'{\n  "a": [\n    1\n  ]\n}\n',
        "d/crlf.ndjson": b'{"a":1}\r\n\r\n{"b":2}\r\n',
        "d/blank_first.jsonl": b'\n\n{"a":1}\n{"b":2}',
        "d/garbage_first.json": b'oops\n{"a":1}\n{"b":2}\n',
        "d/broken_pretty.json": b'{\n  "a": [\n    1\n',
        "d/array.json": b"[\n  1\n]\n",
        "d/empty.json": b"",
        "d/blank.json": b"\n \n",
        "d/README.txt": b"not read",
    }
    path = write_tar(tmp_path / "d.tar.gz", files)
    got = []
    for item in iter_records(path):
        assert isinstance(item, DumpRecord | Rejected)
        body = item.body if isinstance(item, DumpRecord) else None
        got.append((item.member[2:], item.line, body))
    assert got == [
        ("compact.json", 1, b'{"a":1}'),
        ("compact_newline.json", 1, b'{"a":1}\n'),
        ("pretty.json", 1, files["d/pretty.json"]),
        ("crlf.ndjson", 1, b'{"a":1}'),
        ("crlf.ndjson", 3, b'{"b":2}'),
        ("blank_first.jsonl", 3, b'{"a":1}'),
        ("blank_first.jsonl", 4, b'{"b":2}'),
        ("garbage_first.json", 1, None),
        ("garbage_first.json", 2, b'{"a":1}'),
        ("garbage_first.json", 3, b'{"b":2}'),
        ("broken_pretty.json", 1, None),  # rejected once, not once a line
        ("array.json", 1, None),
    ]


def test_tar_tar_gz_and_directory_give_the_same_records(tmp_path):
    gz = write_dump(tmp_path / "dump.tar.gz", 250, layout="mixed", seed=5)
    tar = write_dump(tmp_path / "dump.tar", 250, layout="mixed", seed=5, gzip=False)
    directory = tmp_path / "unpacked"
    for member in plan_members(250, layout="mixed", seed=5):
        target = directory / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(member.data)
        os.utime(target, (member.mtime_s, member.mtime_s))
    (directory / "notes.txt").write_text("skipped")
    (directory / "link.json").symlink_to(directory / "notes.txt")  # never followed

    from_gz, from_tar = list(iter_records(gz.path)), list(iter_records(tar.path))
    from_dir = list(iter_records(directory))

    def keyed(items: list[DumpItem]) -> list[tuple[str, int, bytes, int]]:
        return sorted((i.member, i.line, i.body, i.mtime_s) for i in records_only(items))

    assert keyed(from_gz) == keyed(from_tar)
    assert [i.member for i in from_gz] == [i.member for i in from_tar]
    assert len(from_gz) == len(from_tar) == 250
    assert keyed(from_dir) == keyed(from_gz)  # a directory is walked in sorted order
    names = [i.member for i in records_only(from_dir)]
    assert names == sorted(names, key=lambda name: (name.rsplit("/", 1)[0], name))


def test_mtime_is_the_members_and_consumed_bytes_grow_to_the_file_size(tmp_path):
    summary = write_dump(tmp_path / "dump.tar.gz", 2000, layout="ndjson")
    items = list(iter_records(summary.path))
    mtimes = [item.mtime_s for item in items if isinstance(item, DumpRecord)]
    assert mtimes[0] == min(mtimes) and mtimes == sorted(mtimes)
    consumed = [item.consumed_bytes for item in items]
    assert consumed == sorted(consumed)
    assert 0 < consumed[0] < consumed[-1] <= input_size_bytes(summary.path) == summary.size_bytes
    assert not any(isinstance(item, Truncated) for item in items)


def test_files_too_big_to_read_whole_are_read_line_by_line(tmp_path, monkeypatch):
    """The same records, one line at a time; a big file that is not one record a line
    is rejected once (it could not be parsed without holding it whole)."""
    summary = write_dump(tmp_path / "dump.tar.gz", 300, layout="ndjson", seed=8, not_objects=4)
    whole = list(iter_records(summary.path))
    big_pretty = b"{\n" + b'  "a": 1,\n' * 2000 + b'  "b": 2\n}\n'
    odd = write_tar(tmp_path / "odd.tar", {"d/pretty.json": big_pretty, "d/one.json": b'{"a":1}'})

    monkeypatch.setattr("harvester.dump.records.WHOLE_MEMBER_LIMIT_BYTES", 1000)
    by_line = list(iter_records(summary.path))
    odd_items = list(iter_records(odd))

    def unplaced(items: list[DumpItem]) -> list[DumpItem]:  # the reads end at other places
        return [dataclasses.replace(item, consumed_bytes=0) for item in items]

    assert unplaced(by_line) == unplaced(whole)
    assert sum(isinstance(i, Rejected) for i in by_line) == 4
    assert len(odd_items) == 2
    assert isinstance(odd_items[0], Rejected) and "not one record a line" in odd_items[0].reason
    assert isinstance(odd_items[1], DumpRecord) and odd_items[1].body == b'{"a":1}'
