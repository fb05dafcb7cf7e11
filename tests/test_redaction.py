"""Secrets out of every text and stored byte: the key whole, any prefix of 8 characters
or more, in every spelling an echo may use; a proxy's credentials whole."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from harvester import redaction
from harvester.redaction import MARKER, KeyRedactor, shown_url, url_secrets

ODD = "k3y/with+odd&chars"  # needs percent-encoding in a query
HEX = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # what Altmetric's keys look like


@pytest.mark.parametrize(
    "echo",
    [
        ODD,  # as it is (a server that decoded the query)
        quote(ODD, safe=""),  # as we sent it
        quote(ODD, safe="").lower(),  # re-encoded with lower-case hex
        json.dumps(ODD)[1:-1].replace("/", "\\/"),  # a JSON string escaping the solidus
        "k3y/with%2Bodd&chars",  # spellings mixed
        ODD[:8],  # cut short at 8 characters...
        quote(ODD, safe="")[:12],  # ...or inside the percent-encoded form ("k3y%2Fwith%2")
        ODD[:13],
    ],
)
def test_the_key_and_its_prefixes_are_found_in_any_spelling(echo: str) -> None:
    redactor = KeyRedactor(ODD)
    text = f"GET /v1/fetch/doi/10.1/x?key={echo} HTTP/1.1"
    redacted = redactor.text(text)
    assert ODD[:8] not in redacted and quote(ODD, safe="")[:10] not in redacted
    assert redacted.startswith("GET /v1/fetch/doi/10.1/x?key=***")
    body, count = redactor.body(text.encode())
    assert body.decode() == redacted and count == 1


def test_a_prefix_shorter_than_8_characters_is_left_alone() -> None:
    redactor = KeyRedactor(HEX)
    assert redactor.text(f"id {HEX[:7]}") == f"id {HEX[:7]}"
    assert redactor.body(HEX[:7].encode()) == (HEX[:7].encode(), 0)
    assert redactor.text(f"id {HEX[:8]}!") == f"id {MARKER}!"


def test_every_occurrence_is_replaced_and_counted() -> None:
    redactor = KeyRedactor(HEX)
    body = json.dumps({"url": f"https://a/v1?key={HEX}", "echo": [HEX, HEX[:20], HEX.upper()]})
    redacted, count = redactor.body(body.encode())
    assert count == 3
    assert HEX[:8].encode() not in redacted
    assert json.loads(redacted) == {
        "url": "https://a/v1?key=***",
        "echo": ["***", "***", HEX.upper()],  # case is not changed by echoes we know of
    }


def test_a_body_without_the_key_is_the_same_object() -> None:
    body = b'{"title": "nothing to see"}' * 100
    redacted, count = KeyRedactor(HEX).body(body)
    assert redacted is body and count == 0


def test_a_short_key_is_found_whole_only() -> None:
    redactor = KeyRedactor("abc")
    assert redactor.text("xxabcxx ab") == "xx***xx ab"


def test_a_password_is_redacted_whole_never_by_prefix() -> None:
    redactor = KeyRedactor("s3cret-proxy-pass", prefixes=False)
    assert redactor.text("s3cret-proxy-pass s3cret-proxy") == "*** s3cret-proxy"


def test_proxy_urls_are_shown_without_their_password() -> None:
    assert shown_url("http://bob:s3cret@proxy.example:3128") == "http://bob:***@proxy.example:3128"
    assert shown_url("http://proxy.example:3128") == "http://proxy.example:3128"
    assert url_secrets("http://bob:s3cret@proxy:3128") == ["bob:s3cret", "s3cret"]
    assert url_secrets("http://bob:ab@proxy:3128") == ["bob:ab"]  # too short to hunt alone
    assert url_secrets("http://proxy:3128") == []


def test_registered_secrets_are_redacted_by_the_registry() -> None:
    key = "registry-test-key-4d2c"
    redaction.register(key)
    redaction.register_url("http://ann:pa55word-xyz@proxy:8080")
    text = f"key={key[:9]} via http://ann:pa55word-xyz@proxy:8080 and pa55word-xyz"
    assert redaction.redact(text) == "key=*** via http://***@proxy:8080 and ***"


def test_overlapping_secrets_are_redacted_whole_whatever_their_order() -> None:
    # A key registered first that shares a prefix with a proxy's password: replacing
    # the key's prefix first would cut the password in two and leave its tail shown.
    redaction.register("overlap-s3cret-key-9f1e")
    redaction.register_url("http://bo:overlap-s3cret-of-bo@proxy:8080")
    shown = redaction.redact("via http://bo:overlap-s3cret-of-bo@proxy:8080")
    assert shown == "via http://***@proxy:8080"
