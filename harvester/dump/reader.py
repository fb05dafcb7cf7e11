"""`iter_records`: a dump, streamed, as records, rejected records and at most one
`Truncated` at the end. What goes wrong inside the dump is reported, never raised:
a bad record is a `Rejected` and reading goes on; an archive cut short, corrupt, or
failing a check at its end (a gzip CRC, what follows the archive) ends the iteration
with a `Truncated` after every record read before the damage was seen. Only a path
that is not a dump at all, or whose damage shows in the first bytes read (all of a
small file), raises (`DumpError`), before anything is read. The damage a file's end
reveals comes after its records: a caller that must not use a record of a damaged file
runs `verify_dump` first.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Generator, Iterator
from pathlib import Path

from harvester.dump.items import DumpItem, DumpRecord, Rejected, Truncated
from harvester.dump.records import Piece, split_bytes, split_member
from harvester.dump.sources import DirectorySource, Member, TarSource, open_source
from harvester.errors import DumpDamaged, DumpError

Position = tuple[str, int]
"""(member name, line): where a record is, and where a resumed read starts after."""

# What reading a damaged archive raises besides DumpDamaged (the compression's checks,
# the archive's end): tarfile's errors (data cut short, a bad header).
DAMAGE = (tarfile.TarError, EOFError)


def iter_records(
    path: str | os.PathLike[str], *, start_after: Position | None = None
) -> Generator[DumpItem, None, None]:
    """Stream the dump at `path` (a tar, bare or gzip, bzip2, xz or zstd compressed, or a
    directory): each record as a `DumpRecord` or `Rejected`, in member order then line
    order, and a final `Truncated` if the archive ends early or fails a check.

    `start_after` resumes: everything up to and including that position is skipped
    (members before it are passed over unparsed). Nothing is written to disk; memory
    holds one member at most when it must be read whole, else one line.

    Close the generator (or read it to the end) to close the file. Raises DumpError
    at once when `path` is missing or not a dump; later, when the dump holds no JSON
    file, or `start_after` names a member it does not hold.
    """
    source = open_source(Path(path))
    return _items(source, start_after)


def _items(
    source: TarSource | DirectorySource, start_after: Position | None
) -> Generator[DumpItem, None, None]:
    """The generator behind iter_records (see there)."""
    skip_to: str | None = None
    skip_lines = 0
    if start_after is not None:
        skip_to, skip_lines = start_after
    member_name: str | None = None
    seen_any = False
    try:
        for member in source.members():
            seen_any = True
            if skip_to is not None:
                if member.name != skip_to:
                    continue  # before the resume point: not even read
                skip_to, floor = None, skip_lines
            else:
                floor = 0
            member_name = member.name
            for line, body, fault in _pieces(member):
                if line <= floor:
                    continue
                consumed = source.consumed_bytes()
                if fault is None:
                    yield DumpRecord(member.name, line, member.mtime_s, body, consumed)
                else:
                    yield Rejected(member.name, line, fault.reason, consumed)
            if member.cut_short:
                reason = "the archive is cut short inside this member"
                yield Truncated(member.name, reason, source.consumed_bytes())
                return
            member_name = None
    except DumpDamaged as error:
        yield Truncated(member_name, str(error), source.consumed_bytes())
        return
    except DAMAGE as error:
        reason = f"the archive is damaged or cut short ({error})"
        yield Truncated(member_name, reason, source.consumed_bytes())
        return
    _check_finished(source.path, seen_any, skip_to)


def _pieces(member: Member) -> Iterator[Piece]:
    if member.data is not None:
        return split_bytes(member.data, complete=not member.cut_short)
    assert member.stream is not None
    return split_member(member.stream, member.size_bytes)


def _check_finished(path: Path, seen_any: bool, skip_to: str | None) -> None:
    """Raise DumpError for a dump read to its end that held nothing to read."""
    if not seen_any:
        raise DumpError(f"{path}: holds no JSON files (*.json, *.jsonl, *.ndjson)")
    if skip_to is not None:
        raise DumpError(f"{path}: has no member {skip_to!r} to resume after; is it the same dump?")
