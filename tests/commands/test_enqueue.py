"""`enqueue`: identifiers read from a file or standard input, normalised so that one
output is one job whatever its spelling, rejects counted and named."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import Terminal, harvester, rows

from harvester.sim import universe


def test_enqueue_counts_dedupes_and_reports_rejects(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    lines = "10.1000/a\ndoi:10.1000/A\n\n# a comment\npmid:42\nnot an id\n12345\n10.1000/b\n"
    first = harvester("--db", str(db), "enqueue", stdin=lines)
    assert first.returncode == 1
    assert "added 3, already queued 1, rejected 2" in first.stdout
    assert "line 6: cannot tell the identifier type" in first.stderr
    assert "line 7: a bare number is ambiguous" in first.stderr
    again = harvester("--db", str(db), "enqueue", "-", stdin="10.1000/a\npmid:42\n")
    assert again.returncode == 0
    assert "added 0, already queued 2, rejected 0" in again.stdout


def test_enqueue_with_a_default_type_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "pmids.txt"
    source.write_text("123\n456\nid:789\n")
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", "--type", "pmid", str(source))
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "s.db")
    assert sorted(conn.execute("SELECT id_type, identifier FROM jobs")) == [
        ("id", "789"),
        ("pmid", "123"),
        ("pmid", "456"),
    ]
    conn.close()


def test_priority_is_bounded_and_a_bom_is_ignored(tmp_path: Path) -> None:
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", "--priority", "9" * 20)
    assert result.returncode == 2 and "must be between" in result.stderr
    source = tmp_path / "bom.txt"
    source.write_bytes("\ufeff10.1000/first\n10.1000/second\n".encode())
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", str(source))
    assert result.returncode == 0 and "added 2" in result.stdout


# -- two spellings, one job ------------------------------------------------------------------


def jobs(db: Path) -> list[tuple[str, str]]:
    return sorted(rows(db, "SELECT id_type, identifier FROM jobs"))


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


def test_rejected_lines_never_glue_onto_the_progress_bar(tmp_path: Path) -> None:
    """The bar is drawn after each batch of 200,000; a reject reported after it must
    start a line of its own on the terminal."""
    source = tmp_path / "ids.txt"
    with source.open("w") as out:
        out.writelines(f"10.1000/bar.{n}\n" for n in range(250_000))
        out.write("junk-after-the-first-batch\n")
    code, shown = Terminal("--db", str(tmp_path / "s.db"), "enqueue", str(source)).finish()
    assert code == 1, shown
    at = shown.index("line 250001: ")
    assert shown[:at].endswith(("\n", "\x1b[2K")), repr(shown[max(at - 80, 0) : at + 20])


def test_after_a_books_chapters_are_imported_each_is_queued_and_its_isbn_is_nobodys(
    tmp_path: Path,
) -> None:
    """Three chapters (their own DOIs and Altmetric IDs, their book's ISBN) from the
    dump are three jobs: each chapter's DOI is already queued; the ISBN, which names
    none of them alone, is queued as a job of its own (for the API's answer to it)."""
    isbn = "9780306406157"
    chapters = []
    for n, template in enumerate(universe.body_pool(3)):
        document = json.loads(template)
        document["altmetric_id"] = 900 + n
        document["citation"] = {"title": f"Chapter {n}", "doi": f"10.5150/ch{n}", "isbns": [isbn]}
        chapters.append(json.dumps(document))
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "chapters.json").write_text("\n".join(chapters) + "\n")
    db = tmp_path / "s.db"
    imported = harvester("--db", str(db), "import", str(dump))
    assert imported.returncode == 0, imported.stderr
    assert rows(db, "SELECT altmetric_id FROM latest_outputs ORDER BY 1") == [
        (900,),
        (901,),
        (902,),
    ]
    dois = "".join(f"doi:10.5150/ch{n}\n" for n in range(3))
    queued = harvester("--db", str(db), "enqueue", stdin=dois)
    assert queued.stdout.strip() == "added 0, already queued 3, rejected 0"
    queued = harvester("--db", str(db), "enqueue", stdin="ISBN 0-306-40615-2\n")
    assert queued.stdout.strip() == "added 1, already queued 0, rejected 0"
    assert rows(db, "SELECT state FROM jobs WHERE id_type = 'isbn'") == [("pending",)]
