"""Parse, normalise and encode the identifiers the fetch API accepts.

Identifiers come from users' files, so they are untrusted: every one is bounded in
length, checked against the shape of its type, and rejected with a reason a person
can act on. Normalising matters for more than tidiness: the store's uniqueness is on
(type, normalised identifier), so `doi:10.1/X` and `https://doi.org/10.1/x` must
become one job, not two. The same holds across spellings that name one output: an
ISBN-10 is stored as its ISBN-13, an arXiv ID without its version (`v2`) or the subject
class of an old-style ID (`math.GT/0309136` is `math/0309136`).

Only new enqueues see the current normal form: a store is never rewritten, so a job
queued under an older spelling keeps it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote, unquote

from harvester.errors import IdentifierError, listing

__all__ = [
    "ID_TYPES",
    "TYPE_NAMES",
    "Identifier",
    "IdentifierError",
    "api_type_name",
    "canonical_type",
    "encode_path_segment",
    "normalise",
    "parse_line",
]


class Identifier(NamedTuple):
    """A normalised identifier under its canonical (today's API) type name.

    A tuple, so a million of them are cheap to make and go straight into executemany.
    """

    id_type: str
    value: str

    def __str__(self) -> str:
        return f"{self.id_type}:{self.value}"


# Older API docs spell these types differently; users may use either.
_ALIASES = {"arxiv_id": "arxiv", "ads_id": "ads"}
_LEGACY_NAMES = {"arxiv": "arxiv_id", "ads": "ads_id"}

_MAX_LENGTH = {"uri": 2048, "urn": 1024, "doi": 1024, "handle": 1024, "repec": 512}
_DEFAULT_MAX_LENGTH = 256

_DOI_URL_PREFIX = re.compile(r"^(?:https?://)?(?:dx\.)?doi\.org/", re.IGNORECASE)
_DOI_SCHEME_PREFIX = re.compile(r"^doi:\s*", re.IGNORECASE)
_DOI_SHAPE = re.compile(r"^10\.[0-9]{4,9}/\S+$")
_HANDLE_URL_PREFIX = re.compile(r"^(?:https?://)?hdl\.handle\.net/", re.IGNORECASE)
_HANDLE_SCHEME_PREFIX = re.compile(r"^hdl:\s*", re.IGNORECASE)
_HANDLE_SHAPE = re.compile(r"^[^/\s]+/\S+$")
_ARXIV_URL_PREFIX = re.compile(r"^(?:https?://)?(?:www\.)?arxiv\.org/(?:abs|pdf)/", re.IGNORECASE)
_ARXIV_SCHEME_PREFIX = re.compile(r"^arxiv:\s*", re.IGNORECASE)
# Group 1 is the ID without its version: 2101.01234v2 is 2101.01234.
_ARXIV_NEW = re.compile(r"^([0-9]{4}\.[0-9]{4,5})(?:v[0-9]+)?$", re.IGNORECASE)
# Old style, archive[.subject class]/YYMMNNN[vN]: groups 1 and 2 are the archive and number;
# the subject class is no part of the ID (math.GT/0309136 is math/0309136).
_ARXIV_OLD = re.compile(
    r"^([a-z][a-z\-]*)(?:\.[a-z][a-z\-]*)?/([0-9]{7})(?:v[0-9]+)?$", re.IGNORECASE
)
_PUBMED_URL_PREFIX = re.compile(r"^(?:https?://)?pubmed\.ncbi\.nlm\.nih\.gov/", re.IGNORECASE)
_PMID_PREFIX = re.compile(r"^pmid(?::\s*|\s+)", re.IGNORECASE)
_PMC_SHAPE = re.compile(r"^(?:pmcid\s*:?\s*(?:pmc)?|pmc\s*:?)\s*[0-9]+$", re.IGNORECASE)
_PMC_REASON = (
    "a PubMed Central ID (PMC...): the API looks outputs up by PubMed ID; "
    "convert it with NCBI's PMC ID converter and enqueue it as pmid"
)
_ISBN_PREFIX = re.compile(r"^isbn(?:-1[03])?:?\s*", re.IGNORECASE)
_ISBN_LABELLED = re.compile(r"^isbn(?:-1[03])?:?\s*[0-9]", re.IGNORECASE)
_ISBN10_SHAPE = re.compile(r"^[0-9]{9}[0-9X]$")
_ISBN13_SHAPE = re.compile(r"^97[89][0-9]{10}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_NCT_SHAPE = re.compile(r"^NCT[0-9]{8}$")
_ADS_SHAPE = re.compile(r"^[0-9]{4}\S{15}$")
_DIMENSIONS_SHAPE = re.compile(r"^pub\.[0-9]{1,20}$")
_URI_SHAPE = re.compile(r"^https?://[^\s/]+\S*$", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;"


_WRAPPERS = {'"': '"', "'": "'", "<": ">"}
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _strip_wrapping(text: str) -> str:
    """Remove whitespace and quotes or angle brackets wrapped round a pasted value, and
    the sentence's `.,;` after them (`"10.1000/xyz".`)."""
    text = text.strip()
    while len(text) >= 2 and text[0] in _WRAPPERS:
        inside = text.rstrip(_TRAILING_PUNCTUATION) if text[-1] != text[0] else text
        if len(inside) < 2 or _WRAPPERS[text[0]] != inside[-1]:
            break
        text = inside[1:-1].strip()
    return text


def _reject_control_characters(value: str) -> None:
    """Refuse control and invisible formatting characters (a fast path for ASCII)."""
    if value.isascii():
        found = _ASCII_CONTROL.search(value)
        if found:
            raise IdentifierError(f"contains control character U+{ord(found.group()):04X}")
        return
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise IdentifierError(f"contains control character U+{ord(char):04X}")


def _normalise_doi(raw: str) -> str:
    value = raw if raw.startswith("10.") else _DOI_SCHEME_PREFIX.sub("", raw)
    if not value.startswith("10.") and _DOI_URL_PREFIX.match(value):
        value = _DOI_URL_PREFIX.sub("", value)
        # A DOI inside a URL is percent-encoded (10.1000/a%23b); the DOI is the decoded form.
        try:
            value = unicodedata.normalize("NFC", unquote(value, errors="strict"))
        except UnicodeDecodeError:
            raise IdentifierError("DOI URL holds percent-encoding that is not UTF-8") from None
        _reject_control_characters(value)
    value = value.strip().rstrip(_TRAILING_PUNCTUATION).lower()
    if not _DOI_SHAPE.match(value):
        raise IdentifierError("not a DOI: expected 10.NNNN/suffix")
    return value


def _normalise_handle(raw: str) -> str:
    value = _HANDLE_URL_PREFIX.sub("", _HANDLE_SCHEME_PREFIX.sub("", raw))
    value = value.rstrip(_TRAILING_PUNCTUATION)
    if not _HANDLE_SHAPE.match(value):
        raise IdentifierError("not a handle: expected prefix/suffix")
    return value


def _normalise_arxiv(raw: str) -> str:
    """One spelling per paper: no version, no old-style subject class, archive lowercased."""
    value = _ARXIV_URL_PREFIX.sub("", _ARXIV_SCHEME_PREFIX.sub("", raw))
    value = value.removesuffix(".pdf")
    found = _ARXIV_NEW.match(value)
    if found:
        return found.group(1)
    found = _ARXIV_OLD.match(value)
    if found:
        return f"{found.group(1).lower()}/{found.group(2)}"
    raise IdentifierError("not an arXiv ID: expected e.g. 2101.01234 or hep-th/9901001")


def _normalise_number(raw: str, what: str) -> str:
    value = raw.replace(",", "") if what == "Altmetric ID" else raw
    if not _DIGITS.match(value) or int(value) == 0:
        raise IdentifierError(f"not a {what}: expected a positive whole number")
    return str(int(value))


def _normalise_pmid(raw: str) -> str:
    value = _PUBMED_URL_PREFIX.sub("", _PMID_PREFIX.sub("", raw)).rstrip("/")
    if _PMC_SHAPE.match(value):
        raise IdentifierError(_PMC_REASON)
    return _normalise_number(value, "PubMed ID")


def _normalise_ads(raw: str) -> str:
    if not _ADS_SHAPE.match(raw):
        raise IdentifierError("not an ADS bibcode: expected 19 characters like 2014Natur.505..484M")
    return raw


def _normalise_repec(raw: str) -> str:
    rest = raw[len("repec:") :] if raw.lower().startswith("repec:") else raw
    if not rest or any(char.isspace() for char in rest):
        raise IdentifierError("not a RePEc handle: expected RePEc:archive:series:item")
    return "RePEc:" + rest


def _normalise_isbn(raw: str) -> str:
    """An ISBN as its 13 digits: an ISBN-10 becomes the ISBN-13 of the same book."""
    value = _ISBN_PREFIX.sub("", raw) if raw[:4].lower() == "isbn" else raw
    value = value.replace("-", "").replace(" ", "").upper()
    if _ISBN10_SHAPE.match(value) and _isbn10_valid(value):
        return _isbn13_from_isbn10(value)
    if _ISBN13_SHAPE.match(value) and _isbn13_valid(value):
        return value
    raise IdentifierError("not an ISBN: expected 10 or 13 digits with a valid check digit")


def _isbn10_valid(value: str) -> bool:
    digits = [10 if char == "X" else int(char) for char in value]
    return sum((10 - position) * digit for position, digit in enumerate(digits)) % 11 == 0


def _isbn13_valid(value: str) -> bool:
    total = sum((3 if position % 2 else 1) * int(char) for position, char in enumerate(value))
    return total % 10 == 0


def _isbn13_from_isbn10(value: str) -> str:
    """978, the ISBN-10's first nine digits, and the ISBN-13 check digit they need."""
    body = "978" + value[:9]
    total = sum((3 if position % 2 else 1) * int(char) for position, char in enumerate(body))
    return body + str(-total % 10)


def _normalise_uri(raw: str) -> str:
    if not _URI_SHAPE.match(raw):
        raise IdentifierError("not a URI: expected an absolute http(s) URL")
    return raw


def _normalise_urn(raw: str) -> str:
    rest = raw[4:] if raw.lower().startswith("urn:") else raw
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+", rest):
        raise IdentifierError("not a URN: expected urn:namespace:identifier")
    return "urn:" + rest


def _normalise_nct(raw: str) -> str:
    value = raw.upper()
    if not _NCT_SHAPE.match(value):
        raise IdentifierError("not a ClinicalTrials.gov ID: expected NCT and 8 digits")
    return value


def _normalise_dimensions(raw: str) -> str:
    value = raw.lower()
    if not _DIMENSIONS_SHAPE.match(value):
        raise IdentifierError("not a Dimensions publication ID: expected pub.NNNN")
    return value


def _normalise_ssrn(raw: str) -> str:
    return _normalise_number(re.sub(r"^ssrn:\s*", "", raw, flags=re.IGNORECASE), "SSRN ID")


_NORMALISERS: dict[str, Callable[[str], str]] = {
    "doi": _normalise_doi,
    "handle": _normalise_handle,
    "pmid": _normalise_pmid,
    "arxiv": _normalise_arxiv,
    "ads": _normalise_ads,
    "ssrn": _normalise_ssrn,
    "repec": _normalise_repec,
    "isbn": _normalise_isbn,
    "id": lambda raw: _normalise_number(raw, "Altmetric ID"),
    "nct_id": _normalise_nct,
    "urn": _normalise_urn,
    "uri": _normalise_uri,
    "dimensions_publication_id": _normalise_dimensions,
}

ID_TYPES: tuple[str, ...] = tuple(_NORMALISERS)
"""Canonical identifier type names, as today's API spells them."""

TYPE_NAMES: tuple[str, ...] = (*ID_TYPES, *_ALIASES)
"""Every type name a user may write (`--type`, `show TYPE`): the canonical ones, then
the older API's spellings."""

# What a line's `prefix:` may be to name its type: a type name or alias, the handle's own
# scheme `hdl:`, or `ISBN-10:`/`ISBN-13:`. These are not type names: --type hdl is unknown.
_LINE_PREFIXES = {
    **{name: name for name in ID_TYPES},
    **_ALIASES,
    "hdl": "handle",
    "isbn-10": "isbn",
    "isbn-13": "isbn",
}


def canonical_type(name: str) -> str:
    """Map a user's type name (either spelling) to its canonical name."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _NORMALISERS:
        known = listing("known types", sorted(TYPE_NAMES))
        raise IdentifierError(f"unknown identifier type {name!r}; {known}")
    return key


def api_type_name(id_type: str, legacy_names: bool) -> str:
    """The type name to put in the request path: today's names, or the old ones."""
    return _LEGACY_NAMES.get(id_type, id_type) if legacy_names else id_type


def normalise(id_type: str, raw: str) -> Identifier:
    """Return the normalised identifier of a type, or raise IdentifierError with why."""
    return _normalise_as(canonical_type(id_type), _strip_wrapping(raw))


def _normalise_as(canonical: str, value: str) -> Identifier:
    """Normalise a stripped value under a canonical type name."""
    if not value:
        raise IdentifierError("empty identifier")
    limit = _MAX_LENGTH.get(canonical, _DEFAULT_MAX_LENGTH)
    if len(value) > limit:
        raise IdentifierError(f"longer than {limit} characters")
    if not value.isascii():
        # One spelling per identifier: NFC, so composed and decomposed accents dedupe.
        value = unicodedata.normalize("NFC", value)
    _reject_control_characters(value)
    return Identifier(canonical, _NORMALISERS[canonical](value))


def _detect_type(value: str) -> str:
    """Guess the type of an identifier given without one, or say why we cannot."""
    # Lines starting `arXiv:`, `PMID:`, `ISBN:`, `hdl:` and the like never come here:
    # parse_line reads those prefixes. `PMID 123` and `ISBN 0-306-40615-2` do.
    lowered = value.lower()
    if lowered.startswith("10.") or _DOI_URL_PREFIX.match(value):
        return "doi"
    if _ARXIV_URL_PREFIX.match(value) or _ARXIV_NEW.match(value) or _ARXIV_OLD.match(value):
        return "arxiv"
    if _HANDLE_URL_PREFIX.match(value):
        return "handle"
    if _PMID_PREFIX.match(value) or _PUBMED_URL_PREFIX.match(value):
        return "pmid"
    if _PMC_SHAPE.match(value):
        # The API has no PMC type; a PMC ID must not pass for a PMID or an unknown thing.
        raise IdentifierError(_PMC_REASON)
    if _ISBN_LABELLED.match(value):
        return "isbn"
    if _NCT_SHAPE.match(value.upper()):
        return "nct_id"
    if _DIMENSIONS_SHAPE.match(lowered):
        return "dimensions_publication_id"
    if lowered.startswith(("http://", "https://")):
        return "uri"
    if _DIGITS.match(value):
        raise IdentifierError("a bare number is ambiguous: write pmid:, id: or ssrn: before it")
    raise IdentifierError("cannot tell the identifier type: write type:identifier or use --type")


# A bare DOI already in its normal form but for case: printable ASCII without spaces
# ([!-~]), not ending in one of the `.,;` that are dropped, at most 1,024 characters
# (14 + 1,010). It is the commonest line by far, and the general path would only
# lowercase it, so it skips that path's dozen steps (a million lines: ~0.6 s less).
_PLAIN_DOI = re.compile(r"10\.[0-9]{4,9}/[!-~]{0,1010}[!-+\-/-:<-~]")


def parse_line(line: str, default_type: str | None = None) -> Identifier:
    """Parse one input line: `type:identifier`, or a bare identifier.

    A `type:` prefix naming a known type (or `hdl:`, `ISBN-10:`, `ISBN-13:`) always wins. Otherwise
    `default_type` (the CLI's --type) applies, and without it the type is detected
    from the shape.
    """
    if (default_type is None or default_type == "doi") and _PLAIN_DOI.fullmatch(line):
        return Identifier("doi", line.lower())  # what _parse_line would make of it, faster
    return _parse_line(line, default_type)


def _parse_line(line: str, default_type: str | None) -> Identifier:
    """The general path of `parse_line`: any line, any type."""
    value = _strip_wrapping(line)
    prefix, colon, rest = value.partition(":")
    if colon:
        prefixed_type = _LINE_PREFIXES.get(prefix.strip().lower())
        if prefixed_type is not None:
            rest = rest.strip()
            # The urn and repec types keep their scheme as part of the identifier:
            # `urn:nbn:x` is the URN itself, `urn:urn:nbn:x` is type and URN.
            if prefixed_type in ("urn", "repec") and not rest.lower().startswith(
                prefixed_type + ":"
            ):
                rest = value
            return _normalise_as(prefixed_type, rest)
    if default_type is not None:
        return _normalise_as(canonical_type(default_type), value)
    return _normalise_as(_detect_type(value), value)


# RFC 3986 path characters that keep their meaning literally; `/` stays literal because
# the API reads DOIs and handles with their slashes.
_PATH_SAFE = "/!$&'()*+,;=:@~"


def encode_path_segment(value: str) -> str:
    """Percent-encode an identifier for the request path.

    `#`, `?`, `%`, spaces, controls and non-ASCII are encoded (UTF-8), `/` is kept.
    Dot-only segments are encoded too, so `..` in an identifier cannot climb the path.
    """
    encoded = quote(value, safe=_PATH_SAFE)
    segments = encoded.split("/")
    return "/".join(
        segment.replace(".", "%2E") if segment and set(segment) == {"."} else segment
        for segment in segments
    )
