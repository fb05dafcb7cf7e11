"""Where a dump's files come from: a tar archive read as a stream (through the
compression around it, undone and checked by `layers`), or a directory tree.

Both give the same thing, `Member`s in a fixed order with an open binary stream each,
and say how much of the input has been read. Nothing is ever written to disk and no
path inside an archive is ever used as a path: member names are only labels. Only
regular files whose names end in a JSON suffix are members; links, devices,
directories and everything else are passed over without being opened or followed.
"""

from __future__ import annotations

import itertools
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from harvester.dump import records
from harvester.dump.layers import TarBytes, open_layer
from harvester.errors import DumpDamaged, DumpError

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
CLEAN_END = "EOFHeaderError"  # tarfile's name for the zero block that ends an archive
CUT_SHORT = ("EmptyHeaderError", "TruncatedHeaderError")  # the input ended at or in a header
NOT_A_TAR_READ_ON_BYTES = 4 * 1024 * 1024  # see `_damage_soon_after`
PROGRESS_EVERY_MEMBERS = 64  # `verify` reports its progress this often
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


def is_json_member(info: tarfile.TarInfo) -> bool:
    """Whether a member of a tar archive is one of the dump's JSON files (a regular file)."""
    return info.isreg() and is_json_name(info.name)


class TarSource:
    """The members of a tar archive, bare or compressed (see `layers`), read as one stream.

    The archive is never seeked back in nor unpacked; memory stays flat however many
    members it holds (tarfile's list of the members read so far is emptied as it goes).
    Reading goes on to the file's very end: after the last member, the end-of-archive
    marker, then zeros only (tar's padding), then the compression's own end and checks.
    Whatever fails there raises `DumpDamaged` once the members are exhausted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: TarBytes | None = None
        self._read_bytes = 0  # where the file stood when it was closed
        self._header_faults: list[tarfile.HeaderError] = []
        self.compression: str | None = None  # known once checked: gzip, zstd...; None if bare

    def check(self) -> None:
        """Raise DumpError unless the file opens as a tar archive (reads one header);
        DumpDamaged when the compression around it shows damage first."""
        try:
            with self.path.open("rb") as raw:
                stream = open_layer(raw, str(self.path))
                self.compression = compression = stream.compression
                try:
                    _open_tar(stream, []).close()
                except (tarfile.TarError, EOFError) as error:
                    if compression:
                        self._damage_soon_after(stream)
                    what = f"a {compression} file holding no tar archive" if compression else None
                    raise DumpError(
                        f"{self.path}: {what or 'not a tar archive'} ({error}); "
                        "give the dump's .tar.gz, .tar.zst, .tar or unpacked directory"
                    ) from None
        except OSError as error:
            raise DumpError(f"{self.path}: cannot be read ({error.strerror})") from None

    def _damage_soon_after(self, stream: TarBytes) -> None:
        """Raise DumpDamaged if the compression shows damage within the next few MB: what
        did not read as a tar header may be damaged data whose check comes after it (a
        bzip2 block's CRC follows its up to 900 KB), not another kind of file."""
        read = 0
        for chunk in stream.rest():
            read += len(chunk)
            if read > NOT_A_TAR_READ_ON_BYTES:
                return

    def members(self) -> Iterator[Member]:
        """Each JSON member in archive order; its stream is valid until the next one.
        Once the last is yielded, the rest of the file is read and checked."""
        with self.path.open("rb") as raw:
            self._stream = stream = open_layer(raw, str(self.path))
            try:
                yield from self._members_of(stream)
            finally:
                self._read_bytes, self._stream = raw.tell(), None

    def _members_of(
        self, stream: TarBytes, wanted: Callable[[tarfile.TarInfo], bool] = is_json_member
    ) -> Iterator[Member]:
        """The members `wanted` picks (each read), then the archive's end, checked."""
        try:
            with _open_tar(stream, self._header_faults) as archive:
                while (info := archive.next()) is not None:
                    archive.members.clear()  # type: ignore[attr-defined]  # else it keeps them all
                    if wanted(info):
                        member = _tar_member(archive, info)
                        yield member
                        if member.cut_short:
                            return  # the input ended inside it: nothing follows
                self._check_end(archive, stream)
        except (tarfile.TarError, EOFError) as error:
            problem = f"the tar archive is cut short or damaged ({error})"
            raise self._damage(stream, problem, "the file is incomplete or damaged") from None

    def verify(self, on_progress: Callable[[int], None]) -> tuple[str, ...]:
        """Read the whole file as `members` does, passing over the members' data (which
        is decompressed and checked all the same); raise DumpDamaged at any damage.
        `on_progress` hears the bytes of the file read so far. Returns what could not
        be checked (`TarBytes.caveats`)."""
        with self.path.open("rb") as raw:
            stream = open_layer(raw, str(self.path))
            headers = itertools.count(1)

            def passed_over(_: tarfile.TarInfo) -> bool:
                if next(headers) % PROGRESS_EVERY_MEMBERS == 0:
                    on_progress(stream.consumed_bytes())
                return False

            for _ in self._members_of(stream, passed_over):
                pass  # none is read
            on_progress(stream.consumed_bytes())
            return stream.caveats()

    def _check_end(self, archive: tarfile.TarFile, stream: TarBytes) -> None:
        """Past the last member: its end-of-archive marker, then zeros to the very end."""
        offset = archive.offset
        last = self._header_faults[-1] if self._header_faults else None
        if last is None or type(last).__name__ in CUT_SHORT:
            problem = f"the tar archive is cut short: it ends at byte {offset:,} without its end"
            raise self._damage(stream, problem, "the file is incomplete or damaged")
        if type(last).__name__ != CLEAN_END:
            problem = f"the tar header at byte {offset:,} of the archive is damaged ({last})"
            raise self._damage(stream, problem)
        position = stream.tell()
        for chunk in stream.rest():
            if chunk.count(0) != len(chunk):
                where = position + len(chunk) - len(chunk.lstrip(b"\0"))
                problem = (
                    f"data follows the tar archive's end (at byte {where:,} of the archive; "
                    "tar would not read it either)"
                )
                raise self._damage(stream, problem, "the file is damaged, or two archives in one")
            position += len(chunk)

    def _damage(
        self, stream: TarBytes, problem: str, verdict: str = "the file is damaged"
    ) -> DumpDamaged:
        """The damage to report for a fault of the archive's framing: the compression's
        own, if reading on to its end shows one (the cause, then), else this one."""
        for _ in stream.rest():
            pass  # raises DumpDamaged for the compression's damage
        return DumpDamaged(f"{self.path}: {problem} ({verdict})")

    def consumed_bytes(self) -> int:
        """Bytes of the (compressed) file read so far."""
        return self._read_bytes if self._stream is None else self._stream.consumed_bytes()


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


def _open_tar(stream: TarBytes, faults: list[tarfile.HeaderError]) -> tarfile.TarFile:
    """tarfile over the archive's bytes (read forward only), noting each header it fails
    to read: tarfile ends the iteration quietly on a header cut short or damaged, and
    the note is how we can tell."""

    class NotingTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tarfile: tarfile.TarFile) -> NotingTarInfo:
            try:
                return super().fromtarfile(tarfile)
            except HEADER_ERROR as error:
                faults.append(error)
                raise

    fileobj = cast(IO[bytes], stream)  # all tarfile calls on it: read, tell, seek forward
    return tarfile.open(fileobj=fileobj, mode="r:", tarinfo=NotingTarInfo)


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
