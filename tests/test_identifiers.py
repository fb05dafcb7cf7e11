"""Identifier parsing, normalisation and request-path encoding; one output, one
spelling: identifiers that name the same output normalise to one."""

from __future__ import annotations

import random
from collections.abc import Callable
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
from harvester.identifiers import _parse_line as general_parse_line


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
        # Quotes with the sentence's punctuation after them (issue 24).
        '"10.1038/nature.2014.14583".',
        "'10.1038/nature.2014.14583',",
        "<10.1038/nature.2014.14583>;",
        '"10.1038/nature.2014.14583.";',
    ],
)
def test_doi_spellings_normalise_to_one_identifier(raw: str) -> None:
    assert normalise("doi", raw) == Identifier("doi", "10.1038/nature.2014.14583")
    assert parse_line(raw) == Identifier("doi", "10.1038/nature.2014.14583")


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


# --- ISBN: stored as ISBN-13 ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "0-306-40615-2",
        "0306406152",
        "0 306 40615 2",
        "ISBN 0-306-40615-2",
        "ISBN-10: 0-306-40615-2",
        "isbn:0306406152",
        "978-0-306-40615-7",
        "9780306406157",
        "ISBN-13: 978-0-306-40615-7",
        "ISBN 978 0 306 40615 7",
    ],
)
def test_isbn_10_and_13_spellings_are_one_isbn_13(raw: str) -> None:
    assert normalise("isbn", raw) == Identifier("isbn", "9780306406157")


def test_isbn_10_with_an_x_check_digit_becomes_its_isbn_13() -> None:
    assert normalise("isbn", "0-8044-2957-X").value == "9780804429573"
    assert normalise("isbn", "080442957x").value == "9780804429573"
    assert normalise("isbn", "3-16-148410-X").value == "9783161484100"


@pytest.mark.parametrize("isbn10", ["0306406152", "080442957X", "0198534531", "316148410X"])
def test_isbn_13_from_an_isbn_10_is_978_its_nine_digits_and_a_valid_check(isbn10: str) -> None:
    isbn13 = normalise("isbn", isbn10).value
    assert len(isbn13) == 13
    assert isbn13.startswith("978" + isbn10[:9])
    weighted = sum((3 if i % 2 else 1) * int(d) for i, d in enumerate(isbn13))
    assert weighted % 10 == 0


def test_isbn_13_in_the_979_range_is_kept() -> None:
    assert normalise("isbn", "979-10-90636-07-1").value == "9791090636071"


@pytest.mark.parametrize("raw", ["0-306-40615-3", "978-0-306-40615-8", "X306406152", "030640615"])
def test_isbns_with_a_bad_check_digit_or_shape_are_not_converted(raw: str) -> None:
    with pytest.raises(IdentifierError, match="not an ISBN"):
        normalise("isbn", raw)


# --- arXiv: no version, no old-style subject class -----------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2101.01234",
        "2101.01234v1",
        "2101.01234v12",
        "2101.01234V2",
        "arXiv:2101.01234v2",
        "ARXIV: 2101.01234",
        "https://arxiv.org/abs/2101.01234v3",
        "http://www.arxiv.org/pdf/2101.01234v2.pdf",
        "arxiv.org/pdf/2101.01234",
    ],
)
def test_new_style_arxiv_spellings_are_one_id(raw: str) -> None:
    assert normalise("arxiv", raw) == Identifier("arxiv", "2101.01234")


@pytest.mark.parametrize(
    "raw",
    [
        "math/0309136",
        "math/0309136v2",
        "math.GT/0309136",
        "math.GT/0309136v1",
        "Math.GT/0309136",
        "arXiv:math.GT/0309136",
        "https://arxiv.org/abs/math.GT/0309136v2",
        "https://arxiv.org/pdf/math/0309136v1.pdf",
    ],
)
def test_old_style_arxiv_spellings_are_one_id(raw: str) -> None:
    assert normalise("arxiv", raw) == Identifier("arxiv", "math/0309136")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hep-th/9901001v3", "hep-th/9901001"),
        ("cond-mat.stat-mech/0101001", "cond-mat/0101001"),
        ("cs.AI/0101001", "cs/0101001"),
        ("0704.0001v1", "0704.0001"),  # four digits after the dot until 2014
    ],
)
def test_other_arxiv_ids(raw: str, expected: str) -> None:
    assert normalise("arxiv", raw).value == expected


@pytest.mark.parametrize(
    "raw", ["2101.01234v", "2101.01234v2v3", "math.GT/030913", "math./0309136", "0309136"]
)
def test_malformed_arxiv_ids_are_rejected(raw: str) -> None:
    with pytest.raises(IdentifierError, match="not an arXiv ID"):
        normalise("arxiv", raw)


