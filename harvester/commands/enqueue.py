"""Turn a file of identifiers into pending jobs, in bulk.

Lines stream through the parser into `store.jobs.add`, which inserts in large
batches, so a million lines take seconds and memory stays flat. Bad lines never stop
the run: each is reported with its line number and reason, and the good ones are
queued. Every line is bounded before it is parsed.
"""

from __future__ import annotations

import gc
import io
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from harvester.commands.context import Invocation, new_store_kept_if_used
from harvester.errors import CommandError, IdentifierError, NotTextError
from harvester.identifiers import Identifier, canonical_type, parse_line
from harvester.logs import MESSAGE_CHARS
from harvester.model import ExitCode
from harvester.progress import ProgressLine, write_above
from harvester.store import Store

MAX_LINE_CHARS = 4096
SNIFF_BYTES = 64 * 1024  # looked at for UTF-8
SCAN_BYTES = 1 << 20  # scanned for NUL bytes, a chunk at a time
SPOOL_IN_MEMORY_BYTES = 64 << 20
REJECTS_SHOWN = 20


def cmd_enqueue(
    invocation: Invocation, file: str, *, id_type: str | None, priority: int
) -> ExitCode:
    """`harvester enqueue [--type T] [--priority N] [FILE|-]`: `file` is a path, or
    `-` for standard input."""
    default_type = canonical_type(id_type) if id_type else None
    path = invocation.settings().store.path
    rejections = RejectionReport(sys.stderr)
    progress = ProgressLine("enqueue")
    # The input is checked before the store is opened: a binary file creates nothing.
    with _input(file) as stream, new_store_kept_if_used(path) as store:
        report = enqueue_stream(
            store,
            stream,
            default_type=default_type,
            priority=priority,
            on_reject=rejections.add,
            on_progress=progress.update,
        )
    progress.close()
    rejections.summarise()
    print(
        f"added {report.added:,}, already queued {report.already_queued:,}, "
        f"rejected {report.rejected:,}"
    )
    return ExitCode.FAILURE if report.rejected else ExitCode.OK


@contextmanager
def _input(name: str) -> Iterator[IO[str]]:
    if name == "-":
        if sys.stdin.isatty():
            print(
                "harvester enqueue: reading identifiers from standard input, one per line "
                "(end with Ctrl-D)",
                file=sys.stderr,
            )
        yield open_identifier_text(sys.stdin.buffer, "standard input")
        return
    try:
        handle = open(name, "rb")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot read {name}: {error.strerror}") from None
    with handle:
        yield open_identifier_text(handle, name)


def open_identifier_text(raw: BinaryIO, name: str) -> IO[str]:
    """The input as UTF-8 text, once all of it has been seen to be text.

    A binary file (NUL bytes anywhere: gzip, UTF-16, a spreadsheet) or one whose
    first 64 KiB are not UTF-8 would otherwise yield a wall of rejects, one a line,
    and queue whatever lines happened to parse; it gets one message and queues
    nothing. So the whole input is read once before the first line is parsed: a file
    in place (a NUL scan at disk speed), a pipe or terminal into a spooled copy.
    """
    source = raw if _seekable(raw) else _spooled(raw)
    head = source.read(SNIFF_BYTES)
    _check_text(head, name)
    while chunk := source.read(SCAN_BYTES):
        if b"\x00" in chunk:
            raise NotTextError(_not_text(name))
    source.seek(0)
    return io.TextIOWrapper(source, encoding="utf-8", errors="replace", newline=None)


def _seekable(raw: BinaryIO) -> bool:
    try:
        return raw.seekable()
    except (OSError, ValueError):
        return False


def _spooled(raw: BinaryIO) -> BinaryIO:
    """A pipe's or terminal's bytes, kept in memory up to 64 MiB, then on disk. One
    read at a time: a buffered read would wait at a terminal for a second Ctrl-D."""
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    read_once = getattr(raw, "read1", raw.read)
    while chunk := read_once(SCAN_BYTES):
        copy.write(chunk)
    copy.seek(0)
    return cast(BinaryIO, copy)


def _not_text(name: str) -> str:
    return (
        f"{name} is not a text file (it holds NUL bytes; UTF-16 or binary?): "
        "expected UTF-8 text, one identifier per line"
    )


