"""Where a dump's files come from: a tar archive read as a stream, or a directory tree.

Both give the same thing, `Member`s in a fixed order with an open binary stream each,
and say how much of the input has been read. Nothing is ever written to disk and no
path inside an archive is ever used as a path: member names are only labels. Only
regular files whose names end in a JSON suffix are members; links, devices,
directories and everything else are passed over without being opened or followed.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harvester.dump import records
from harvester.errors import DumpError

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
GZIP_MAGIC = b"\x1f\x8b"
CLEAN_END = "EOFHeaderError"  # tarfile's name for the zero block that ends an archive
HEADER_ERROR = tarfile.HeaderError  # a name the override's `tarfile` argument cannot hide


@dataclass(frozen=True, slots=True)
class Member:
    """One JSON file of the dump: its bytes in `data` (shorter than `size_bytes` when the
    archive is cut short inside it), or for a file over `WHOLE_MEMBER_LIMIT_BYTES` an
    open `stream`, valid until the next member, to read once front to back."""

    name: str
    mtime_s: int
    size_bytes: int
    data: bytes | None
    stream: IO[bytes] | None = None

    @property
    def cut_short(self) -> bool:
        """Whether the input ended inside this member."""
        return self.data is not None and len(self.data) < self.size_bytes


def is_json_name(name: str) -> bool:
    """Whether a file name is one of the dump's JSON files. macOS's "._" companions
    (resource forks that tar archives made on a Mac carry) are not, whatever their suffix."""
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(JSON_SUFFIXES) and not base.startswith("._")


class TarSource:
    """The members of a tar archive (plain, gzip, bzip2 or xz), read as one stream.

    The archive is never seeked in nor unpacked; memory stays flat however many
    members it holds (tarfile's list of the members read so far is emptied as it goes).
    `cut_short` says, once the members are exhausted, whether the archive ended
    without its end-of-archive blocks (cut short between or inside member headers).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._read_bytes = 0  # where the file stood when it was closed
        self._header_faults: list[tarfile.HeaderError] = []

    def check(self) -> None:
        """Raise DumpError unless the file opens as a tar archive (reads one header)."""
        magic = b""
        try:
            with self.path.open("rb") as raw:
                magic = raw.read(2)
                raw.seek(0)
                tarfile.open(fileobj=raw, mode="r|*").close()
        except (tarfile.TarError, EOFError, zlib.error) as error:
            what = "a gzip file holding no tar archive" if magic == GZIP_MAGIC else None
            raise DumpError(
                f"{self.path}: {what or 'not a tar archive'} ({error}); "
                "give the dump's .tar.gz, .tar or unpacked directory"
            ) from None
        except OSError as error:
            raise DumpError(f"{self.path}: cannot be read ({error.strerror})") from None

    def members(self) -> Iterator[Member]:
        """Each JSON member in archive order; its stream is valid until the next one."""
        with self.path.open("rb") as raw:
            self._file = raw
            try:
                yield from self._members_of(raw)
            finally:
                self._read_bytes, self._file = raw.tell(), None

    def _members_of(self, raw: IO[bytes]) -> Iterator[Member]:
        with _open_stream(raw, self._header_faults) as archive:
            while (info := archive.next()) is not None:
                archive.members.clear()  # type: ignore[attr-defined]  # else it keeps them all
                if info.isreg() and is_json_name(info.name):
                    member = _tar_member(archive, info)
                    yield member
                    if member.cut_short:
                        return  # the input ended inside it: nothing follows

    def consumed_bytes(self) -> int:
        """Bytes of the (compressed) file read so far."""
        return self._read_bytes if self._file is None else self._file.tell()

    def cut_short(self) -> str | None:
        """Why the archive ended early, or None when it ended with its end marker."""
        last = self._header_faults[-1] if self._header_faults else None
        if last is not None and type(last).__name__ != CLEAN_END:
            why = str(last) or "no data"
            return f"the archive is damaged or cut short: no end-of-archive marker ({why})"
        return None


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    """A member read whole straight from the stream: tarfile's file object for it costs
    more than reading (~10 us a member); a read that comes up short marks a cut. Sparse
    and huge members go through that file object."""
    name, mtime_s, size = info.name, int(info.mtime), info.size
    limit = records.WHOLE_MEMBER_LIMIT_BYTES
    whole = size <= limit and not info.issparse()
    if whole and archive.fileobj.tell() == info.offset_data:
        return Member(name, mtime_s, size, archive.fileobj.read(size))
    stream = archive.extractfile(info)
    if size <= limit and stream is not None:
        return Member(name, mtime_s, size, stream.read())
    return Member(name, mtime_s, size, None, stream)


def _open_stream(raw: IO[bytes], faults: list[tarfile.HeaderError]) -> tarfile.TarFile:
    """tarfile in stream mode, noting each header it fails to read: tarfile ends the
    iteration quietly on a header cut short, and the note is how we can tell."""

    class NotingTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tarfile: tarfile.TarFile) -> NotingTarInfo:
            try:
                return super().fromtarfile(tarfile)
            except HEADER_ERROR as error:
                faults.append(error)
                raise

    return tarfile.open(fileobj=raw, mode="r|*", tarinfo=NotingTarInfo)


