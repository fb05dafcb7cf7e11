"""A loopback stand-in for the Altmetric API, for tests, benchmarks and the demo.

It answers three calls from the deterministic universe in ``harvester.sim.universe``, with the
provider's status codes and texts:

- fetch, ``GET {api_prefix}/fetch/{type}/{identifier}``: the output's details, filtered by
  ``include_sources`` and the like;
- counts, ``GET {api_prefix}/{type}/{identifier}``: the free summary of the same output
  (``harvester.sim.counts``); the fetch call's filters are ignored, and it carries no tweet IDs;
- citations, ``GET {api_prefix}/citations/{timeframe}``: pages of counts answers for the
  outputs with recent attention (``harvester.sim.listing``), each of them answerable by the
  other two calls.

Every answer passes a list of gates first (the built-in one checks the key); rate limits,
faults and the tweet-ID quota are more gates appended to ``Simulator.gates``. A gate sees
which call it is (``FetchRequest.endpoint``); the tweet-ID quota charges fetch calls only.

The identifier is read from the raw request target and percent-decoded exactly once, so the
tests see what a real server would: a literal ``/`` inside a DOI, and ``%23`` arriving as ``#``.
It only ever listens on loopback.
"""

import asyncio
import hashlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self
from urllib.parse import unquote

import msgspec
from aiohttp import web

from harvester.sim import counts, listing, universe
from harvester.sim.announce import how_to_use
from harvester.sim.gates import (
    EXTRA_HEADERS,
    FAULT_KINDS,
    FaultGate,
    RateLimitGate,
    TweetQuotaGate,
)
from harvester.sim.growth import Attention, Json

FETCH_TYPES = frozenset(universe.ID_TYPES | universe.TYPE_ALIASES.keys())
INVALID_KEY_TEXT = "The API key you supplied was invalid."
INVALID_TYPE_TEXT = "Invalid identifier type"
INVALID_IDENTIFIER_TEXT = "Invalid identifier"
NOT_FOUND_TEXT = "Not Found"
_SHUTDOWN_TIMEOUT_S = 2.0  # stop() must not hang on a client that keeps a request open


@dataclass
class SimulatorSettings:
    """How the simulator behaves; ``latency_s`` delays every answer to mimic a distant API."""

    key: str
    latency_s: float = 0.0
    record_sent: bool = True
    api_prefix: str = "/v1"
    # Benchmarks: > 0 pre-renders this many universe outputs and answers each known
    # identifier with one of them (chosen by hash, filters ignored), so measuring the
    # harvester does not measure the simulator's own building and rendering.
    body_pool: int = 0
    # The API on a bad day (see harvester.sim.gates): a server-side rate limit...
    rate_limit_per_s: float | None = None
    rate_limit_burst: int = 1
    rate_limit_status: int = 429
    send_retry_after: bool = False
    # ...hourly and daily allowances in UTC windows, `*_used` spent before we came...
    hourly_limit: int | None = None
    hourly_used: int = 0
    daily_limit: int | None = None
    daily_used: int = 0
    bucket_headers: bool = True  # false: a rate limit alone sends no allowance headers
    # ...and a fraction of answers replaced by faults.
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    slow_s: float = 5.0
    seed: int = 0
    attention_grows: bool = False  # each later answer about an output: a higher score (growth)
    # ...and the tweet-ID quota: unique tweet IDs per rolling window (seconds, for tests).
    tweet_quota: int | None = None
    tweet_quota_window_s: float = 2_592_000.0
    # How many outputs each timeframe of the citations call lists (before its filters).
    citations_per_timeframe: int = 250

    def __post_init__(self) -> None:
        if not 0 <= self.citations_per_timeframe <= listing.MAX_LISTING:
            raise ValueError(f"citations_per_timeframe must be 0 to {listing.MAX_LISTING}")


# Which call a request is; "other" is a path that is none of them (answered 404).
Endpoint = Literal["fetch", "counts", "citations", "other"]


@dataclass(frozen=True)
class FetchRequest:
    """One parsed call, as gates see it; ``query`` never holds the key. For the citations
    call ``id_type`` is empty and ``identifier`` is the timeframe."""

    id_type: str
    identifier: str
    query: dict[str, str] = field(default_factory=dict)
    endpoint: Endpoint = "fetch"


@dataclass(frozen=True)
class SentRecord:
    """What the server answered, so tests can compare it with what the client stored."""

    id_type: str
    identifier: str
    status: int
    sha256: str
    size: int
    query: dict[str, str]
    endpoint: Endpoint = "fetch"


Gate = Callable[[web.Request, FetchRequest], Awaitable[web.StreamResponse | None]]


