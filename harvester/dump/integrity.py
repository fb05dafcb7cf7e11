"""`verify_dump`: a dump read once, whole, before any record of it is used.

Most of what proves a compressed file sound comes at its end: gzip's CRC-32 and length
of a member follow all of its data, and what follows the tar archive's end must be
read to be known harmless. A record of a damaged file would have been stored by then,
looking sound. So a caller that stores records reads the file once first, here, to its
very end, with every check its format carries (see `layers`) and the archive's framing
(every header's checksum, the end-of-archive marker, zeros only after it), streaming
with bounded memory; then it reads the records, which meet the same checks again.

A bare tar carries no checksum of its members' data, only of its headers; a directory
carries none at all: for those, reading is all there is to check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harvester.dump.sources import DirectorySource, open_source


@dataclass(frozen=True, slots=True)
class Verified:
    """What `verify_dump` found: the compression it checked (None for a bare tar or a
    directory) and what it could not check, each a phrase for the user (a format that
    carries no checksum of the bytes it holds), empty when everything was checked."""

    compression: str | None
    caveats: tuple[str, ...]


def verify_dump(
    path: str | os.PathLike[str], *, on_progress: Callable[[int], None] | None = None
) -> Verified:
    """Read the dump at `path` whole, checking it; `on_progress` hears how many bytes of
    the file have been read (for a progress bar against `input_size_bytes`).

    Raises DumpDamaged (a DumpError) naming the file and what is wrong when a check
    fails, the file ends early or something follows the archive's end; DumpError
    when `path` is not a dump at all. A directory is not read (nothing to check).
    """
    source = open_source(Path(path))
    if isinstance(source, DirectorySource):
        return Verified(None, ())
    caveats = source.verify(on_progress or _ignore)
    return Verified(source.compression, caveats)


def _ignore(_: int) -> None:
    """No progress to show."""
