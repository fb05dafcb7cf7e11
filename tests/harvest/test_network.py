"""The client on real loopback sockets: answers read right however they are framed and
encoded, connections kept alive, replaced and dropped as they should be, and hostile
servers (endless bodies, compression bombs, lies about lengths, hang-ups) cut off at
`api.max_answer_bytes` with memory to spare. Also: which proxy is chosen, from where."""

from __future__ import annotations

import asyncio
import gc
import gzip
import re
import ssl
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from helpers import ODD_KEY

from harvester.config import ApiSettings, Secret
from harvester.errors import ConfigError
from harvester.harvest.client import AltmetricClient, FetchResult
from harvester.harvest.network import FREE_ANSWER_BYTES, choose_proxy, tls_context
from harvester.model import Outcome
from harvester.redaction import redact

OK_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n"
    b"X-HourlyRateLimit-Remaining: 5\r\n\r\n"
    b'{"answer": 1}'
)
Reply = bytes | Callable[[asyncio.StreamWriter], "asyncio.Future[None] | None"] | None


@dataclass
class RawServer:
    """A loopback server that reads request heads and answers each with `reply(head)`:
    bytes, None (never answer: wait for the client to leave), or a coroutine function
    that writes what it likes. It counts connections, keeps the heads, and hangs up
    after an answer when `hang_up` says so."""

    reply: Callable[[bytes], object] = lambda head: OK_ANSWER
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
                if reply is None:
                    await reader.read()
                    break
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)  # type: ignore[operator]
                answered += 1
                if self.hang_up(answered):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, **api: object) -> AltmetricClient:
        settings = ApiSettings(base_url=self.base_url, **{"timeout_s": 2.0, **api})  # type: ignore[arg-type]
        return AltmetricClient(settings, Secret(ODD_KEY), environ={})


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    listening = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield raw
        for writer in raw.writers:
            writer.close()


def answer(body: bytes, *fields: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{line}\r\n" for line in fields)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


async def fetch(server: RawServer, count: int = 1, **api: object) -> list[FetchResult]:
    async with server.client(**api) as client:
        return [await client.fetch("doi", f"10.1/{n}") for n in range(count)]


# -- what goes out -----------------------------------------------------------------------


async def test_the_request_on_the_wire(server: RawServer) -> None:
    async with server.client() as client:
        await client.fetch("doi", "10.1000/a#b c", {"exclude_sources": "twitter"})
    head = server.heads[0].decode()
    assert head.startswith(
        "GET /v1/fetch/doi/10.1000/a%23b%20c?exclude_sources=twitter"
        "&key=k3y%2Fwith%2Bodd%26chars HTTP/1.1\r\n"
    )
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n" in head
    assert "\r\nUser-Agent: altmetric-harvester/" in head
    assert "\r\nAccept-Encoding: gzip, deflate" in head


# -- framing and encodings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (OK_ANSWER, b'{"answer": 1}'),
        (
            answer(
                b'5;name=value\r\n{"a":\r\n3\r\n 1}\r\n0\r\nExpires: never\r\n\r\n',
                "Transfer-Encoding: chunked",
            ),
            b'{"a": 1}',
        ),
        (answer(b'{"to": "the end"}', "Connection: close"), b'{"to": "the end"}'),
    ],
    ids=["length", "chunked-with-extensions-and-trailers", "to-the-end"],
)
async def test_answers_are_read_however_they_are_framed(
    server: RawServer, reply: bytes, body: bytes
) -> None:
    server.reply = lambda head: reply
    server.hang_up = lambda answered: True
    [result] = await fetch(server)
    assert (result.outcome, result.body) == (Outcome.OK, body)


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw, as some send
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_content_encodings_are_decoded(
    server: RawServer, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    original = b'{"title": "' + b"x" * 50_000 + b'"}'
    packed = compress(original)
    reply = answer(packed, f"Content-Encoding: {coding}", f"Content-Length: {len(packed)}")
    server.reply = lambda head: reply
    [result] = await fetch(server)
    assert (result.outcome, result.body) == (Outcome.OK, original)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (answer(b'{"cut', "Content-Length: 50"), "body cut short (truncated)"),
        (answer(b'10\r\n{"cut', "Transfer-Encoding: chunked"), "body cut short (truncated)"),
        (answer(b"zz\r\n", "Transfer-Encoding: chunked"), None),
        (answer(b"xx", "Content-Encoding: gzip", "Content-Length: 2"), "bad gzip body"),
        (  # delimited by the close: only its JSON can tell it was cut
            answer(
                gzip.compress(b'{"a": %s}' % str(list(range(5000))).encode())[:600],
                "Content-Encoding: gzip",
            ),
            "invalid JSON body",
        ),
        (answer(b"xx", "Content-Encoding: br", "Content-Length: 2"), None),
    ],
    ids=["cut-length", "cut-chunked", "bad-chunk-size", "bad-gzip", "cut-gzip", "brotli"],
)
async def test_a_broken_body_is_a_bad_response_or_a_network_error(
    server: RawServer, reply: bytes, error: str | None
) -> None:
    server.reply = lambda head: reply
    server.hang_up = lambda answered: True
    [result] = await fetch(server)
    assert result.outcome in (Outcome.BAD_RESPONSE, Outcome.NETWORK_ERROR)
    if error is not None:
        assert result.error == error


