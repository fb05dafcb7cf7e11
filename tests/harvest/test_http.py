"""The lean HTTP/1.1 client: answers read right however the bytes arrive, and its
connections kept alive, replaced and dropped as they should be (a real loopback
server that counts them)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from harvester.harvest.http import HttpClient, ServerDisconnected, head_fields
from harvester.harvest.httpread import (
    MAX_HEAD_BYTES,
    BodyReader,
    HeadReader,
    PayloadError,
    ProtocolError,
)

HEADERS = {"User-Agent": "test-agent/1", "Accept": "*/*"}


def read_all(pieces: list[bytes], *, eof: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Feed `pieces` to the readers as a connection would; (status, headers, body)."""
    head_reader = HeadReader()
    body_reader: BodyReader | None = None
    status, headers = 0, {}
    for piece in pieces:
        if body_reader is None:
            found = head_reader.feed(piece)
            if found is None:
                continue
            head, piece = found
            status, headers = head.status, head.headers
            body_reader = BodyReader(head)
        body = body_reader.feed(piece)
        if body is not None:
            return status, headers, body
    assert body_reader is not None, "no complete head"
    assert eof, "the body never completed"
    return status, headers, body_reader.feed_eof()


def byte_by_byte(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


OK_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
    b"X-Thing: a\r\nx-thing: b\r\n\r\n"
    b'{"answer": 1}'
)


@pytest.mark.parametrize("split", [lambda raw: [raw], byte_by_byte], ids=["whole", "bytewise"])
def test_a_content_length_answer_reads_the_same_however_it_arrives(
    split: Callable[[bytes], list[bytes]],
) -> None:
    status, headers, body = read_all(split(OK_ANSWER))
    assert (status, body) == (200, b'{"answer": 1}')
    assert headers["content-type"] == "application/json"
    assert headers["x-thing"] == "a, b"  # repeated fields joined, names lowercased


def test_a_chunked_answer_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nExpires: never\r\n\r\n"
    )
    for pieces in ([raw], byte_by_byte(raw)):
        assert read_all(pieces)[2] == b"hello, world"


def test_a_body_up_to_the_end_of_the_connection() -> None:
    raw = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    assert read_all([raw], eof=True)[2] == b"all of it"
    head, _ = HeadReader().feed(raw) or pytest.fail("no head")
    assert not head.keep_alive


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw, as some send
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
def test_content_encodings_are_decoded(coding: str, compress: Callable[[bytes], bytes]) -> None:
    original = b'{"title": "' + b"x" * 5000 + b'"}'
    packed = compress(original)
    raw = (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {len(packed)}\r\n\r\n"
    ).encode() + packed
    assert read_all([raw])[2] == original


def test_interim_answers_are_skipped_and_some_statuses_have_no_body() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    assert read_all([raw])[:1] == (204,)
    assert read_all([b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"])[2] == b""


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    ],
)
def test_keep_alive_as_the_answer_allows(raw: bytes, keep_alive: bool) -> None:
    head, _ = HeadReader().feed(raw) or pytest.fail("no head")
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
    ],
    ids=["not-http", "status", "no-colon", "folded", "two-lengths", "negative", "coding", "huge"],
)
def test_what_is_not_an_http_answer_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_all([raw])


@pytest.mark.parametrize(
    ("raw", "eof"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"cut', True),
        (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"cut', True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nxx", False),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nxx", False),
    ],
    ids=["cut-length", "cut-chunked", "bad-size", "bad-chunk-end", "brotli", "bad-gzip"],
)
def test_a_broken_body_is_a_payload_error(raw: bytes, eof: bool) -> None:
    with pytest.raises(PayloadError):
        read_all([raw], eof=eof)


# -- the client against a real server -------------------------------------------------


@dataclass
class RawServer:
    """A loopback server that reads request heads and answers each with `reply(head)`;
    it counts connections, keeps the heads, and hangs up after an answer when
    `hang_up` says so."""

    reply: Callable[[bytes], bytes | None] = lambda head: OK_ANSWER
    hang_up: Callable[[int], bool] = lambda answered: False
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                reply = self.reply(head)
                if reply is None:  # never answer: wait for the client to leave
                    await reader.read()
                    break
                writer.write(reply)
                await writer.drain()
                answered += 1
                if self.hang_up(answered):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    listening = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield raw
        for writer in raw.writers:
            writer.close()


