"""What reading a dump yields: a record, a rejected record, or the news that the archive
ends early. Three small frozen classes, so a caller matches on the type and never has
to guess from optional fields; each carries the compressed bytes consumed so far, so
a progress bar moves whatever the item is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DumpRecord:
    """One record: a JSON object, as the exact bytes the dump holds.

    `line` is 1-based within the member; a member that is one record (compact or
    pretty-printed) is line 1 and its `body` is the whole file, trailing newline
    included. A newline-delimited member's `body` is the line without its newline
    (and without a carriage return before it). `mtime_s` is the member's mtime in the
    archive, or the file's on disk. `consumed_bytes` is how much of the input (the
    compressed file; for a directory, the files read so far) has been read.
    """

    member: str
    line: int
    mtime_s: int
    body: bytes
    consumed_bytes: int

    @property
    def position(self) -> tuple[str, int]:
        """Where the record is: what `iter_records(start_after=...)` takes to resume."""
        return (self.member, self.line)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a JSON object (garbage, an array, cut short, not UTF-8).

    `reason` says what is wrong in a few words; `line` counts as in `DumpRecord` (a
    member that is not JSON as a whole is rejected once, at line 1).
    """

    member: str
    line: int
    reason: str
    consumed_bytes: int

    @property
    def position(self) -> tuple[str, int]:
        """Where the bad record is, as `DumpRecord.position`."""
        return (self.member, self.line)


@dataclass(frozen=True, slots=True)
class Truncated:
    """The archive ends early (cut short or corrupt) or fails a check at its end (a gzip
    CRC, data after the archive): always the last item yielded.

    `member` is the member being read when the input ran out (None between members);
    the records of it yielded before are complete, the rest of it is lost.
    """

    member: str | None
    reason: str
    consumed_bytes: int


DumpItem = DumpRecord | Rejected | Truncated
"""Everything `iter_records` yields."""