@pytest.mark.parametrize(
    "reply",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["not-http", "status", "two-lengths", "huge-head"],
)
async def test_what_is_not_an_http_answer_is_a_network_error(
    server: RawServer, reply: bytes
) -> None:
    server.reply = lambda head: reply
    server.hang_up = lambda answered: True
    [result] = await fetch(server)
    assert result.outcome is Outcome.NETWORK_ERROR
    assert "k3y" not in (result.error or "")


# -- connections -------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(server: RawServer) -> None:
    results = await fetch(server, 5)
    assert all(result.outcome is Outcome.OK for result in results)
    assert results[0].limits.hourly_remaining == 5
    assert server.connections == 1


async def test_concurrent_requests_open_a_connection_each_then_reuse_them(
    server: RawServer,
) -> None:
    async with server.client() as client:
        for _ in range(3):
            answers = await asyncio.gather(*(client.fetch("doi", f"10.1/{n}") for n in range(4)))
            assert all(answer.outcome is Outcome.OK for answer in answers)
    assert server.connections == 4


async def test_a_connection_the_server_closed_while_idle_is_replaced_unseen(
    server: RawServer,
) -> None:
    server.hang_up = lambda answered: True  # closes after every answer, without saying so
    async with server.client() as client:
        for n in range(3):
            assert (await client.fetch("doi", f"10.1/{n}")).outcome is Outcome.OK
            await asyncio.sleep(0.05)  # the server's close arrives while the connection idles
    assert server.connections == 3


async def test_a_request_cut_off_by_a_stale_connection_goes_once_more_afresh(
    server: RawServer,
) -> None:
    """The race a keep-alive timeout makes: the server closes the idle connection just
    as the request goes out. The request never reached it, so it is sent again."""
    async with server.client() as client:
        assert (await client.fetch("doi", "10.1/1")).outcome is Outcome.OK
        for writer in server.writers:
            writer.transport.abort()  # the server drops it; the client has not noticed yet
        assert (await client.fetch("doi", "10.1/2")).outcome is Outcome.OK
    assert server.connections == 2


async def test_connection_close_is_honoured(server: RawServer) -> None:
    server.reply = lambda head: OK_ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    results = await fetch(server, 3)
    assert [result.body for result in results] == [b'{"answer": 1}'] * 3
    assert server.connections == 3


async def test_a_silent_server_times_out_and_its_connection_is_dropped(
    server: RawServer,
) -> None:
    server.reply = lambda head: None if len(server.heads) == 1 else OK_ANSWER
    results = await fetch(server, 2, timeout_s=0.3)
    assert results[0].outcome is Outcome.NETWORK_ERROR
    assert results[0].error is not None and results[0].error.startswith("timed out after 0.")
    assert results[1].outcome is Outcome.OK
    assert server.connections == 2


async def test_a_server_that_hangs_up_without_answering(server: RawServer) -> None:
    server.reply = lambda head: b""  # reads the request, then hangs up
    server.hang_up = lambda answered: True
    [result] = await fetch(server)
    assert result.outcome is Outcome.NETWORK_ERROR