async def test_sequential_requests_share_one_connection(server: RawServer) -> None:
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        for n in range(5):
            response = await client.get(f"/v1/fetch/doi/10.1/{n}?key=k")
            assert (response.status, response.body) == (200, b'{"answer": 1}')
    finally:
        await client.close()
    assert server.connections == 1
    first = server.heads[0].decode()
    assert first.startswith("GET /v1/fetch/doi/10.1/0?key=k HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n" in first
    assert "\r\nUser-Agent: test-agent/1\r\n" in first


async def test_concurrent_requests_open_a_connection_each_then_reuse_them(
    server: RawServer,
) -> None:
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        for _ in range(3):
            answers = await asyncio.gather(*(client.get(f"/v1/x/{n}") for n in range(4)))
            assert all(answer.status == 200 for answer in answers)
    finally:
        await client.close()
    assert server.connections == 4


async def test_a_connection_the_server_closed_while_idle_is_replaced_unseen(
    server: RawServer,
) -> None:
    server.hang_up = lambda answered: True  # closes after every answer, without saying so
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        for n in range(3):
            assert (await client.get(f"/v1/x/{n}")).status == 200
            await asyncio.sleep(0.05)  # the server's close arrives while the connection idles
    finally:
        await client.close()
    assert server.connections == 3


async def test_a_request_cut_off_by_a_stale_connection_goes_once_more_afresh(
    server: RawServer,
) -> None:
    """The race a keep-alive timeout makes: the server closes the idle connection just
    as the request goes out. The request never reached it, so it is sent again."""
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        assert (await client.get("/v1/x/1")).status == 200
        for writer in server.writers:
            writer.transport.abort()  # the server drops it; the client has not noticed yet
        assert (await client.get("/v1/x/2")).status == 200
    finally:
        await client.close()
    assert server.connections == 2


async def test_connection_close_is_honoured(server: RawServer) -> None:
    server.reply = lambda head: OK_ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        for n in range(3):
            assert (await client.get(f"/v1/x/{n}")).body == b'{"answer": 1}'
    finally:
        await client.close()
    assert server.connections == 3


async def test_a_silent_server_times_out_and_its_connection_is_dropped(
    server: RawServer,
) -> None:
    server.reply = lambda head: None if len(server.heads) == 1 else OK_ANSWER
    client = HttpClient(server.base_url, timeout_s=0.2, headers=HEADERS)
    try:
        with pytest.raises(TimeoutError):
            await client.get("/v1/x/silent")
        assert (await client.get("/v1/x/next")).status == 200
    finally:
        await client.close()
    assert server.connections == 2


async def test_a_cancelled_request_drops_its_connection(server: RawServer) -> None:
    server.reply = lambda head: None if len(server.heads) == 1 else OK_ANSWER
    client = HttpClient(server.base_url, timeout_s=5, headers=HEADERS)
    try:
        request = asyncio.create_task(client.get("/v1/x/cancelled"))
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert (await client.get("/v1/x/next")).status == 200
    finally:
        await client.close()
    assert server.connections == 2


async def test_a_server_that_hangs_up_without_answering(server: RawServer) -> None:
    server.reply = lambda head: b""  # reads the request, then hangs up
    server.hang_up = lambda answered: True
    client = HttpClient(server.base_url, timeout_s=2, headers=HEADERS)
    try:
        with pytest.raises(ServerDisconnected):
            await client.get("/v1/x/1")
    finally:
        await client.close()


async def test_a_refused_connection_is_an_os_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    client = HttpClient(f"http://127.0.0.1:{port}/v1", timeout_s=2, headers=HEADERS)
    with pytest.raises(OSError):
        await client.get("/v1/x")
    await client.close()


@pytest.mark.parametrize(
    ("host", "port", "tls", "expected"),
    [
        ("api.altmetric.com", 443, True, "api.altmetric.com"),
        ("api.altmetric.com", 8443, True, "api.altmetric.com:8443"),
        ("127.0.0.1", 80, False, "127.0.0.1"),
        ("::1", 8080, False, "[::1]:8080"),
        ("bücher.example", 443, True, "xn--bcher-kva.example"),
    ],
)
def test_the_host_field_is_what_rfc_9110_asks(
    host: str, port: int, tls: bool, expected: str
) -> None:
    fields = head_fields(host, port, tls, {"User-Agent": "ua"})
    assert fields == f"\r\nHost: {expected}\r\nUser-Agent: ua"


async def test_a_base_path_is_encoded_for_the_request_line() -> None:
    client = HttpClient("http://127.0.0.1:1/api v1/%7Ebase/", timeout_s=1, headers=HEADERS)
    assert client.path_prefix == "/api%20v1/%7Ebase"
    await client.close()


async def test_close_closes_connections_in_use_too(server: RawServer) -> None:
    server.reply = lambda head: None  # never answers
    client = HttpClient(server.base_url, timeout_s=5, headers=HEADERS)
    request = asyncio.create_task(client.get("/v1/x/pending"))
    await asyncio.sleep(0.1)
    await client.close()
    with pytest.raises(ConnectionError):
        await request
    for writer in server.writers:
        await asyncio.wait_for(writer.wait_closed(), 2)  # the server saw it go


async def test_requests_cancelled_while_connecting_lose_no_socket(server: RawServer) -> None:
    """Workers are cancelled at a stop, some in the middle of opening a connection."""
    client = HttpClient(server.base_url, timeout_s=5, headers=HEADERS)
    for steps in range(8):  # cancelled after 0, 1, ... turns of the loop
        requests = [asyncio.create_task(client.get(f"/v1/x/{n}")) for n in range(16)]
        for _ in range(steps):
            await asyncio.sleep(0)
        for request in requests:
            request.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
    await client.close()
    gc.collect()  # a lost socket would warn here, and the warning fails the test
