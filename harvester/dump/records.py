"""One member of the dump, split into records: either the whole file is one JSON value,
or each non-blank line is one (both layouts are found in the wild).

The common cases are decided from the first non-blank line alone, so no record is
parsed twice: a first line that is a whole JSON value means newline-delimited records
(or a one-line file of one record, when nothing but blank lines follows). Only a first
line that is not a whole value (a pretty-printed record starts with "{") makes us read
the member whole and parse it as one value.

A record is checked for being a JSON object, valid UTF-8, without building it: its
top-level values are skipped (validated, not decoded), so checking costs a fraction of
the parse the caller makes anyway.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import IO, NamedTuple

import msgspec

# A member up to this size is read whole (the common case, and fast); a bigger one line
# by line, so memory stays within a few times this whatever the dump holds. The real
# dump's files are one record, or 51 (a few MB at the very most).
WHOLE_MEMBER_LIMIT_BYTES = 16 * 1024 * 1024

_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY_VALUE = msgspec.json.Decoder(msgspec.Raw)
_KINDS = {ord("["): "an array", ord('"'): "a string", ord("t"): "a boolean", ord("f"): "a boolean"}
_KINDS[ord("n")] = "null"


class Fault(NamedTuple):
    """Why some bytes are not a record; `whole` when they are one complete JSON value."""

    whole: bool
    reason: str


Piece = tuple[int, bytes, Fault | None]
"""(line, exact bytes, fault or None): a record when the fault is None."""


def check(body: bytes) -> Fault | None:
    """None when `body` is one JSON object in valid UTF-8, else what is wrong with it."""
    try:
        _OBJECT.decode(body)
    except msgspec.ValidationError:
        return _not_an_object(body)
    except msgspec.DecodeError as error:
        return Fault(False, f"not JSON: {error}")
    except UnicodeDecodeError as error:  # in a key
        return Fault(True, f"not UTF-8 at byte {error.start}")
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError as error:
            return Fault(True, f"not UTF-8 at byte {error.start}")
    return None


def _not_an_object(body: bytes) -> Fault:
    """The fault of bytes that do not start an object: a complete other value, or not JSON."""
    try:
        _ANY_VALUE.decode(body)
    except msgspec.DecodeError as error:
        return Fault(False, f"not JSON: {error}")
    first = body.lstrip()[0]
    return Fault(True, f"{_KINDS.get(first, 'a number')}, not a JSON object")


def split_bytes(data: bytes, *, complete: bool = True) -> Iterator[Piece]:
    """The records (and faults) of a member read whole, in order. Of a member cut
    short (`complete` false), only what is surely a record: the complete lines of a
    newline-delimited file of two or more; a pretty-printed or one-line file, nothing."""
    first_line = _first_content(data)
    if first_line is None:
        return  # an empty member, or blank lines only: no records
    number, first = first_line
    fault = check(first)
    if fault is not None and not fault.whole:
        if complete:
            yield from _whole_member(data)
        return
    lines = data.split(b"\n")
    if not complete:
        lines.pop()  # the line the cut falls in
    later = (
        (later_number, line)
        for later_number, line in itertools.islice(enumerate(lines, 1), number, None)
        if line and not line.isspace()
    )
    second = next(later, None)
    if second is None:
        if complete:
            yield 1, data, fault  # one record, or one that is not: the whole file
        return
    yield number, first, fault
    for later_number, line in itertools.chain((second,), later):
        body = line.removesuffix(b"\r")
        yield later_number, body, check(body)


def _first_content(data: bytes) -> tuple[int, bytes] | None:
    """The first non-blank line's number and bytes (without its line end), if any."""
    start, number = 0, 1
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        line = data[start:end]
        if line and not line.isspace():
            return number, line.removesuffix(b"\r")
        start, number = end + 1, number + 1
    return None


def split_member(stream: IO[bytes], size_bytes: int) -> Iterator[Piece]:
    """The records (and faults) of one member too big to read whole, in order, reading
    it once front to back (as `split_bytes`, holding a line at a time). Only newline-
    delimited records can be read so; anything else is rejected once, unread."""
    lines = enumerate(stream, 1)
    head: list[bytes] = []
    first = _first_line(lines, head)
    if first is None:
        return  # an empty member, or blank lines only: no records
    number, raw = first
    fault = check(_without_newline(raw))
    if fault is not None and not fault.whole:
        reason = f"a file of {size_bytes:,} bytes that is not one record a line: not read"
        yield 1, b"", Fault(False, reason)
    else:
        yield from _delimited(number, raw, fault, head, lines)


def _first_line(lines: Iterator[tuple[int, bytes]], head: list[bytes]) -> tuple[int, bytes] | None:
    """The first non-blank line and its number; it and the blank lines before it go
    into `head`. None for a member of blank lines."""
    for number, raw in lines:
        head.append(raw)
        if not raw.isspace():
            return number, raw
    return None


def _delimited(
    first_number: int,
    first: bytes,
    first_fault: Fault | None,
    head: list[bytes],
    lines: Iterable[tuple[int, bytes]],
) -> Iterator[Piece]:
    """Newline-delimited records after a first line that is a whole value; when only
    blank lines follow it, the member is that one record, whole."""
    for number, raw in lines:
        if raw.isspace():
            head.append(raw)
            continue
        yield first_number, _without_newline(first), first_fault
        body = _without_newline(raw)
        yield number, body, check(body)
        for number, raw in lines:
            if not raw.isspace():
                body = _without_newline(raw)
                yield number, body, check(body)
        return
    yield 1, b"".join(head), first_fault


def _whole_member(whole: bytes) -> Iterator[Piece]:
    """A member whose first line is not a whole value: one (pretty-printed) value, or
    lines with a bad first one. A member none of whose lines is a record is rejected
    once, as a whole, rather than once per line of a broken pretty-printed file."""
    fault = check(whole)
    if fault is None or fault.whole:
        yield 1, whole, fault
        return
    pieces = [
        (number, body, check(body))
        for number, raw in enumerate(whole.split(b"\n"), 1)
        if raw and not raw.isspace()
        for body in (raw.removesuffix(b"\r"),)
    ]
    if any(piece_fault is None for _, _, piece_fault in pieces):
        yield from pieces
    else:
        yield 1, whole, fault


def _without_newline(raw: bytes) -> bytes:
    """A line as the record's bytes: without its newline, or the carriage return before it."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw.removesuffix(b"\r")