async def test_a_reset_in_the_middle_of_a_body(server: RawServer) -> None:
    async def reset(writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b'{"half": "', "Content-Length: 500"))
        await writer.drain()
        writer.transport.abort()

    server.reply = lambda head: reset
    [result] = await fetch(server)
    assert result.outcome in (Outcome.BAD_RESPONSE, Outcome.NETWORK_ERROR)
    assert result.body == b""


async def test_a_refused_connection_is_a_network_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    api = ApiSettings(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    async with AltmetricClient(api, Secret(ODD_KEY), environ={}) as client:
        result = await client.fetch("doi", "10.1/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert "k3y" not in (result.error or "")


async def test_requests_cancelled_midway_lose_no_socket(server: RawServer) -> None:
    """Workers are cancelled at a stop, some in the middle of a request."""
    async with server.client() as client:
        for steps in range(8):  # cancelled after 0, 1, ... turns of the loop
            requests = [asyncio.create_task(client.fetch("doi", f"10.1/{n}")) for n in range(16)]
            for _ in range(steps):
                await asyncio.sleep(0)
            for request in requests:
                request.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
    gc.collect()  # a lost socket would warn here, and the warning fails the test


# -- hostile servers ---------------------------------------------------------------------

CAP = 256 * 1024


def endless(chunk: bytes = b"x" * 65536) -> Callable[[asyncio.StreamWriter], object]:
    """A chunked body that never ends (until the client leaves)."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b"", "Transfer-Encoding: chunked"))
        size = f"{len(chunk):x}\r\n".encode()
        while not writer.is_closing():
            writer.write(size + chunk + b"\r\n")
            await writer.drain()

    return write


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A gzip body of 32 KB that inflates to 32 MB of zeros."""
    return gzip.compress(bytes(32 * 1024 * 1024), compresslevel=9)


async def test_an_endless_answer_is_cut_off_at_the_bound(server: RawServer) -> None:
    server.reply = lambda head: endless()
    [result] = await fetch(server, max_answer_bytes=CAP)
    assert (result.outcome, result.body) == (Outcome.BAD_RESPONSE, b"")
    assert re.fullmatch(
        r"answer cut off at api\.max_answer_bytes \(262,144 bytes\): "
        r"\d{3},\d{3} bytes read and more coming",
        result.error or "",
    )


async def test_a_compression_bomb_is_cut_off_at_the_bound(server: RawServer, bomb: bytes) -> None:
    reply = answer(bomb, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}")
    server.reply = lambda head: reply
    [result] = await fetch(server, max_answer_bytes=CAP)
    assert result.outcome is Outcome.BAD_RESPONSE
    assert result.error is not None and result.error.startswith(
        "answer cut off at api.max_answer_bytes (262,144 bytes)"
    )


async def test_a_declared_length_over_the_bound_is_refused_before_reading(
    server: RawServer,
) -> None:
    server.reply = lambda head: answer(b"{}", "Content-Length: 10000000")
    [result] = await fetch(server, max_answer_bytes=CAP)
    assert result.error == "answer of 10,000,000 bytes refused: over api.max_answer_bytes (262,144)"


async def test_an_answer_of_exactly_the_bound_is_read(server: RawServer) -> None:
    body = b'{"x": "' + b"y" * (CAP - 9) + b'"}'
    server.reply = lambda head: answer(body, f"Content-Length: {len(body)}")
    [result] = await fetch(server, max_answer_bytes=CAP)
    assert (result.outcome, len(result.body)) == (Outcome.OK, CAP)


async def test_many_huge_answers_at_once_grow_one_at_a_time(server: RawServer, bomb: bytes) -> None:
    """Twelve hostile answers in flight with an 8 MiB bound would hold 96 MiB if each
    grew freely; past the first MiB they take turns, so memory holds about one."""
    cap = 8 * 1024 * 1024
    bombs = answer(bomb, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}")
    server.reply = lambda head: endless() if b"/e" in head.split(b" ")[1] else bombs
    tracemalloc.start()
    try:
        async with server.client(max_answer_bytes=cap) as client:
            identifiers = [f"10.1/{kind}{n}" for n in range(6) for kind in "eb"]
            results = await asyncio.gather(*(client.fetch("doi", i) for i in identifiers))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(result.outcome is Outcome.BAD_RESPONSE for result in results)
    assert peak < cap + 12 * FREE_ANSWER_BYTES + 8 * 1024 * 1024, f"peak {peak:,} bytes"


# -- the proxy and the trust store -------------------------------------------------------

API = "https://api.altmetric.com/v1"


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ("", {}, (None, "")),
        ("http://p:1", {"HTTPS_PROXY": "http://env:2"}, ("http://p:1", "api.proxy")),
        ("", {"HTTPS_PROXY": "http://env:2"}, ("http://env:2", "$HTTPS_PROXY")),
        (
            "",
            {"https_proxy": "http://low:3", "HTTPS_PROXY": "http://up:2"},
            ("http://low:3", "$https_proxy"),
        ),
        ("", {"HTTP_PROXY": "http://env:2"}, (None, "")),  # the API is https
        ("", {"HTTPS_PROXY": "env:2"}, ("http://env:2", "$HTTPS_PROXY")),  # as curl reads it
        ("", {"HTTPS_PROXY": "http://env:2", "NO_PROXY": "altmetric.com"}, (None, "")),
        ("", {"HTTPS_PROXY": "http://env:2", "no_proxy": "*"}, (None, "")),
        (
            "",
            {"HTTPS_PROXY": "http://env:2", "NO_PROXY": "example.org"},
            ("http://env:2", "$HTTPS_PROXY"),
        ),
    ],
)
def test_the_proxy_is_the_configured_one_else_the_environments(
    configured: str, environ: dict[str, str], expected: tuple[str | None, str]
) -> None:
    assert tuple(choose_proxy(API, configured, environ)) == expected


