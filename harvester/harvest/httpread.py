"""Reading one HTTP/1.x answer from the bytes a connection receives (`harvest.http`).

Two small state machines, fed whatever `data_received` brings: `HeadReader` finds and
parses the status line and header fields, `BodyReader` collects the body as the head
frames it (Content-Length, chunked, or up to the end of the connection) and decodes
its content encoding. Plain functions of bytes, so they are tested without a socket.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024  # a status line and fields beyond this are not an API answer
_MAX_CHUNK_LINE = 4 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


class PayloadError(Exception):
    """The answer's body is broken: cut short, badly chunked or badly compressed."""


class ProtocolError(ConnectionError):
    """The bytes received are not an HTTP/1.x answer we can read."""


class ResponseHead(NamedTuple):
    status: int
    headers: dict[str, str]  # names lowercased; repeated fields joined by ", "
    keep_alive: bool  # the connection may carry another request after this answer
    length: int | None  # the body's length, or None: chunked or up to the end
    chunked: bool


class HeadReader:
    """Finds the head of an answer in the bytes fed to it; skips interim (1xx) heads."""

    def __init__(self) -> None:
        self.started = False  # some byte of the answer arrived
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        """The head and the bytes after it once the head is complete, else None."""
        self.started = self.started or bool(data)
        buffer = self._buffer + data if self._buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("the answer's head is too large")
                self._buffer = buffer
                return None
            head = parse_head(buffer[:end])
            buffer = buffer[end + 4 :]
            if not 100 <= head.status < 200:
                self._buffer = b""
                return head, buffer


def parse_head(raw: bytes) -> ResponseHead:
    """The status line and header fields (without the blank line that ends them)."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or not (code.isascii() and code.isdigit())
        or rest[3:4] not in ("", " ")
    ):
        raise ProtocolError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError("a malformed header field")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    status = int(code)
    length, chunked = _framing(status, headers)
    keep_alive = (
        version == "HTTP/1.1"
        and (length is not None or chunked)
        and "close" not in headers.get("connection", "").lower()
        and not (chunked and "content-length" in headers)  # RFC 9112 6.3: close after
    )
    return ResponseHead(status, headers, keep_alive, length, chunked)


def _framing(status: int, headers: dict[str, str]) -> tuple[int | None, bool]:
    """(length, chunked) of the body, as RFC 9112 section 6.3 frames it."""
    if status in (204, 304):
        return 0, False
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise ProtocolError("an unsupported transfer coding")
        return None, True
    declared = headers.get("content-length")
    if declared is None:
        return None, False  # up to the end of the connection
    if declared.isascii() and declared.isdigit():
        return int(declared), False
    values = {value.strip() for value in declared.split(",")}
    if len(values) != 1 or not all(value.isascii() and value.isdigit() for value in values):
        raise ProtocolError("an invalid Content-Length")
    return int(values.pop()), False


class BodyReader:
    """Collects one answer's body as its head frames it."""

    def __init__(self, head: ResponseHead) -> None:
        self._head = head
        self._parts: list[bytes] = []
        self._received = 0
        self.overrun = False  # bytes arrived past the end of the answer
        self._chunks = _Dechunker() if head.chunked else None

    def feed(self, data: bytes) -> bytes | None:
        """The whole (decoded) body once it is complete, else None."""
        if self._chunks is not None:
            complete = self._chunks.feed(data)
            if complete is None:
                return None
            self.overrun = self._chunks.overrun
            return _decoded(complete, self._head.headers)
        if data:
            self._parts.append(data)
            self._received += len(data)
        length = self._head.length
        if length is None or self._received < length:
            return None
        body = b"".join(self._parts)
        self.overrun = len(body) > length
        return _decoded(body[:length], self._head.headers)

    def feed_eof(self) -> bytes:
        """The connection ended: the body if that is how it was framed, else an error."""
        if self._head.length is not None or self._chunks is not None:
            raise PayloadError("body cut short (truncated)")
        return _decoded(b"".join(self._parts), self._head.headers)


class _Dechunker:
    """Chunked transfer coding: size line, data, CRLF; a zero size, trailers, CRLF."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._need: int | None = None  # data bytes of the current chunk, None: a size line
        self._trailers = False
        self.overrun = False

    def feed(self, data: bytes) -> bytes | None:
        buffer = self._buffer
        buffer += data
        pos = 0
        while True:
            if self._need is not None:
                end = pos + self._need
                if len(buffer) < end + 2:
                    break
                if buffer[end : end + 2] != b"\r\n":
                    raise PayloadError("bad chunk framing")
                self._parts.append(bytes(buffer[pos:end]))
                pos, self._need = end + 2, None
                continue
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                if len(buffer) - pos > _MAX_CHUNK_LINE:
                    raise PayloadError("bad chunk framing")
                break
            line = bytes(buffer[pos:eol])
            pos = eol + 2
            if self._trailers:
                if not line:  # the blank line after the trailers: the end
                    self.overrun = pos < len(buffer)
                    return b"".join(self._parts)
                continue
            size = _chunk_size(line)
            if size == 0:
                self._trailers = True
            else:
                self._need = size
        del buffer[:pos]
        return None


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or not _HEX.issuperset(digits) or len(digits) > 16:
        raise PayloadError("bad chunk framing")
    return int(digits, 16)


def _decoded(body: bytes, headers: dict[str, str]) -> bytes:
    """The body without its content encoding (we ask for gzip or deflate at most)."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wbits = zlib.MAX_WBITS if _has_zlib_header(body) else -zlib.MAX_WBITS
    else:
        raise PayloadError(f"unsupported content encoding {coding[:40]!r}")
    decompressor = zlib.decompressobj(wbits)
    try:
        decoded = decompressor.decompress(body) + decompressor.flush()
    except zlib.error:
        raise PayloadError(f"bad {coding} body") from None
    if not decompressor.eof:
        raise PayloadError(f"{coding} body cut short (truncated)")
    return decoded


def _has_zlib_header(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