def text_response(status: int, text: str) -> web.Response:
    """A plain-text answer like the API's error bodies (also handy for custom gates)."""
    return web.Response(
        status=status, body=text.encode(), content_type="text/plain", charset="utf-8"
    )


def _parse_target(
    raw_path: str, api_prefix: str, query: dict[str, str]
) -> tuple[FetchRequest, str | None]:
    """Tell the call from the raw request target and read its type and identifier.

    Returns the request and, when the API would answer 400, the error text. Under the prefix,
    ``fetch/...`` is the fetch call, ``citations/...`` the citations call (its parameters
    checked here, so a bad one is a 400 before any gate), anything else the counts call.
    """
    path = raw_path.partition("?")[0]
    if not path.startswith(f"{api_prefix}/"):
        return FetchRequest("", path, query, "other"), None
    call = path[len(api_prefix) + 1 :]
    head, _, tail = call.partition("/")
    if head == "fetch":
        return _parse_identifier(tail, query, "fetch")
    if head != "citations":
        return _parse_identifier(call, query, "counts")
    request = FetchRequest("", tail, query, "citations")
    try:
        listing.parse_query(tail, query)
    except ValueError as error:
        return request, str(error)
    return request, None


def _parse_identifier(
    target: str, query: dict[str, str], endpoint: Endpoint
) -> tuple[FetchRequest, str | None]:
    """Type and identifier from ``{type}/{identifier}``, the identifier percent-decoded once
    (kept raw, with the 400 text, when it cannot be decoded)."""
    id_type, _, raw_identifier = target.partition("/")
    if id_type not in FETCH_TYPES:
        return FetchRequest(id_type, raw_identifier, query, endpoint), INVALID_TYPE_TEXT
    try:
        identifier = unquote(raw_identifier, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return FetchRequest(id_type, raw_identifier, query, endpoint), INVALID_IDENTIFIER_TEXT
    request = FetchRequest(id_type, identifier, query, endpoint)
    return request, None if identifier else INVALID_IDENTIFIER_TEXT


class Simulator:
    """The API on loopback: ``async with Simulator(settings) as sim: sim.base_url``."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.sent: list[SentRecord] = []
        self.requests_total = 0
        self.gates: list[Gate] = [self.check_key]
        self.app = web.Application()
        self.app.router.add_route("GET", r"/{tail:[\s\S]*}", self._handle)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._pool = universe.body_pool(settings.body_pool) if settings.body_pool else []
        self._grow: Callable[[Json], Json] = Attention() if settings.attention_grows else _same
        self.rate_limit: RateLimitGate | None = None
        self.faults: FaultGate | None = None
        if settings.rate_limit_per_s or settings.hourly_limit or settings.daily_limit:
            self.rate_limit = RateLimitGate(
                settings.rate_limit_per_s or None,
                settings.rate_limit_burst,
                settings.rate_limit_status,
                settings.send_retry_after,
                hourly_limit=settings.hourly_limit,
                hourly_used=settings.hourly_used,
                daily_limit=settings.daily_limit,
                daily_used=settings.daily_used,
                bucket_headers=settings.bucket_headers,
            )
            self.gates.append(self.rate_limit)
        if settings.fault_rate > 0:
            self.faults = FaultGate(
                settings.fault_rate, settings.fault_kinds, settings.slow_s, settings.seed
            )
            self.gates.append(self.faults)
        self.tweet_quota: TweetQuotaGate | None = None
        if settings.tweet_quota is not None:
            self.tweet_quota = TweetQuotaGate(settings.tweet_quota, settings.tweet_quota_window_s)
            self.gates.append(self.tweet_quota)

    @property
    def base_url(self) -> str:
        """The API base, e.g. ``http://127.0.0.1:PORT/v1``; only known once started."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on a loopback address (port 0 picks a free one) and return the base URL."""
        _require_loopback(host)
        host = "127.0.0.1" if host == "localhost" else host  # one socket, so one port to report
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown_host}:{bound_port}{self.settings.api_prefix}"
        return self._base_url

    async def stop(self) -> None:
        """Close the listener and every connection; safe to call twice."""
        runner, self._runner, self._base_url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def check_key(self, request: web.Request, fetch: FetchRequest) -> web.Response | None:
        """The built-in gate: a missing or wrong key gets the API's 403 text, on every call
        (since November 2025 the free counts and citations calls need a key too)."""
        if request.query.get("key") != self.settings.key:
            return text_response(403, INVALID_KEY_TEXT)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Answer, then hold the answer until `latency_s` after the request arrived.

        Like a remote API, its own work (rendering a large output takes milliseconds)
        is part of the latency, not added to it, so the latency stays what was set.
        """
        self.requests_total += 1
        loop = asyncio.get_running_loop()
        arrived_s = loop.time()
        response = await self._respond(request)
        extra_headers = request.get(EXTRA_HEADERS)
        if extra_headers and not response.prepared:
            response.headers.update(extra_headers)
        remaining_s = self.settings.latency_s - (loop.time() - arrived_s)
        if remaining_s > 0:
            await asyncio.sleep(remaining_s)
        return response

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        """Parse, pass the gates, then answer from the universe; record what was sent."""
        query = {name: value for name, value in request.query.items() if name != "key"}
        fetch, invalid = _parse_target(request.raw_path, self.settings.api_prefix, query)
        if invalid is not None:
            return self._record(fetch, text_response(400, invalid))
        if fetch.endpoint == "other":
            return self._record(fetch, text_response(404, NOT_FOUND_TEXT))
        for gate in self.gates:
            answer = await gate(request, fetch)
            if answer is not None:
                return self._record(fetch, answer)
        return self._record(fetch, await self._answer(fetch))

    async def _answer(self, fetch: FetchRequest) -> web.Response:
        """The call's answer once every gate let it pass.

        Building an output with thousands of tweets, or a listing, takes milliseconds:
        off the loop, so the other requests in flight keep their latency.
        """
        if fetch.endpoint == "citations":
            size = self.settings.citations_per_timeframe
            return await asyncio.to_thread(_citations_answer, fetch, size)
        if self._pool and fetch.endpoint == "fetch":
            return self._pooled_answer(fetch)
        answer = _fetch_answer if fetch.endpoint == "fetch" else _counts_answer
        if universe.is_heavy(fetch.id_type, fetch.identifier):
            return await asyncio.to_thread(answer, fetch, self._grow)
        return answer(fetch, self._grow)

    def _pooled_answer(self, fetch: FetchRequest) -> web.Response:
        """A pre-rendered body (or the usual 404) for benchmark runs."""
        if not universe.is_known(fetch.id_type, fetch.identifier):
            return text_response(404, NOT_FOUND_TEXT)
        digest = hashlib.sha256(f"{fetch.id_type}:{fetch.identifier}".encode()).digest()
        return _json_response(self._pool[int.from_bytes(digest[:8]) % len(self._pool)])

    def _record(self, fetch: FetchRequest, response: web.StreamResponse) -> web.StreamResponse:
        """Remember status and a digest of the exact body bytes (empty if not a plain body)."""
        if self.settings.record_sent:
            body = response.body if isinstance(response, web.Response) else None
            data = bytes(body) if isinstance(body, bytes | bytearray) else b""
            digest = hashlib.sha256(data).hexdigest()
            record = SentRecord(
                fetch.id_type,
                fetch.identifier,
                response.status,
                digest,
                len(data),
                fetch.query,
                fetch.endpoint,
            )
            self.sent.append(record)
        return response


def _json_response(body: bytes) -> web.Response:
    """A 200 answer carrying JSON bytes as they are."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _same(output: Json) -> Json:
    return output


