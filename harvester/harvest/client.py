"""The Altmetric client: one call, one classified result.

The client knows the API and nothing of jobs or the store. Every answer becomes a
`FetchResult` whose `outcome` says what it means for the harvest; a 200 only counts
as `ok` when the whole body arrived and parses as a JSON object, so a truncated or
garbled body can never be stored as done. The key travels in the query string, so
no URL ever leaves this module: error texts are built from exception types and are
redacted of the key as a last guard. The requests go through `harvest.http`, a lean
HTTP/1.1 client for the API's one origin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated
from urllib.parse import quote, urlencode

import msgspec

from harvester import __version__
from harvester.config import ApiSettings, Secret
from harvester.harvest.http import HttpClient, PayloadError
from harvester.harvest.limits import NO_LIMITS, LimitHeaders, read_limit_headers
from harvester.identifiers import api_type_name, encode_path_segment
from harvester.model import Outcome

USER_AGENT = f"altmetric-harvester/{__version__}"
# What every request says besides its Host. The encodings are those aiohttp asked
# for, so the API answers as it always did; `harvest.httpread` decodes them.
REQUEST_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}
_TWEET_QUOTA_MARKER = "tweet id rate limit"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One answer, classified (`harvester.model.Outcome`)."""

    outcome: Outcome
    http_status: int | None
    body: bytes = b""
    limits: LimitHeaders = NO_LIMITS
    error: str | None = None
    tweet_ids: tuple[int, ...] = ()  # of an `ok` answer: what the tweet quota charges


class AltmetricClient:
    """Fetches output details. Use as `async with AltmetricClient(...) as client`.

    It opens as many connections as requests are in flight at once (the workers
    bound that, and a reload may change it) and keeps them alive between requests."""

    def __init__(
        self,
        base_url: str,
        key: Secret,
        *,
        timeout_s: float,
        legacy_type_names: bool = False,
        endpoint: str = "fetch",
    ) -> None:
        self._base_url = base_url.rstrip("/")
        # The fetch call's path is /fetch/{type}/{id}; the counts call's is /{type}/{id}.
        self._call_prefix = "/fetch/" if endpoint == "fetch" else "/"
        self._key = key
        self._encoded_key = quote(key.reveal(), safe="")
        self._timeout_s = timeout_s
        self._legacy_type_names = legacy_type_names
        self._http: HttpClient | None = None
        self._queries: dict[tuple[tuple[str, str], ...], str] = {}

    @classmethod
    def for_api(cls, api: ApiSettings, key: Secret) -> AltmetricClient:
        """The client of the configured API: its base URL, timeout, type names and call."""
        return cls(
            api.base_url,
            key,
            timeout_s=api.timeout_s,
            legacy_type_names=api.legacy_type_names,
            endpoint=api.endpoint,
        )

    async def __aenter__(self) -> AltmetricClient:
        self._http = HttpClient(self._base_url, timeout_s=self._timeout_s, headers=REQUEST_HEADERS)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _target(self, id_type: str, identifier: str, params: Mapping[str, str]) -> str:
        """The request target: the encoded path, the filters and the key."""
        assert self._http is not None
        path_type = api_type_name(id_type, self._legacy_type_names)
        return (
            f"{self._http.path_prefix}{self._call_prefix}{path_type}/"
            f"{encode_path_segment(identifier)}"
            f"?{self._query(params)}key={self._encoded_key}"
        )

    def _query(self, params: Mapping[str, str]) -> str:
        """The filters' part of the query string (the same few sets, so cached)."""
        if not params:
            return ""
        items = tuple(params.items())
        query = self._queries.get(items)
        if query is None:
            query = self._queries[items] = urlencode(items) + "&"
        return query

    async def fetch(
        self, id_type: str, identifier: str, params: Mapping[str, str] | None = None
    ) -> FetchResult:
        """Fetch one output's details and classify the answer. Never raises for I/O."""
        return await self._get(self._target(id_type, identifier, params or {}))

    async def citations(self, timeframe: str, params: Mapping[str, str]) -> FetchResult:
        """One page of the citations call (discovery), classified like any answer: a
        page is `ok` when it is a whole JSON object. Never raises for I/O."""
        assert self._http is not None
        query = urlencode(list(params.items())) + "&" if params else ""  # pages: not cached
        target = (
            f"{self._http.path_prefix}/citations/{encode_path_segment(timeframe)}"
            f"?{query}key={self._encoded_key}"
        )
        return await self._get(target)

    async def _get(self, target: str) -> FetchResult:
        assert self._http is not None, "use AltmetricClient as an async context manager"
        started = time.monotonic()
        try:
            response = await self._http.get(target)
        except PayloadError as error:
            return FetchResult(Outcome.BAD_RESPONSE, None, error=self._redact(str(error)))
        except TimeoutError:  # before OSError, of which it is one
            waited = time.monotonic() - started
            return FetchResult(Outcome.NETWORK_ERROR, None, error=f"timed out after {waited:.1f}s")
        except OSError as error:
            return FetchResult(Outcome.NETWORK_ERROR, None, error=self._describe(error))
        return self._scrubbed(classify(response.status, response.headers, response.body))

    def _describe(self, error: BaseException) -> str:
        """A short, key-free description of a network failure."""
        return self._redact(f"{type(error).__name__}: {error}")[:300]

    def _redact(self, text: str) -> str:
        for secret in (self._key.reveal(), self._encoded_key):
            text = text.replace(secret, "***")
        return text

    def _scrubbed(self, result: FetchResult) -> FetchResult:
        """Error texts quote the server's body, which may echo our request (and key)."""
        if result.error is None:
            return result
        return dataclasses.replace(result, error=self._redact(result.error))