def test_a_loopback_api_never_goes_to_the_environments_proxy() -> None:
    environ = {"HTTP_PROXY": "http://env:2", "HTTPS_PROXY": "http://env:2"}
    for base in ("http://127.0.0.1:8080/v1", "http://localhost:1/v1", "https://[::1]:9/v1"):
        assert choose_proxy(base, "", environ).url is None
    assert choose_proxy("http://127.0.0.1:8080/v1", "http://p:1", environ).url == "http://p:1"


def test_a_proxy_the_harvester_cannot_use_is_refused_and_credentials_are_secrets() -> None:
    with pytest.raises(ConfigError, match=r"\$HTTPS_PROXY is 'socks5://h:1080'"):
        choose_proxy(API, "", {"HTTPS_PROXY": "socks5://h:1080"})
    proxy = choose_proxy(API, "", {"HTTPS_PROXY": "http://ann:pr0xy-pass@h:3128"})
    assert proxy.shown() == "http://ann:***@h:3128 (from $HTTPS_PROXY)"
    assert redact("login pr0xy-pass") == "login ***"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_the_ca_file_is_trusted_beside_the_system_store(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain, extended = tls_context(None), tls_context(ca_file)
    assert plain.verify_mode == extended.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname and extended.check_hostname
    assert len(extended.get_ca_certs()) == len(plain.get_ca_certs()) + 1


async def test_a_reload_changes_the_proxy_and_the_bound_for_later_requests(
    server: RawServer,
) -> None:
    server.reply = lambda head: answer(b'{"x": "' + b"y" * 5000 + b'"}', "Content-Length: 5009")
    async with server.client() as client:
        assert (await client.fetch("doi", "10.1/a")).outcome is Outcome.OK
        client.reconfigure(ApiSettings(base_url=server.base_url, max_answer_bytes=4096))
        refused = await client.fetch("doi", "10.1/b")
        client.reconfigure(ApiSettings(base_url=server.base_url, proxy="http://127.0.0.1:9"))
        assert client.proxy.shown() == "http://127.0.0.1:9 (from api.proxy)"
        unreachable = await client.fetch("doi", "10.1/c")
    assert refused.error == "answer of 5,009 bytes refused: over api.max_answer_bytes (4,096)"
    assert unreachable.outcome is Outcome.NETWORK_ERROR  # nothing listens there
    assert len(server.heads) == 2
