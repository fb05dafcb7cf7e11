"""One output, one spelling: identifiers that name the same output become one job."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harvester.identifiers import Identifier, IdentifierError, normalise, parse_line

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


# --- The real CLI: two spellings, one job --------------------------------------------


def harvester(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def jobs(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return sorted(conn.execute("SELECT id_type, identifier FROM jobs"))
    finally:
        conn.close()


def test_enqueue_makes_one_job_per_output_whatever_the_spelling(tmp_path: Path) -> None:
    source = tmp_path / "ids.txt"
    source.write_text(
        "0-306-40615-2\n"  # ISBN-10 without a prefix: not detectable, so rejected
        "ISBN-10: 0-306-40615-2\n"
        "ISBN 978-0-306-40615-7\n"
        "isbn:9780306406157\n"
        "arXiv:2101.01234v1\n"
        "https://arxiv.org/abs/2101.01234v2\n"
        "2101.01234\n"
        "math.GT/0309136\n"
        "arxiv:math/0309136v2\n"
        "hdl:10101/12345\n"
        "https://hdl.handle.net/10101/12345\n"
        "PMID: 12345\n"
        "pmid 12345\n"
        "PMC1234567\n"
    )
    db = tmp_path / "s.db"
    result = harvester("--db", str(db), "enqueue", str(source))
    assert result.returncode == 1, result.stderr  # two lines were rejected
    assert "added 5, already queued 7, rejected 2" in result.stdout
    assert "line 1: cannot tell the identifier type" in result.stderr
    assert "line 14: a PubMed Central ID" in result.stderr
    assert jobs(db) == [
        ("arxiv", "2101.01234"),
        ("arxiv", "math/0309136"),
        ("handle", "10101/12345"),
        ("isbn", "9780306406157"),
        ("pmid", "12345"),
    ]


@pytest.mark.parametrize(
    ("first", "second", "type_args", "expected"),
    [
        ("0-306-40615-2", "978-0-306-40615-7", ("--type", "isbn"), ("isbn", "9780306406157")),
        ("2101.01234v1", "2101.01234v2", (), ("arxiv", "2101.01234")),
        ("math.GT/0309136", "math/0309136", (), ("arxiv", "math/0309136")),
    ],
)
def test_a_second_spelling_in_a_later_enqueue_is_already_queued(
    tmp_path: Path, first: str, second: str, type_args: tuple[str, ...], expected: tuple[str, str]
) -> None:
    db = tmp_path / "s.db"
    for name, line, summary in (("a", first, "added 1,"), ("b", second, "already queued 1,")):
        source = tmp_path / f"{name}.txt"
        source.write_text(line + "\n")
        result = harvester("--db", str(db), "enqueue", *type_args, str(source))
        assert result.returncode == 0, result.stderr
        assert summary in result.stdout
    assert jobs(db) == [expected]


def test_existing_stores_keep_their_old_spellings(tmp_path: Path) -> None:
    """Jobs queued under an older normal form are not rewritten; a new enqueue queues the
    current spelling beside them."""
    db = tmp_path / "s.db"
    seed = tmp_path / "seed.txt"
    seed.write_text("10.1000/seed\n")
    assert harvester("--db", str(db), "enqueue", str(seed)).returncode == 0
    old_rows = [("isbn", "0306406152"), ("arxiv", "2101.01234v2"), ("arxiv", "math.GT/0309136")]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO jobs (id_type, identifier, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z',"
            " '2020-01-01T00:00:00Z')",
            old_rows,
        )
    before = sorted(conn.execute("SELECT id, id_type, identifier, state FROM jobs"))
    conn.close()

    source = tmp_path / "ids.txt"
    source.write_text("isbn:0306406152\narxiv:2101.01234v2\narxiv:math.GT/0309136\n")
    result = harvester("--db", str(db), "enqueue", str(source))
    assert result.returncode == 0, result.stderr
    assert "added 3, already queued 0" in result.stdout

    conn = sqlite3.connect(db)
    after = sorted(conn.execute("SELECT id, id_type, identifier, state FROM jobs"))
    conn.close()
    assert after[: len(before)] == before
    assert jobs(db) == sorted(
        [
            ("doi", "10.1000/seed"),
            *old_rows,
            ("isbn", "9780306406157"),
            ("arxiv", "2101.01234"),
            ("arxiv", "math/0309136"),
        ]
    )