def classify(status: int, headers: Mapping[str, str], body: bytes) -> FetchResult:
    """Turn one complete HTTP answer into a FetchResult. `headers`: names lowercased
    (or a case-insensitive mapping)."""
    limits = read_limit_headers(headers)
    if status == 200:
        return _classify_ok(body, limits)
    if status == 404:
        return FetchResult(Outcome.NOT_FOUND, status, body, limits=limits)
    if status in (401, 403):
        return FetchResult(Outcome.UNAUTHORIZED, status, body, limits=limits, error=_snippet(body))
    if status == 429 and _is_tweet_quota_refusal(body, limits):
        error = "tweet-ID quota exhausted"
        return FetchResult(Outcome.QUOTA_EXHAUSTED, status, body, limits=limits, error=error)
    if status in (420, 429):
        return FetchResult(
            Outcome.RATE_LIMITED, status, body, limits=limits, error=f"HTTP {status}"
        )
    if status >= 500:
        error = f"HTTP {status}: {_snippet(body)}"
        return FetchResult(Outcome.SERVER_ERROR, status, body, limits=limits, error=error)
    if 400 <= status < 500:
        error = f"HTTP {status}: {_snippet(body)}"
        return FetchResult(Outcome.INVALID_REQUEST, status, body, limits=limits, error=error)
    error = f"unexpected HTTP {status}"
    return FetchResult(Outcome.BAD_RESPONSE, status, body, limits=limits, error=error)


def _classify_ok(body: bytes, limits: LimitHeaders) -> FetchResult:
    problem, tweets = read_body(body)
    if problem is not None:
        return FetchResult(Outcome.BAD_RESPONSE, 200, body, limits=limits, error=problem)
    return FetchResult(Outcome.OK, 200, body, limits=limits, tweet_ids=tweets)


class _Tweet(msgspec.Struct):
    tweet_id: str | int


class _Posts(msgspec.Struct):
    twitter: list[_Tweet] = []


class _Body(msgspec.Struct):
    posts: _Posts | None = None


_MAX_KEY = 2**63 - 1


# gc=False: the decoded structs hold only ints, never a cycle, so the collector need
# not track them (tens per answer, which would otherwise set off its passes often).
class _NumericTweet(msgspec.Struct, gc=False):
    tweet_id: Annotated[int, msgspec.Meta(ge=0, le=_MAX_KEY)]


class _NumericPosts(msgspec.Struct, gc=False):
    twitter: list[_NumericTweet] = []


class _NumericBody(msgspec.Struct, gc=False):
    posts: _NumericPosts | None = None


# One pass for the common answer: msgspec checks the whole document's syntax while it
# skips every key but posts.twitter[].tweet_id, which it reads as an int within the
# ledger's range ("4273..." too, being lax). An answer of another shape takes the two
# careful passes below.
_NUMERIC_DECODER = msgspec.json.Decoder(_NumericBody, strict=False)
_TWEETS_DECODER = msgspec.json.Decoder(_Body)
_tweet_id = attrgetter("tweet_id")


def read_body(body: bytes) -> tuple[str | None, tuple[int, ...]]:
    """(why the body is not a valid JSON object, or None; the tweet IDs it carries)."""
    try:
        posts = _NUMERIC_DECODER.decode(body).posts
        ids = tuple(map(_tweet_id, posts.twitter)) if posts else ()
        if _is_utf8(body):
            return None, ids
    except msgspec.DecodeError:  # ValidationError included: the careful path decides
        pass
    problem = json_object_problem(body)
    return problem, () if problem else tweet_ids(body)


def _is_utf8(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def tweet_ids(body: bytes) -> tuple[int, ...]:
    """The tweet IDs in a fetch answer, as integers; an ID that is not a decimal number
    fitting 63 bits is folded into one by a stable hash, so it is counted once, in this
    run and every later one."""
    try:
        posts = _TWEETS_DECODER.decode(body).posts
    except msgspec.DecodeError:
        return ()
    if posts is None:
        return ()
    return tuple(_as_ledger_key(tweet.tweet_id) for tweet in posts.twitter)


def _as_ledger_key(tweet_id: str | int) -> int:
    text = str(tweet_id)
    if text.isascii() and text.isdigit() and int(text) <= _MAX_KEY:
        return int(text)
    # Not hash(): Python salts it per process, so a restart would charge the ID again.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _MAX_KEY


# Top-level keys as str, every value kept as raw bytes: msgspec still checks the whole
# document's syntax but builds no Python objects for it, ~13x faster than a full parse
# on the real mix of sizes (a few outputs carry thousands of tweets).
_OBJECT_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])


def json_object_problem(body: bytes) -> str | None:
    """Why `body` is not one complete, valid JSON object in UTF-8; None when it is."""
    try:
        _OBJECT_DECODER.decode(body)
    except msgspec.ValidationError:
        return "JSON body is not an object"
    except msgspec.DecodeError:
        return "invalid JSON body"
    if not body.isascii():
        try:
            body.decode("utf-8")  # the decoder does not check raw values for UTF-8
        except UnicodeDecodeError:
            return "JSON body is not valid UTF-8"
    return None


def _is_tweet_quota_refusal(body: bytes, limits: LimitHeaders) -> bool:
    if _TWEET_QUOTA_MARKER in body[:500].decode("utf-8", "replace").lower():
        return True
    return limits.tweet_remaining is not None and limits.tweet_remaining <= 0


def _snippet(body: bytes) -> str:
    return body[:120].decode("utf-8", "replace").strip().replace("\n", " ")


__all__ = [
    "AltmetricClient",
    "FetchResult",
    "classify",
]
