"""The client: how each kind of answer is classified, the key kept secret, and the
tweet IDs read from a body. Every answer comes from a real server on loopback."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from helpers import ODD_KEY

from harvester.config import Secret
from harvester.harvest.client import AltmetricClient, read_body, tweet_ids
from harvester.harvest.http import HttpClient
from harvester.harvest.limits import read_retry_after
from harvester.model import Outcome


@dataclass
class CannedApi:
    """A loopback server giving every request the same answer; it keeps the raw
    request targets it was sent."""

    base_url: str = ""
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


@pytest.fixture
async def api() -> AsyncIterator[CannedApi]:
    canned = CannedApi()

    async def handle(request: web.Request) -> web.Response:
        canned.targets.append(request.raw_path)
        return web.Response(status=canned.status, body=canned.body, headers=canned.headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    canned.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    yield canned
    await runner.cleanup()


@pytest.fixture
async def client(api: CannedApi) -> AsyncIterator[AltmetricClient]:
    async with AltmetricClient(api.base_url, Secret(ODD_KEY), timeout_s=2) as opened:
        yield opened


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome"),
    [
        (200, b'{"altmetric_id": 1}', {}, Outcome.OK),
        (404, b"Not Found", {}, Outcome.NOT_FOUND),
        (403, b"The API key you supplied was invalid.", {}, Outcome.UNAUTHORIZED),
        (420, b"Enhance your calm", {}, Outcome.RATE_LIMITED),
        (429, b"Too many requests", {}, Outcome.RATE_LIMITED),
        (
            429,
            b"Tweet ID rate limit exceeded, please see X-TweetIdRateLimit headers",
            {},
            Outcome.QUOTA_EXHAUSTED,
        ),
        (429, b"Too many", {"X-TweetIDRateLimit-Remaining": "0"}, Outcome.QUOTA_EXHAUSTED),
        (500, b"oops", {}, Outcome.SERVER_ERROR),
        (502, b"down for maintenance", {}, Outcome.SERVER_ERROR),
        (503, b"unavailable", {}, Outcome.SERVER_ERROR),
        (400, b"bad identifier", {}, Outcome.INVALID_REQUEST),
        (200, b'{"altmetric_id": 1', {}, Outcome.BAD_RESPONSE),
        (200, b"[1, 2]", {}, Outcome.BAD_RESPONSE),
        (200, b"\xff\xfe{}", {}, Outcome.BAD_RESPONSE),
        (200, b"", {}, Outcome.BAD_RESPONSE),
        (200, b'{"a": "\xff"}', {}, Outcome.BAD_RESPONSE),  # not UTF-8 inside a value
        (200, b'{"a": {"b": [1,, 2]}}', {}, Outcome.BAD_RESPONSE),  # broken deep inside
        (200, b'{"a": 1} trailing', {}, Outcome.BAD_RESPONSE),
        (200, b'{"t": "caf\xc3\xa9", "n": 123456789012345678901234567890}', {}, Outcome.OK),
    ],
)
async def test_answers_are_classified(
    client: AltmetricClient,
    api: CannedApi,
    status: int,
    body: bytes,
    headers: dict[str, str],
    outcome: Outcome,
) -> None:
    api.answer(status, body, headers)
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is outcome
    assert result.http_status == status
    assert result.body == body


async def test_request_url_encodes_identifier_filters_and_key(
    client: AltmetricClient, api: CannedApi
) -> None:
    await client.fetch("doi", "10.1000/a#b?c", {"exclude_sources": "twitter"})
    [target] = api.targets
    url = urlsplit(target)
    assert url.path == "/v1/fetch/doi/10.1000/a%23b%3Fc"
    query = parse_qs(url.query)
    assert query["key"] == [ODD_KEY]
    assert query["exclude_sources"] == ["twitter"]
    assert url.fragment == ""


async def test_legacy_type_names_are_sent_when_configured(api: CannedApi) -> None:
    async with AltmetricClient(
        api.base_url, Secret(ODD_KEY), timeout_s=2, legacy_type_names=True
    ) as legacy:
        await legacy.fetch("arxiv", "2101.00001")
    [target] = api.targets
    assert urlsplit(target).path == "/v1/fetch/arxiv_id/2101.00001"


async def test_rate_and_quota_headers_are_read(client: AltmetricClient, api: CannedApi) -> None:
    headers = {
        "X-HourlyRateLimit-Remaining": "17",
        "X-DailyRateLimit-Remaining": "900",
        "X-TweetIDRateLimit-Limit": "1500000",
        "X-TweetIDRateLimit-Remaining": "42",
        "Retry-After": "7",
    }
    api.answer(429, b"Too many requests", headers)
    result = await client.fetch("doi", "10.1000/x")
    assert result.limits.hourly_remaining == 17
    assert result.limits.daily_remaining == 900
    assert result.limits.tweet_limit == 1_500_000
    assert result.limits.tweet_remaining == 42
    assert result.limits.retry_after_s == 7.0
    assert result.limits.retry_after_note == ""


async def test_allowance_limits_and_an_absurd_retry_after_are_read(
    client: AltmetricClient, api: CannedApi
) -> None:
    headers = {
        "X-HourlyRateLimit-Limit": "3600",
        "X-HourlyRateLimit-Remaining": "0",
        "X-DailyRateLimit-Limit": "50000",
        "Retry-After": "-30",
    }
    api.answer(420, b"Enhance your calm", headers)
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.RATE_LIMITED  # 420 is the older 429
    assert (result.limits.hourly_limit, result.limits.hourly_remaining) == (3600, 0)
    assert (result.limits.daily_limit, result.limits.daily_remaining) == (50_000, None)
    assert (result.limits.retry_after_s, result.limits.retry_after_note) == (None, "negative")


@pytest.mark.parametrize(
    ("header", "seconds", "note"),
    [
        (None, None, ""),  # absent: our own pacing decides
        ("7", 7.0, ""),
        (" 120 ", 120.0, ""),
        ("1.5", 1.5, ""),
        ("0", 0.0, ""),  # retry now: allowed, the rate still drops
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0, ""),  # an HTTP date, 10 s ahead
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, ""),  # a date already past
        ("-5", None, "negative"),
        ("999999999", 86_400.0, "capped at a day"),  # days: bounded
        ("soon", None, "unreadable"),
        ("Wed, 21 Oct 2015 07:28:10", None, "unreadable"),  # a date without a zone
    ],
)
def test_every_retry_after_shape_is_read_and_bounded(
    header: str | None, seconds: float | None, note: str
) -> None:
    assert read_retry_after(header, now_s=1445412480.0) == (seconds, note)


async def test_network_errors_never_carry_the_key(
    client: AltmetricClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even an error whose text quotes the request (ours never do) is redacted."""

    async def reset(self: HttpClient, target: str) -> None:
        raise ConnectionResetError(f"reset while sending {target}")

    monkeypatch.setattr(HttpClient, "get", reset)
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.error is not None and "ConnectionResetError" in result.error
    assert ODD_KEY not in result.error
    assert "k3y%2Fwith%2Bodd%26chars" not in result.error


