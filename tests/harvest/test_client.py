"""The client, unit by unit, with aioresponses standing in for the API (as the design
says): how each kind of answer is classified, what headers say, Retry-After's shapes,
redirects refused, broken bodies and timeouts, the key kept out of every error and
every body, and the tweet IDs read from a body. What only real sockets show (framing,
compression, TLS, proxies, hostile servers) is in test_network.py and beside it."""

from __future__ import annotations

import ast
import os
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses
from helpers import ODD_KEY
from yarl import URL

from harvester.config import ApiSettings, Secret
from harvester.harvest.answers import read_body, tweet_ids
from harvester.harvest.client import AltmetricClient
from harvester.harvest.limits import read_retry_after
from harvester.harvest.network import failure
from harvester.model import Outcome

BASE = "https://api.example.test/v1"
ANY = re.compile(r"^https://api\.example\.test/.*$")
ENCODED_KEY = "k3y%2Fwith%2Bodd%26chars"


class MockedResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's new `stream_writer`
    (aioresponses issue #289, open): for a request already sent, nothing to write."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class Api(aioresponses):
    """aioresponses, every answer built as a `MockedResponse`."""

    def get(self, *args: Any, **kwargs: Any) -> None:
        super().get(*args, response_class=MockedResponse, **kwargs)


@pytest.fixture
def mocked() -> Iterator[Api]:
    mock = Api()
    with mock:
        yield mock


@pytest.fixture
async def client() -> AsyncIterator[AltmetricClient]:
    async with AltmetricClient(ApiSettings(base_url=BASE, timeout_s=2), Secret(ODD_KEY)) as opened:
        yield opened


def sent(mock: Api) -> list[str]:
    """The URLs requested, as sent (the key in them)."""
    return [str(url) for (_method, url) in mock.requests]


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome"),
    [
        (200, b'{"altmetric_id": 1}', {}, Outcome.OK),
        (404, b"Not Found", {}, Outcome.NOT_FOUND),
        (401, b"Unauthorized", {}, Outcome.UNAUTHORIZED),
        (403, b"The API key you supplied was invalid.", {}, Outcome.UNAUTHORIZED),
        (407, b"Proxy Authentication Required", {}, Outcome.SETUP_ERROR),
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
        (200, b"<html>Sign in to the network</html>", {}, Outcome.BAD_RESPONSE),  # a portal
        (200, b'{"t": "caf\xc3\xa9", "n": 123456789012345678901234567890}', {}, Outcome.OK),
        (204, b"", {}, Outcome.BAD_RESPONSE),
    ],
)
async def test_answers_are_classified(
    client: AltmetricClient,
    mocked: Api,
    status: int,
    body: bytes,
    headers: dict[str, str],
    outcome: Outcome,
) -> None:
    mocked.get(ANY, status=status, body=body, headers=headers)
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is outcome
    assert result.http_status == status
    assert result.body == body
    assert result.redacted == 0


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_is_named_by_its_own_status(
    client: AltmetricClient, mocked: Api, status: int
) -> None:
    mocked.get(ANY, status=status, body=b"go away")
    result = await client.fetch("doi", "10.1000/x")
    assert (result.outcome, result.http_status) == (Outcome.UNAUTHORIZED, status)


async def test_the_request_encodes_identifier_filters_and_key(
    client: AltmetricClient, mocked: Api
) -> None:
    mocked.get(ANY, body=b"{}")
    await client.fetch("doi", "10.1000/a#b?c", {"exclude_sources": "twitter"})
    [url] = sent(mocked)
    parts = urlsplit(url)
    assert parts.path == "/v1/fetch/doi/10.1000/a%23b%3Fc"
    assert parse_qs(parts.query) == {"exclude_sources": ["twitter"], "key": [ODD_KEY]}
    assert parts.fragment == ""


