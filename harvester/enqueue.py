"""Turn a file of identifiers into pending jobs, in bulk.

Lines stream through the parser into `Store.add_jobs`, which inserts in large
batches, so a million lines take seconds and memory stays flat. Bad lines never stop
the run: each is reported with its line number and reason, and the good ones are
queued. Every line is bounded before it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from harvester.identifiers import Identifier, IdentifierError, parse_line
from harvester.store import Store

MAX_LINE_CHARS = 4096


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
    counts = store.add_jobs(identifiers, priority=priority, on_batch=on_progress)
    return EnqueueReport(counts.added, counts.already_queued, rejected)