def _fetch_answer(fetch: FetchRequest, grow: Callable[[Json], Json] = _same) -> web.Response:
    """404 "Not Found" for outputs without attention data, else the filtered JSON."""
    output = universe.output_for(fetch.id_type, fetch.identifier)
    if output is None:
        return text_response(404, NOT_FOUND_TEXT)
    return _json_response(universe.render_with_query(grow(output), fetch.query))


def _counts_answer(fetch: FetchRequest, grow: Callable[[Json], Json] = _same) -> web.Response:
    """The counts call: the same output summarised; the fetch call's filters do not apply."""
    output = universe.output_for(fetch.id_type, fetch.identifier)
    if output is None:
        return text_response(404, NOT_FOUND_TEXT)
    return _json_response(msgspec.json.encode(counts.counts_answer(grow(output))))


def _citations_answer(fetch: FetchRequest, size: int) -> web.Response:
    """A page of the timeframe's listing; 404 "Not Found" past its last page."""
    answer = listing.citations_answer(listing.parse_query(fetch.identifier, fetch.query), size)
    if answer is None:
        return text_response(404, NOT_FOUND_TEXT)
    return _json_response(msgspec.json.encode(answer))


def _require_loopback(host: str) -> None:
    """Refuse anything but loopback: the simulator holds a key and is never a public service."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulator only listens on loopback, not {host!r}")


async def serve(settings: SimulatorSettings, host: str, port: int) -> None:
    """Run until cancelled, announcing the base URL on stdout's first line (a parent
    reads the port there), then the config lines and the key that point a harvester
    at it, as they are to be written (issue 24)."""
    simulator = Simulator(settings)
    url = await simulator.start(host, port)
    try:
        print(f"simulator listening on {url} (key: {settings.key})", flush=True)
        print(how_to_use(url, settings.key), flush=True)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