async def test_legacy_type_names_the_counts_call_and_the_citations_call(
    mocked: Api,
) -> None:
    mocked.get(ANY, body=b"{}", repeat=True)
    legacy = ApiSettings(base_url=BASE, legacy_type_names=True)
    async with AltmetricClient(legacy, Secret(ODD_KEY)) as client:
        await client.fetch("arxiv", "2101.00001")
    counts = ApiSettings(base_url=BASE, endpoint="counts")
    async with AltmetricClient(counts, Secret(ODD_KEY)) as client:
        await client.fetch("doi", "10.1/x")
        await client.citations("1w", {"num_results": "100", "page": "2"})
    paths = [urlsplit(url).path for url in sent(mocked)]
    assert paths == ["/v1/fetch/arxiv_id/2101.00001", "/v1/doi/10.1/x", "/v1/citations/1w"]


async def test_rate_and_quota_headers_are_read(client: AltmetricClient, mocked: Api) -> None:
    headers = {
        "X-HourlyRateLimit-Remaining": "17",
        "X-DailyRateLimit-Remaining": "900",
        "x-tweetidratelimit-limit": "1500000",  # names in any case
        "X-TweetIDRateLimit-Remaining": "42",
        "Retry-After": "7",
    }
    mocked.get(ANY, status=429, body=b"Too many requests", headers=headers)
    result = await client.fetch("doi", "10.1000/x")
    assert result.limits.hourly_remaining == 17
    assert result.limits.daily_remaining == 900
    assert result.limits.tweet_limit == 1_500_000
    assert result.limits.tweet_remaining == 42
    assert (result.limits.retry_after_s, result.limits.retry_after_note) == (7.0, "")


async def test_allowance_limits_and_an_absurd_retry_after_are_read(
    client: AltmetricClient, mocked: Api
) -> None:
    headers = {
        "X-HourlyRateLimit-Limit": "3600",
        "X-HourlyRateLimit-Remaining": "0",
        "X-DailyRateLimit-Limit": "50000",
        "Retry-After": "-30",
    }
    mocked.get(ANY, status=420, body=b"Enhance your calm", headers=headers)
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


async def test_redirects_are_refused_not_followed(client: AltmetricClient, mocked: Api) -> None:
    mocked.get(ANY, status=301, headers={"Location": "https://elsewhere.example/x"})
    result = await client.fetch("doi", "10.1000/x")
    assert (result.outcome, result.error) == (Outcome.BAD_RESPONSE, "unexpected HTTP 301")
    assert len(sent(mocked)) == 1  # nothing went to elsewhere.example


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            aiohttp.ClientPayloadError(
                "Response payload is not completed: <ContentLengthError: 400, "
                "message='Not enough data to satisfy content length header.'>"
            ),
            "body cut short (truncated)",
        ),
        (
            aiohttp.ClientPayloadError("Can not decode content-encoding: gzip"),
            "bad compressed body",
        ),
    ],
    ids=["cut-short", "bad-compression"],
)
async def test_broken_bodies_are_bad_responses(
    client: AltmetricClient, mocked: Api, error: Exception, expected: str
) -> None:
    mocked.get(ANY, exception=error)
    result = await client.fetch("doi", "10.1000/x")
    assert (result.outcome, result.http_status, result.error) == (
        Outcome.BAD_RESPONSE,
        None,
        expected,
    )


async def test_timeouts_are_network_errors(client: AltmetricClient, mocked: Api) -> None:
    mocked.get(ANY, exception=TimeoutError())
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.error is not None and result.error.startswith("timed out after 0.")


async def test_a_declared_length_over_the_bound_is_refused_unread(mocked: Api) -> None:
    api = ApiSettings(base_url=BASE, max_answer_bytes=4096)
    mocked.get(ANY, body=b"{}", headers={"Content-Length": "5000000"})
    async with AltmetricClient(api, Secret(ODD_KEY)) as client:
        result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.BAD_RESPONSE
    assert result.error == "answer of 5,000,000 bytes refused: over api.max_answer_bytes (4,096)"


