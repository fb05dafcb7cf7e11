"""Secrets kept out of every text and every stored byte: the API key, and the
credentials of a proxy.

The key travels in every request's query string, so whatever echoes a request (a
server's error page, a field of an answer, an exception's message, a proxy's log
line) may carry it back. `KeyRedactor` replaces it, before anything is cut,
truncated, logged or stored:

- the whole key and any prefix of it `PREFIX_CHARS` (8) characters long or longer,
  since a server that cuts an echoed URL short would otherwise leave a part long
  enough to narrow the key down;
- each character as it is, percent-encoded (either case of hex digits) or
  JSON-escaped (`\\/`, `\\u00e9`), so the key as we sent it, as a server decoded it
  and as a JSON answer quotes it are all found, mixed spellings included.

Every occurrence becomes `MARKER`. A short secret (a proxy's password) is replaced
only whole: a prefix of a few characters would be found everywhere.

The process keeps one registry (`register`, `redact`) that the log processor reads:
the key is registered where it is loaded, a proxy's credentials where its URL is
read, so no command can forget to.
"""

from __future__ import annotations

import json
from typing import AnyStr, Generic
from urllib.parse import quote, urlsplit, urlunsplit

MARKER = "***"
MARKER_BYTES = MARKER.encode()
PREFIX_CHARS = 8  # a prefix this long narrows a key down: it is a secret too
SHORTEST_PASSWORD = 4  # a shorter proxy password is redacted only inside its URL


def spellings(char: str) -> tuple[str, str, str, str, str]:
    """The ways an echo may write one character of a secret, in a fixed order: as it
    is, percent-encoded in upper and lower case, JSON-escaped, JSON with `\\/`."""
    encoded = quote(char, safe="")
    escaped = json.dumps(char)[1:-1]
    return char, encoded, encoded.lower(), escaped, "\\/" if char == "/" else escaped


class _Finder(Generic[AnyStr]):
    """Finds a secret's spellings in one type of text (str or bytes)."""

    def __init__(self, per_char: list[tuple[AnyStr, ...]], shortest: int, empty: AnyStr) -> None:
        # Per character, its distinct spellings, the longest first (greedy matching).
        self._per_char: list[list[AnyStr]] = [
            sorted(set(chars), key=len, reverse=True) for chars in per_char
        ]
        self._shortest = shortest
        # One needle per spelling of the first `shortest` characters, each written the
        # same way throughout: a plain substring search finds them, so a text without
        # the secret costs a search per needle (one, for a key of letters and digits).
        head = per_char[:shortest]
        forms = range(len(head[0])) if head else range(0)
        self._needles: list[AnyStr] = list(
            dict.fromkeys(empty.join(chars[form] for chars in head) for form in forms)
        )

    def spans(self, text: AnyStr) -> list[tuple[int, int]]:
        """The (start, end) of every occurrence, each as long as it goes, overlaps merged."""
        found: list[tuple[int, int]] = []
        for needle in self._needles:
            start = text.find(needle)
            while start >= 0:
                end = self._extend(text, start + len(needle))
                found.append((start, end))
                start = text.find(needle, end)
        return _merged(found)

    def _extend(self, text: AnyStr, end: int) -> int:
        """Past `end`, as many further characters of the secret as follow, in any spelling."""
        for chars in self._per_char[self._shortest :]:
            for spelling in chars:
                if text.startswith(spelling, end):
                    end += len(spelling)
                    break
            else:
                return end
        return end


def _merged(found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans in order, those that overlap or touch made one."""
    if len(found) < 2:
        return found
    found.sort()
    merged = [found[0]]
    for start, end in found[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _replaced(text: AnyStr, spans: list[tuple[int, int]], marker: AnyStr) -> AnyStr:
    parts: list[AnyStr] = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], marker]
        last = end
    parts.append(text[last:])
    return marker[:0].join(parts)


class KeyRedactor:
    """Removes one secret from texts and bytes. With `prefixes` (the API key), any
    prefix of `PREFIX_CHARS` characters or more is removed too; without, only the
    whole secret."""

    def __init__(self, secret: str, *, prefixes: bool = True) -> None:
        chars = [spellings(char) for char in secret]
        shortest = min(len(secret), PREFIX_CHARS) if prefixes else len(secret)
        self._text = _Finder(list(chars), shortest, "")
        encoded = [tuple(spelling.encode() for spelling in each) for each in chars]
        self._bytes = _Finder(encoded, shortest, b"")

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the secret is in `text`, overlaps merged."""
        return self._text.spans(text)

    def text(self, text: str) -> str:
        """`text` with every occurrence replaced by `MARKER`."""
        spans = self._text.spans(text)
        return _replaced(text, spans, MARKER) if spans else text

    def body(self, body: bytes) -> tuple[bytes, int]:
        """(`body` with every occurrence replaced by `MARKER`, how many there were)."""
        spans = self._bytes.spans(body)
        return (_replaced(body, spans, MARKER_BYTES), len(spans)) if spans else (body, 0)


_registered: dict[tuple[str, bool], KeyRedactor] = {}


def register(secret: str, *, prefixes: bool = True) -> None:
    """Redact `secret` from everything `redact` sees from now on (the logs)."""
    if secret and (secret, prefixes) not in _registered:
        _registered[secret, prefixes] = KeyRedactor(secret, prefixes=prefixes)


def redact(text: str) -> str:
    """`text` without any registered secret. Every secret is looked for in the text as
    it came, and their spans merged: replacing one secret first could cut another
    that overlaps it (a proxy's `user:password` beside a key sharing a prefix) into
    pieces none of its finders would know."""
    spans = _merged([span for redactor in _registered.values() for span in redactor.spans(text)])
    return _replaced(text, spans, MARKER) if spans else text


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries (`user:password@`): its user-and-password part,
    and the password alone when long enough not to be found everywhere."""
    parts = urlsplit(url)
    if parts.password is None:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return [userinfo] + ([password] if len(password) >= SHORTEST_PASSWORD else [])


def register_url(url: str) -> None:
    """Register the credentials in `url` (a proxy's), whole, as secrets."""
    for secret in url_secrets(url):
        register(secret, prefixes=False)


def shown_url(url: str) -> str:
    """`url` as it may be shown: a password in it replaced by `MARKER`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MARKER}@{host}"))