def _check_text(head: bytes, name: str) -> None:
    if b"\x00" in head:
        raise NotTextError(_not_text(name))
    lines = [line for line in head.splitlines()[:-1] or head.splitlines() if line.strip()]
    undecodable = sum(1 for line in lines if not _is_utf8(line))
    if lines and undecodable * 2 > len(lines):
        raise NotTextError(
            f"{name} is not UTF-8 text ({undecodable:,} of the first {len(lines):,} lines "
            "are not UTF-8): save it as UTF-8 and try again"
        )


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass
class RejectionReport:
    """Rejected lines on stderr: the first few one a line, then counts per reason,
    every message line short enough to read."""

    stream: IO[str]
    shown: int = REJECTS_SHOWN
    _unshown: Counter[str] = field(default_factory=Counter)
    _count: int = 0

    def add(self, rejection: Rejection) -> None:
        self._count += 1
        if self._count <= self.shown:
            self._write(_fit(f"line {rejection.line_number}: {rejection.reason}", rejection))
        else:
            self._unshown[rejection.reason] += 1

    def summarise(self) -> None:
        if not self._unshown:
            return
        self._write(f"... and {sum(self._unshown.values()):,} more rejected lines:\n")
        for reason, count in self._unshown.most_common(10):
            self._write(_shorten(f"  {count:,} {reason}", MESSAGE_CHARS) + "\n")
        others = sum(self._unshown.values()) - sum(
            count for _, count in self._unshown.most_common(10)
        )
        if others:
            self._write(f"  {others:,} for other reasons\n")

    def _write(self, text: str) -> None:
        write_above(self.stream, text)  # never glued onto the progress bar


def _fit(prefix: str, rejection: Rejection) -> str:
    room = max(MESSAGE_CHARS - len(prefix) - 2, 24)
    return _shorten(f"{prefix}: {_shorten(repr(rejection.line), room)}", MESSAGE_CHARS) + "\n"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Rejection:
    line_number: int
    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class EnqueueReport:
    added: int
    already_queued: int
    rejected: int


def read_lines(stream: IO[str], max_chars: int = MAX_LINE_CHARS) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) without ever holding more than `max_chars` of a line.

    An overlong line is yielded cut at `max_chars` (the parser then rejects it for its
    length) and the rest of it is skipped.
    """
    number = 0
    while True:
        line = stream.readline(max_chars + 1)
        if not line:
            return
        number += 1
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
        if len(line) > max_chars and not line.endswith("\n"):
            while (rest := stream.readline(65536)) and not rest.endswith("\n"):
                pass
        yield number, line.rstrip("\r\n")


def parse_lines(
    lines: Iterable[tuple[int, str]],
    default_type: str | None,
    on_reject: Callable[[Rejection], None],
) -> Iterator[Identifier]:
    """Parse numbered lines, skipping blanks and `#` comments, reporting rejects."""
    for number, text in lines:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(text) > MAX_LINE_CHARS:
            on_reject(Rejection(number, text[:80] + "...", f"line longer than {MAX_LINE_CHARS}"))
            continue
        if "\ufffd" in text:
            on_reject(Rejection(number, text, "not valid UTF-8"))
            continue
        try:
            yield parse_line(stripped, default_type)
        except IdentifierError as error:
            on_reject(Rejection(number, text, str(error)))


def enqueue_stream(
    store: Store,
    stream: IO[str],
    *,
    default_type: str | None = None,
    on_reject: Callable[[Rejection], None] = lambda rejection: None,
    on_progress: Callable[[int], None] | None = None,
    priority: int = 0,
) -> EnqueueReport:
    """Queue every good line of `stream`; returns the counts."""
    rejected = 0

    def count_reject(rejection: Rejection) -> None:
        nonlocal rejected
        rejected += 1
        on_reject(rejection)

    identifiers = parse_lines(read_lines(stream), default_type, count_reject)
    with _no_cycle_collection():
        counts = store.jobs.add(identifiers, priority=priority, on_batch=on_progress)
    return EnqueueReport(counts.added, counts.already_queued, rejected)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector for a bulk enqueue.

    Each line makes a few strings and a tuple, none in a cycle, and a batch keeps
    200,000 of them alive: the collector would walk them again and again for nothing
    (a tenth of a million-line run). Reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
