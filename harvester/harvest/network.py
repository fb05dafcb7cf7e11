"""How requests reach the API: one aiohttp `ClientSession` for every call, through the
network the user is on.

- **TLS** is verified against the system's trust store (OpenSSL's default paths, so
  `SSL_CERT_FILE` and `SSL_CERT_DIR` work as usual), plus `api.ca_file` for networks
  that inspect TLS with a CA of their own. Nothing turns verification off.
- **The proxy** is `api.proxy` when set; else the environment's, as other tools read
  it: `https_proxy`/`HTTPS_PROXY` (`http_proxy`/`HTTP_PROXY` for a plain `http` base
  URL), lower case first, unless `no_proxy`/`NO_PROXY` names the host. A loopback API
  (the simulator) is never sent to the environment's proxy. The choice is made once:
  the harvester speaks to one origin (aiohttp's `trust_env` would make it per request,
  in a thread, and read `~/.netrc` besides). Credentials in a proxy's URL are secrets.
- **Bounded answers**: one answer may take at most `api.max_answer_bytes`, as declared
  (Content-Length) and as read after decompression, which aiohttp does in bounded steps;
  beyond it the answer is cut off (`AnswerTooLarge`). Answers above
  `FREE_ANSWER_BYTES`, twice the largest real one, grow one at a time, so however many
  huge answers arrive at once, memory holds one of them and the first megabyte of the
  rest (whose connections wait, unread).
- **One deadline** (`api.timeout_s`) covers the whole request: connecting, the proxy,
  TLS, waiting for the answer and reading it.

Failures are described by `failure`, in words that never hold the request's URL.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from harvester.config import ApiSettings, is_loopback
from harvester.errors import ConfigError
from harvester.model import Outcome
from harvester.redaction import register_url, shown_url

FREE_ANSWER_BYTES = 1024 * 1024  # answers up to this size are read side by side
KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused


class Answer(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes  # decoded from any content encoding


class AnswerTooLarge(Exception):
    """An answer over `api.max_answer_bytes`: the message says how large."""


class BrokenBody(Exception):
    """The answer's body is broken: cut short, badly framed or badly compressed."""


# Everything a request may raise that is the network's doing, not ours.
REQUEST_ERRORS = (aiohttp.ClientError, OSError, AnswerTooLarge, BrokenBody)


class Proxy(NamedTuple):
    """The proxy requests go through, and where that choice came from."""

    url: str | None  # None: straight to the API
    source: str  # "api.proxy", "$HTTPS_PROXY", ...; "" without a proxy

    def shown(self) -> str:
        """For people: the URL without its password, and its source."""
        return "none" if self.url is None else f"{shown_url(self.url)} (from {self.source})"


NO_PROXY = Proxy(None, "")


def choose_proxy(base_url: str, configured: str, environ: Mapping[str, str]) -> Proxy:
    """`api.proxy` when set, else the environment's proxy for the API's scheme."""
    if configured:
        return Proxy(configured, "api.proxy")
    parts = urlsplit(base_url)
    host, scheme = parts.hostname or "", parts.scheme
    if is_loopback(host):
        return NO_PROXY
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        return NO_PROXY
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    # urllib's own reading of no_proxy (suffixes, "*", ports); typeshed lacks it.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if no_proxy and bypass(host, {"no": no_proxy}):
        return NO_PROXY
    if "://" not in value:
        value = f"http://{value}"  # "proxy:3128", as curl reads it
    register_url(value)
    proxy = urlsplit(value)
    if proxy.scheme not in ("http", "https") or not proxy.hostname:
        raise ConfigError(
            f"${name} is {shown_url(value)!r}: the harvester can use an http:// proxy "
            '(or set api.proxy = "http://host:port")'
        )
    return Proxy(value, f"${name}")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store, and `ca_file`'s CAs besides; host names checked."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