# --- Prefixes detected without --type ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hdl:10101/12345", Identifier("handle", "10101/12345")),
        ("HDL: 10101/12345", Identifier("handle", "10101/12345")),
        ("Hdl:10101/12345.", Identifier("handle", "10101/12345")),
        ("arXiv:2101.01234v2", Identifier("arxiv", "2101.01234")),
        ("ARXIV:math.GT/0309136", Identifier("arxiv", "math/0309136")),
        ("arxiv_id:hep-th/9901001v2", Identifier("arxiv", "hep-th/9901001")),
        ("2101.01234v2", Identifier("arxiv", "2101.01234")),
        ("math.GT/0309136v2", Identifier("arxiv", "math/0309136")),
        ("PMID:12345", Identifier("pmid", "12345")),
        ("pmid: 012345", Identifier("pmid", "12345")),
        ("PMID 12345", Identifier("pmid", "12345")),
        ("Pmid  12345", Identifier("pmid", "12345")),
        ("ISBN 0-306-40615-2", Identifier("isbn", "9780306406157")),
        ("ISBN-13: 978-0-306-40615-7", Identifier("isbn", "9780306406157")),
        ("isbn-10:080442957X", Identifier("isbn", "9780804429573")),
    ],
)
def test_prefixes_are_detected_without_a_type(line: str, expected: Identifier) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "default_type", "expected"),
    [
        ("hdl:10101/12345", "handle", Identifier("handle", "10101/12345")),
        ("https://hdl.handle.net/10101/12345", "handle", Identifier("handle", "10101/12345")),
        ("PMID 12345", "pmid", Identifier("pmid", "12345")),
        ("PMID:12345", "pmid", Identifier("pmid", "12345")),
        ("arXiv:2101.01234v2", "arxiv", Identifier("arxiv", "2101.01234")),
        ("arXiv:2101.01234v2", "arxiv_id", Identifier("arxiv", "2101.01234")),
        ("ISBN-10: 0-306-40615-2", "isbn", Identifier("isbn", "9780306406157")),
        ("0-306-40615-2", "isbn", Identifier("isbn", "9780306406157")),
        # A prefix naming the type wins over --type, as a `type:` prefix does.
        ("hdl:10101/12345", "doi", Identifier("handle", "10101/12345")),
        ("PMID:12345", "doi", Identifier("pmid", "12345")),
        ("arXiv:2101.01234", "doi", Identifier("arxiv", "2101.01234")),
        ("ISBN-13: 978-0-306-40615-7", "doi", Identifier("isbn", "9780306406157")),
    ],
)
def test_prefixed_values_with_an_explicit_type(
    line: str, default_type: str, expected: Identifier
) -> None:
    assert parse_line(line, default_type=default_type) == expected


@pytest.mark.parametrize("name", ["hdl", "isbn-13"])
def test_line_prefixes_are_not_type_names(name: str) -> None:
    with pytest.raises(IdentifierError, match=f"unknown identifier type '{name}'"):
        normalise(name, "10101/12345")


@pytest.mark.parametrize(
    ("line", "default_type"),
    [
        ("PMC1234567", None),
        ("pmc1234567", None),
        ("PMC 1234567", None),
        ("PMCID: PMC1234567", None),
        ("pmcid:1234567", None),
        ("pmid:PMC1234567", None),
        ("PMID PMC1234567", None),
        ("PMC1234567", "pmid"),
    ],
)
def test_pmc_ids_are_recognised_and_refused_with_what_to_do(
    line: str, default_type: str | None
) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_line(line, default_type=default_type)
    reason = str(caught.value)
    assert reason.startswith("a PubMed Central ID")
    assert "enqueue it as pmid" in reason
    assert "converter" in reason
    assert len(reason) < 200


@pytest.mark.parametrize("line", ["PMC", "PMCfoo", "hdl:", "hdl:nohandle", "PMID:", "ISBN"])
def test_near_misses_are_still_rejected(line: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_line(line)
    assert not str(caught.value).startswith("a PubMed Central ID")
    assert len(str(caught.value)) < 200


def test_dois_are_untouched_by_the_new_rules() -> None:
    assert parse_line("10.1000/PMC123v2") == Identifier("doi", "10.1000/pmc123v2")
    assert parse_line("doi:10.1000/math.GT/0309136") == Identifier("doi", "10.1000/math.gt/0309136")


def _outcome(line: str, default_type: str | None, parse: Callable[..., Identifier]) -> object:
    try:
        return parse(line, default_type)
    except IdentifierError as error:
        return f"rejected: {error}"


def _doi_like_lines() -> list[str]:
    """Lines near the plain-DOI fast path's edges, and random ones around them."""
    edges = [
        "10.1000/x",
        "10.1000/X.",
        "10.1000/x;",
        "10.1000/x,",
        "10.1000/.",
        "10.100/x",
        "10.1234567890/x",
        "10.123456789/x",
        "10.1000/",
        "10.1000/a b",
        "10.1000/a\tb",
        "10.1000/é",
        "10.1000/e\u0301",
        "10.1000/a\x7f",
        "10.1000/a:b",
        "10.1000/a%2Fb",
        '10.1000/a"',
        "10.1000/<a>",
        "10.1000/" + "a" * 1016,
        "10.1000/" + "a" * 1017,
        "10.1000/" + "a" * 1015 + ".",
        "10.123456789/" + "a" * 1011,  # 1,024 characters, the most a DOI may have
        "10.123456789/" + "a" * 1012,
        "\uff110.1000/x",
        "10.\uff11000/x",
        "10.1000/x\u200b",
        "  10.1000/x",
        "10.1000/x ",
        "10.1000/x\n",
    ]
    rng = random.Random(12)
    alphabet = "aZ09./-_:;,()<>\"'#?% \t\u00e9\u200b\x7f"
    randoms = [
        "10."
        + "".join(rng.choices("0123456789", k=rng.randint(3, 10)))
        + "/"
        + "".join(rng.choices(alphabet, k=rng.randint(0, 8)))
        for _ in range(3000)
    ]
    return edges + randoms


@pytest.mark.parametrize("default_type", [None, "doi", "handle", "uri"])
def test_the_plain_doi_fast_path_agrees_with_the_general_path(default_type: str | None) -> None:
    """`parse_line` takes a shortcut for bare DOIs in normal form; every line must come
    out exactly as the general path makes it, accepted or rejected with the same reason."""
    for line in _doi_like_lines():
        assert _outcome(line, default_type, parse_line) == _outcome(
            line, default_type, general_parse_line
        ), line
