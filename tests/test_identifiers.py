"""Identifier parsing, normalisation and request-path encoding."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from harvester.identifiers import (
    Identifier,
    IdentifierError,
    api_type_name,
    canonical_type,
    encode_path_segment,
    normalise,
    parse_line,
)


@pytest.mark.parametrize(
    "raw",
    [
        "10.1038/NATURE.2014.14583",
        "doi:10.1038/nature.2014.14583",
        "DOI: 10.1038/nature.2014.14583",
        "https://doi.org/10.1038/nature.2014.14583",
        "http://dx.doi.org/10.1038/Nature.2014.14583",
        "  10.1038/nature.2014.14583.  ",
        "<10.1038/nature.2014.14583>",
        '"10.1038/nature.2014.14583"',
    ],
)
def test_doi_spellings_normalise_to_one_identifier(raw: str) -> None:
    assert normalise("doi", raw) == Identifier("doi", "10.1038/nature.2014.14583")


def test_doi_in_a_url_is_percent_decoded() -> None:
    assert normalise("doi", "https://doi.org/10.1000/a%23b").value == "10.1000/a#b"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("11.1000/x", "not a DOI"),
        ("10.12/x", "not a DOI"),
        ("10.1000/", "not a DOI"),
        ("10.1000/a b", "not a DOI"),
        ("", "empty"),
        ("10.1000/x\x07", "control character"),
        ("10.1000/" + "x" * 2000, "longer than"),
    ],
)
def test_junk_dois_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(IdentifierError, match=reason):
        normalise("doi", raw)


@pytest.mark.parametrize(
    ("id_type", "raw", "expected"),
    [
        ("pmid", "PMID: 0012345", "12345"),
        ("pmid", "https://pubmed.ncbi.nlm.nih.gov/12345/", "12345"),
        ("arxiv", "arXiv:2101.01234v2", "2101.01234"),
        ("arxiv_id", "https://arxiv.org/abs/hep-th/9901001", "hep-th/9901001"),
        ("handle", "https://hdl.handle.net/10101/12345", "10101/12345"),
        ("ads_id", "2014Natur.505..484M", "2014Natur.505..484M"),
        ("ssrn", "2718476", "2718476"),
        ("repec", "repec:aea:aecrev:v:101", "RePEc:aea:aecrev:v:101"),
        ("isbn", "978-0-306-40615-7", "9780306406157"),
        ("isbn", "0-306-40615-2", "9780306406157"),
        ("isbn", "080442957x", "9780804429573"),
        ("uri", "https://example.org/paper?id=1", "https://example.org/paper?id=1"),
        ("urn", "nbn:de:1111-2004033116", "urn:nbn:de:1111-2004033116"),
        ("nct_id", "nct01234567", "NCT01234567"),
        ("id", "2068207", "2068207"),
        ("dimensions_publication_id", "pub.1012345678", "pub.1012345678"),
    ],
)
def test_each_type_normalises(id_type: str, raw: str, expected: str) -> None:
    assert normalise(id_type, raw).value == expected


@pytest.mark.parametrize(
    ("id_type", "raw"),
    [
        ("pmid", "12a"),
        ("pmid", "0"),
        ("isbn", "978-0-306-40615-8"),  # wrong check digit
        ("isbn", "12345"),
        ("arxiv", "not-an-id"),
        ("ads", "2014Natur"),
        ("nct_id", "NCT123"),
        ("uri", "ftp://example.org/x"),
        ("handle", "nohandle"),
    ],
)
def test_each_type_rejects_junk(id_type: str, raw: str) -> None:
    with pytest.raises(IdentifierError):
        normalise(id_type, raw)


def test_unicode_is_composed_so_spellings_dedupe() -> None:
    composed = normalise("doi", "10.1000/caf\u00e9")
    decomposed = normalise("doi", "10.1000/cafe\u0301")
    assert composed == decomposed


def test_type_aliases_and_api_names() -> None:
    assert canonical_type("arxiv_id") == "arxiv"
    assert canonical_type("ADS_ID") == "ads"
    assert api_type_name("arxiv", legacy_names=True) == "arxiv_id"
    assert api_type_name("arxiv", legacy_names=False) == "arxiv"
    with pytest.raises(IdentifierError, match="unknown identifier type 'pubmed'"):
        canonical_type("pubmed")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("doi:10.1000/X", Identifier("doi", "10.1000/x")),
        ("10.1000/X", Identifier("doi", "10.1000/x")),
        ("https://doi.org/10.1000/x", Identifier("doi", "10.1000/x")),
        ("pmid:123", Identifier("pmid", "123")),
        ("PMID 123", Identifier("pmid", "123")),
        ("hdl:10101/12345", Identifier("handle", "10101/12345")),
        ("arXiv:math.GT/0309136v1", Identifier("arxiv", "math/0309136")),
        ("ISBN-10: 0-306-40615-2", Identifier("isbn", "9780306406157")),
        ("arxiv_id:2101.00001", Identifier("arxiv", "2101.00001")),
        ("2101.00001", Identifier("arxiv", "2101.00001")),
        ("urn:nbn:de:1", Identifier("urn", "urn:nbn:de:1")),
        ("RePEc:aea:aecrev:v:1", Identifier("repec", "RePEc:aea:aecrev:v:1")),
        ("NCT01234567", Identifier("nct_id", "NCT01234567")),
        ("https://example.org/a", Identifier("uri", "https://example.org/a")),
    ],
)
def test_lines_are_parsed_with_or_without_a_type(line: str, expected: Identifier) -> None:
    assert parse_line(line) == expected


def test_default_type_applies_only_without_a_prefix() -> None:
    assert parse_line("123", default_type="pmid") == Identifier("pmid", "123")
    assert parse_line("id:123", default_type="pmid") == Identifier("id", "123")


def test_bare_numbers_are_ambiguous() -> None:
    with pytest.raises(IdentifierError, match="ambiguous"):
        parse_line("12345")


@pytest.mark.parametrize(
    ("doi", "encoded"),
    [
        ("10.1000/a#b", "10.1000/a%23b"),
        ("10.1000/a?b", "10.1000/a%3Fb"),
        ("10.1000/50%off", "10.1000/50%25off"),
        ("10.1000/a b", "10.1000/a%20b"),
        (
            "10.1002/(sici)1097-4571(199806)49:8<693::aid-asi4>3.0.co;2-o",
            "10.1002/(sici)1097-4571(199806)49:8%3C693::aid-asi4%3E3.0.co;2-o",
        ),
        ("10.1000/caf\u00e9", "10.1000/caf%C3%A9"),
        ("10.1000/a/b", "10.1000/a/b"),
        ("10.1000/\x01", "10.1000/%01"),
    ],
)
def test_path_encoding_keeps_slashes_and_encodes_the_rest(doi: str, encoded: str) -> None:
    assert encode_path_segment(doi) == encoded
    assert unquote(encoded) == doi


def test_dot_segments_cannot_climb_the_path() -> None:
    encoded = encode_path_segment("10.1000/../../admin")
    assert "/../" not in encoded
    assert encoded == "10.1000/%2E%2E/%2E%2E/admin"
    assert unquote(encoded) == "10.1000/../../admin"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("urn:urn:nbn:de:101:1-2014", Identifier("urn", "urn:nbn:de:101:1-2014")),
        ("repec:RePEc:a:b:1", Identifier("repec", "RePEc:a:b:1")),
        ("https://doi.org/10.1234/cafe%CC%81", Identifier("doi", "10.1234/caf\u00e9")),
    ],
)
def test_spellings_that_must_dedupe(line: str, expected: Identifier) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "10.\u0661\u0662\u0663\u0664/x",  # Arabic-Indic digits are not DOI digits
        "pmid:\u0661\u0662\u0663",
        "10.1234/\udcff",  # a lone surrogate (from undecodable input)
        "10.1234/a\u200bb",  # zero-width space
    ],
)
def test_lookalike_digits_and_invisible_characters_are_rejected(line: str) -> None:
    with pytest.raises(IdentifierError):
        parse_line(line)
