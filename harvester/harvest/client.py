"""The Altmetric client: one call, one classified result.

The client knows the API and nothing of jobs or the store. Every answer becomes a
`FetchResult` whose `outcome` says what it means for the harvest; a 200 only counts
as `ok` when the whole body arrived and is one JSON object (`harvest.answers`), so a
truncated or garbled body can never be stored as done. Requests go through one
aiohttp session (`harvest.network`: TLS, the proxy, bounded answers, one deadline).

The key travels in the query string, so anything that echoes a request may carry it
back. It is removed (`harvester.redaction`: whole, any prefix of 8 characters or
more, in any spelling) from every body before anything reads, cuts or keeps it, and
from every error text before it is cut: an answer that held it is stored with each
occurrence replaced by `***`, and its `redacted` count says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from yarl import URL

from harvester import __version__
from harvester.config import ApiSettings, Secret
from harvester.harvest.answers import read_body
from harvester.harvest.limits import NO_LIMITS, LimitHeaders, read_limit_headers
from harvester.harvest.network import (
    PROXY_AUTH_PROBLEM,
    REQUEST_ERRORS,
    ApiSession,
    Proxy,
    failure,
)
from harvester.identifiers import api_type_name, encode_path_segment
from harvester.model import Outcome
from harvester.redaction import KeyRedactor

USER_AGENT = f"altmetric-harvester/{__version__}"
# What every request says besides its Host; aiohttp adds the encodings it can decode.
REQUEST_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*"}
_TWEET_QUOTA_MARKER = "tweet id rate limit"
ERROR_CHARS = 300  # an error text is cut here, after the key is out of it


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One answer, classified (`harvester.model.Outcome`)."""

    outcome: Outcome
    http_status: int | None
    body: bytes = b""  # never holds the key: see `redacted`
    limits: LimitHeaders = NO_LIMITS
    error: str | None = None
    tweet_ids: tuple[int, ...] = ()  # of an `ok` answer: what the tweet quota charges
    redacted: int = 0  # occurrences of the key replaced by `***` in `body`


class AltmetricClient:
    """Fetches output details. Use as `async with AltmetricClient(api, key) as client`.

    It opens as many connections as requests are in flight at once (the workers
    bound that, and a reload may change it) and keeps them alive between requests."""

    def __init__(
        self, api: ApiSettings, key: Secret, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self._base_url = str(URL(api.base_url.rstrip("/")))  # percent-encoded as sent
        # The fetch call's path is /fetch/{type}/{id}; the counts call's is /{type}/{id}.
        self._call_prefix = "/fetch/" if api.endpoint == "fetch" else "/"
        self._encoded_key = quote(key.reveal(), safe="")
        self._redactor = KeyRedactor(key.reveal())
        self._legacy_type_names = api.legacy_type_names
        self._session = ApiSession(api, REQUEST_HEADERS, environ)
        self._queries: dict[tuple[tuple[str, str], ...], str] = {}

    @classmethod
    def for_api(cls, api: ApiSettings, key: Secret) -> AltmetricClient:
        """The client of the configured API: its base URL, call, TLS, proxy and bounds."""
        return cls(api, key)

    @property
    def proxy(self) -> Proxy:
        """The proxy requests go through (and where that came from)."""
        return self._session.proxy

    def reconfigure(self, api: ApiSettings) -> None:
        """A reload's `api.proxy` and `api.max_answer_bytes`, for the requests from now on."""
        self._session.reconfigure(api)

    async def __aenter__(self) -> AltmetricClient:
        await self._session.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.__aexit__(*exc_info)

    def _url(self, id_type: str, identifier: str, params: Mapping[str, str]) -> URL:
        """The request: the encoded path, the filters and the key."""
        path_type = api_type_name(id_type, self._legacy_type_names)
        return URL(
            f"{self._base_url}{self._call_prefix}{path_type}/{encode_path_segment(identifier)}"
            f"?{self._query(params)}key={self._encoded_key}",
            encoded=True,
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
        return await self._get(self._url(id_type, identifier, params or {}))

    async def citations(self, timeframe: str, params: Mapping[str, str]) -> FetchResult:
        """One page of the citations call (discovery), classified like any answer: a
        page is `ok` when it is a whole JSON object. Never raises for I/O."""
        query = urlencode(list(params.items())) + "&" if params else ""  # pages: not cached
        url = (
            f"{self._base_url}/citations/{encode_path_segment(timeframe)}"
            f"?{query}key={self._encoded_key}"
        )
        return await self._get(URL(url, encoded=True))

    async def _get(self, url: URL) -> FetchResult:
        started = time.monotonic()
        try:
            answer = await self._session.get(url)
        except REQUEST_ERRORS as error:
            outcome, text = failure(error, time.monotonic() - started)
            return FetchResult(outcome, None, error=self._redact(text))
        body, redacted = self._redactor.body(answer.body)
        result = classify(answer.status, answer.headers, body)
        if redacted:
            result = dataclasses.replace(result, redacted=redacted)
        if result.error is not None:
            result = dataclasses.replace(result, error=self._redact(result.error))
        return result

    def _redact(self, text: str) -> str:
        """An error text without the key, then cut (never the other way round)."""
        return self._redactor.text(text)[:ERROR_CHARS]


def classify(status: int, headers: Mapping[str, str], body: bytes) -> FetchResult:
    """Turn one complete HTTP answer into a FetchResult. `headers`: names lowercased
    (or a case-insensitive mapping)."""
    limits = read_limit_headers(headers)
    if status == 200:
        return _classify_ok(body, limits)
    if status == 404:
        return FetchResult(Outcome.NOT_FOUND, status, body, limits=limits)
    if status == 407:  # a plain-http request's proxy wants credentials: no job's fault
        return FetchResult(
            Outcome.SETUP_ERROR, status, body, limits=limits, error=PROXY_AUTH_PROBLEM
        )
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