async def test_timeouts_are_network_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request and never answers, until the client leaves
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        AltmetricClient(f"http://127.0.0.1:{port}/v1", Secret(ODD_KEY), timeout_s=0.3) as client,
    ):
        result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.error is not None and result.error.startswith("timed out after 0.")


async def raw_server(reply: bytes) -> tuple[asyncio.Server, int]:
    """A loopback TCP server that sends `reply` verbatim and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        b'{"altmetric_id": 1, "title": "cut',
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'10\r\n{"altmetric_id":',
    ],
    ids=["content-length", "chunked"],
)
async def test_a_truncated_body_is_a_bad_response(reply: bytes) -> None:
    server, port = await raw_server(reply)
    async with (
        server,
        AltmetricClient(f"http://127.0.0.1:{port}/v1", Secret(ODD_KEY), timeout_s=5) as real,
    ):
        result = await real.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.BAD_RESPONSE


async def test_connection_refused_is_a_network_error() -> None:
    server, port = await raw_server(b"")
    server.close()
    await server.wait_closed()
    async with AltmetricClient(f"http://127.0.0.1:{port}/v1", Secret(ODD_KEY), timeout_s=2) as real:
        result = await real.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert ODD_KEY not in (result.error or "")


def test_tweet_ids_are_read_from_the_body_only() -> None:
    body = json.dumps(
        {
            "counts": {"twitter": {"posts_count": 3}},
            "posts": {
                "twitter": [
                    {"tweet_id": "427349187978489856", "author": {}},
                    {"tweet_id": 5},
                    {"tweet_id": "not-a-number"},
                ],
                "news": [{"title": "x"}],
            },
        }
    ).encode()
    ids = tweet_ids(body)
    assert ids[:2] == (427349187978489856, 5)
    assert len(ids) == 3 and 0 <= ids[2] < 2**63
    assert tweet_ids(b'{"posts": {"news": []}}') == ()
    assert tweet_ids(b'{"altmetric_id": 1}') == ()
    # The one-pass reader agrees, and still judges validity.
    assert read_body(body) == (None, ids)
    assert read_body(b'{"posts": {"twitter": "odd"}}') == (None, ())
    assert read_body(b'{"posts": {"twitter": [{"tweet_id": 1}]}, "x": [1,,2]}')[0] == (
        "invalid JSON body"
    )
    assert read_body(b'[{"posts": 1}]')[0] == "JSON body is not an object"


def test_a_tweet_id_that_is_not_a_number_gets_the_same_ledger_key_in_every_process() -> None:
    """Python salts hash() per process: a key from it would charge the ID again after
    every restart."""
    body = b'{"posts": {"twitter": [{"tweet_id": "abc-not-a-number"}, {"tweet_id": "42"}]}}'
    program = (
        f"import sys; from harvester.harvest.client import tweet_ids; print(tweet_ids({body!r}))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(keys) == 1
    first, second = ast.literal_eval(keys.pop())
    assert second == 42 and 0 <= first < 2**63