async def test_network_errors_never_carry_the_key(client: AltmetricClient, mocked: Api) -> None:
    """An error whose text quotes the request, even cut short, says nothing of the key."""
    url = f"{BASE}/fetch/doi/10.1000/x?key={ENCODED_KEY}"
    mocked.get(ANY, exception=aiohttp.ClientConnectionError(f"reset while sending {url[:-4]}"))
    result = await client.fetch("doi", "10.1000/x")
    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.error == (
        "ClientConnectionError: reset while sending "
        "https://api.example.test/v1/fetch/doi/10.1000/x?key=***"
    )


@pytest.mark.parametrize("status", [200, 404, 500])
async def test_an_echoed_key_is_taken_out_of_the_body_and_counted(
    client: AltmetricClient, mocked: Api, status: int
) -> None:
    body = {
        200: b'{"url": "/v1/fetch/doi/10.1/x?key='
        + ENCODED_KEY.encode()
        + b'", "k": "'
        + ODD_KEY[:9].encode()
        + b'"}',
        404: b"Not Found: /v1/fetch/doi/10.1/x?key=" + ODD_KEY.encode(),
        # the key at byte 110: a text cut at 120 before redaction would keep its prefix
        500: b"x" * 100 + b" GET ?key=" + ENCODED_KEY.encode() + b" failed",
    }[status]
    mocked.get(ANY, status=status, body=body)
    result = await client.fetch("doi", "10.1/x")
    assert result.redacted == (2 if status == 200 else 1)
    assert b"k3y/with" not in result.body and b"k3y%2Fwith" not in result.body
    assert result.body.count(b"***") == result.redacted
    assert "k3y" not in (result.error or "")
    if status == 500:
        assert result.outcome is Outcome.SERVER_ERROR
        assert result.error is not None and result.error.endswith("GET ?key=*** failed")
    else:
        assert result.outcome in (Outcome.OK, Outcome.NOT_FOUND)


def test_certificate_failures_say_which_setting_fixes_them() -> None:
    key = ConnectionKey("api.example.test", 443, True, True, None, None, None)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    outcome, text = failure(aiohttp.ClientConnectorCertificateError(key, untrusted), 0.1)
    assert outcome is Outcome.SETUP_ERROR
    assert text == (
        "certificate verify failed for api.example.test; set api.ca_file to your "
        "network's CA bundle (unable to get local issuer certificate)"
    )
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_message = "Hostname mismatch, certificate is not valid for 'x.test'."
    outcome, text = failure(aiohttp.ClientConnectorCertificateError(key, mismatch), 0.1)
    assert outcome is Outcome.SETUP_ERROR and "check api.base_url" in text


def proxy_error(status: int) -> aiohttp.ClientHttpProxyError:
    info: Any = None  # aiohttp keeps it for its message only
    return aiohttp.ClientHttpProxyError(info, (), status=status, message="refused")


def test_a_proxy_asking_for_credentials_is_a_setup_error_and_a_failing_one_is_not() -> None:
    outcome, text = failure(proxy_error(407), 0.1)
    assert outcome is Outcome.SETUP_ERROR and "api.proxy" in text
    assert failure(proxy_error(502), 0.1) == (
        Outcome.NETWORK_ERROR,
        "the proxy answered HTTP 502 to CONNECT",
    )


def test_tweet_ids_are_read_from_the_body_only() -> None:
    body = (
        b'{"counts": {"twitter": {"posts_count": 3}}, "posts": {"twitter": ['
        b'{"tweet_id": "427349187978489856", "author": {}}, {"tweet_id": 5}, '
        b'{"tweet_id": "not-a-number"}], "news": [{"title": "x"}]}}'
    )
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
        f"import sys; from harvester.harvest.answers import tweet_ids; print(tweet_ids({body!r}))"
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