class DirectorySource:
    """The JSON files under a directory, depth first: a directory's files sorted by
    name, then its subdirectories sorted by name; symbolic links are never followed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done_bytes = 0
        self._current: IO[bytes] | None = None

    def check(self) -> None:
        """Raise DumpError unless at least one JSON file is under the directory."""
        if next(self.json_files(), None) is None:
            raise DumpError(
                f"{self.path}: no JSON files in this directory "
                f"(looked for {', '.join(JSON_SUFFIXES)} under it)"
            )

    def members(self) -> Iterator[Member]:
        """Each JSON file, opened in turn and closed before the next."""
        for relative, entry in self.json_files():
            info = entry.stat(follow_symlinks=False)
            with open(entry.path, "rb") as stream:
                self._current = stream
                mtime_s, size = int(info.st_mtime), info.st_size
                if size <= records.WHOLE_MEMBER_LIMIT_BYTES:
                    yield Member(relative, mtime_s, size, stream.read())
                else:
                    yield Member(relative, mtime_s, size, None, stream)
                self._current = None
            self._done_bytes += info.st_size

    def consumed_bytes(self) -> int:
        """Bytes of the files read so far (all of the finished ones, part of this one)."""
        current = self._current
        return self._done_bytes + (current.tell() if current and not current.closed else 0)

    def cut_short(self) -> str | None:
        """A directory is never cut short."""
        return None

    def json_files(self) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(path relative to the root, entry) of each regular JSON file, depth first."""
        pending: list[tuple[str, str]] = [("", str(self.path))]
        while pending:
            prefix, directory = pending.pop()
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            below = []
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    below.append((relative + "/", entry.path))
                elif entry.is_file(follow_symlinks=False) and is_json_name(entry.name):
                    yield relative, entry
            pending.extend(reversed(below))


def open_source(path: Path) -> TarSource | DirectorySource:
    """The source for a dump path, checked: DumpError names the path when it is
    missing, neither a file nor a directory, not a tar archive, or holds no JSON."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DumpError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise DumpError(f"{path}: cannot be read ({error.strerror})") from None
    source: TarSource | DirectorySource
    if stat.S_ISDIR(mode):
        source = DirectorySource(path)
    elif stat.S_ISREG(mode):
        source = TarSource(path)
    else:
        raise DumpError(f"{path}: neither a file nor a directory")
    source.check()
    return source


def input_size_bytes(path: str | os.PathLike[str]) -> int:
    """The size `consumed_bytes` counts towards: the file's, or for a directory the sum
    of its JSON files' (a walk of the tree), for a progress bar's share and ETA."""
    root = Path(path)
    if root.is_dir():
        files = DirectorySource(root).json_files()
        return sum(entry.stat(follow_symlinks=False).st_size for _, entry in files)
    return root.stat().st_size
