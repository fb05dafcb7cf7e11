"""Altmetric's JSON database dump, read as a stream of records.

The dump is a `.tar.gz` (or a tar compressed otherwise, e.g. `.tar.zst`, a bare
`.tar`, or the directory it unpacks to) of JSON files that each hold one fetch-shaped
record, compact or pretty-printed, or several separated by newlines. `iter_records`
yields every record's exact bytes with where it came from (member, line, mtime) and
how far through the input it is, reports what is not a record and an archive cut
short or damaged as items rather than exceptions, and resumes after a given position.
`verify_dump` reads a file whole first, with every check its compression and its tar
framing carry, and raises `DumpDamaged` for a damaged one: what its end reveals would
come too late for records already used. It knows nothing of the store: importing is
the caller's business.

`items` (what is yielded), `layers` (the compression, undone and checked), `sources`
(tar stream or directory walk), `records` (one member split into records), `reader`
(iter_records), `integrity` (verify_dump).
"""

from harvester.dump.integrity import Verified, verify_dump
from harvester.dump.items import DumpItem, DumpRecord, Rejected, Truncated
from harvester.dump.reader import Position, iter_records
from harvester.dump.sources import JSON_SUFFIXES, input_size_bytes

__all__ = [
    "JSON_SUFFIXES",
    "DumpItem",
    "DumpRecord",
    "Position",
    "Rejected",
    "Truncated",
    "Verified",
    "input_size_bytes",
    "iter_records",
    "verify_dump",
]