class ApiSession:
    """GET requests to the API through one aiohttp session: `async with` it."""

    def __init__(
        self,
        api: ApiSettings,
        headers: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._base_url = api.base_url
        self._environ = os.environ if environ is None else environ
        self._timeout_s = api.timeout_s
        self._tls = tls_context(api.ca_file) if urlsplit(api.base_url).scheme == "https" else None
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None
        self._large = asyncio.Lock()  # held by the one answer growing past FREE_ANSWER_BYTES
        self.reconfigure(api)

    def reconfigure(self, api: ApiSettings) -> None:
        """The proxy and the bound on answers, for requests from now on (a reload)."""
        self.proxy = choose_proxy(self._base_url, api.proxy, self._environ)
        self.max_answer_bytes = api.max_answer_bytes

    async def __aenter__(self) -> ApiSession:
        connector = aiohttp.TCPConnector(
            limit=0,  # as many connections as requests in flight: the workers bound those
            keepalive_timeout=KEEPALIVE_S,
            ttl_dns_cache=300,
            ssl=self._tls if self._tls is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets none; skip the work
            timeout=aiohttp.ClientTimeout(total=None),  # ours covers the whole request
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: URL) -> Answer:
        """One GET, its answer whatever its status. Raises TimeoutError after
        `api.timeout_s`, `AnswerTooLarge`, `BrokenBody`, or aiohttp's and the OS's errors."""
        assert self._session is not None, "use ApiSession as an async context manager"
        async with (
            asyncio.timeout(self._timeout_s),
            self._session.get(url, proxy=self.proxy.url, allow_redirects=False) as response,
        ):
            try:
                body = await self._read(response)
            except BaseException as error:
                response.close()  # never back to the pool: the rest of it is unread
                if isinstance(error, aiohttp.ClientPayloadError):
                    raise BrokenBody(_payload_problem(error, response.headers)) from None
                raise
            return Answer(response.status, response.headers, body)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, decompressed, if it stays within `max_answer_bytes`."""
        cap = self.max_answer_bytes
        declared = response.content_length
        if declared is not None and declared > cap:
            raise AnswerTooLarge(
                f"answer of {declared:,} bytes refused: over api.max_answer_bytes ({cap:,})"
            )
        content = response.content
        parts: list[bytes] = []
        size = 0
        large = False
        try:
            while chunk := await content.readany():
                size += len(chunk)
                if size > cap:
                    raise AnswerTooLarge(
                        f"answer cut off at api.max_answer_bytes ({cap:,} bytes): "
                        f"{size:,} bytes read and more coming"
                    )
                parts.append(chunk)
                if not large and size > FREE_ANSWER_BYTES:
                    await self._large.acquire()
                    large = True
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            if large:
                self._large.release()


def _payload_problem(error: aiohttp.ClientPayloadError, headers: Mapping[str, str]) -> str:
    """A broken body in words: cut short, or not decodable in its content encoding."""
    text = f"{error} {error.__cause__ or ''}".lower()
    coding = headers.get("Content-Encoding", "").strip().lower()[:40]
    if "content-encoding" in text or "decode" in text or "decompress" in text:
        return f"bad {coding or 'compressed'} body"
    if "not completed" in text or "content length" in text or "transfer" in text:
        return "body cut short (truncated)"
    return f"broken body ({type(error).__name__})"


def failure(error: BaseException, waited_s: float) -> tuple[Outcome, str]:
    """What a request that raised `error` after `waited_s` comes to, in words (which may
    quote an exception's text: the client redacts them)."""
    if isinstance(error, AnswerTooLarge | BrokenBody):
        return Outcome.BAD_RESPONSE, str(error)
    if isinstance(error, aiohttp.ClientPayloadError):
        return Outcome.BAD_RESPONSE, _payload_problem(error, {})
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return Outcome.SETUP_ERROR, _certificate_problem(error)
    if isinstance(error, aiohttp.ClientHttpProxyError):
        if error.status == 407:
            return Outcome.SETUP_ERROR, PROXY_AUTH_PROBLEM
        return Outcome.NETWORK_ERROR, f"the proxy answered HTTP {error.status} to CONNECT"
    if isinstance(error, TimeoutError):
        return Outcome.NETWORK_ERROR, f"timed out after {waited_s:.1f}s"
    return Outcome.NETWORK_ERROR, f"{type(error).__name__}: {error}"


PROXY_AUTH_PROBLEM = (
    "the proxy refused us (HTTP 407 Proxy Authentication Required): put its user and "
    'password in its URL, api.proxy = "http://user:password@host:port"'
)


def _certificate_problem(error: aiohttp.ClientConnectorCertificateError) -> str:
    """What is wrong and the setting that fixes it first (a message may be cut in the
    middle to fit one line), the certificate's own complaint last."""
    cause = error.certificate_error
    reason = (getattr(cause, "verify_message", "") or str(cause)).rstrip(".")
    port = "" if error.port in (None, 443) else f":{error.port}"
    where = f"certificate verify failed for {error.host}{port}"
    if "mismatch" in reason.lower():
        return f"{where}: it is for another host name; check api.base_url ({reason})"
    return f"{where}; set api.ca_file to your network's CA bundle ({reason})"
