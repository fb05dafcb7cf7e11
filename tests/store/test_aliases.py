"""Schema m009 and `store.aliases`: every identifier an answer names its output by,
kept with the output's job, so that no output gets a second job under another of its
identifiers."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import rows, store_answer

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store
from harvester.store.aliases import answer_fields, identifiers_in
from harvester.store.imports import ImportedRecord


def test_identifiers_are_read_normalised_and_in_order() -> None:
    document = {
        "altmetric_id": 241939,
        "citation": {
            "doi": "10.1038/NATURE.2014.14583",
            "pmid": "25079319",
            "arxiv_id": "arXiv:1403.1234v2",
            "handles": ["10.1000/182", "10.1000/182"],
            "isbns": ["978-0-306-40615-7", "not an isbn"],
            "ads_id": "",
        },
        "uri": "https://example.org/x",
    }
    found = identifiers_in(answer_fields(document))
    assert [identifier.id_type for identifier in found] == [
        "doi",
        "pmid",
        "arxiv",
        "handle",
        "isbn",
        "uri",
        "id",
    ]
    assert found[0] == Identifier("doi", "10.1038/nature.2014.14583")
    assert found[-1] == Identifier("id", "241939")


def test_the_upgrade_fills_aliases_from_the_answers_already_derived(db_path: Path) -> None:
    pool = universe.body_pool(8)
    with Store(db_path) as store:
        for n, body in enumerate(pool):
            store_answer(store, Identifier("doi", f"10.5150/alias.{n}"), body)
        expected = rows(store, "SELECT id_type, identifier, job_id FROM aliases ORDER BY 1, 2")
        store.conn.execute("DROP TABLE aliases")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_aliases'")
    assert len(expected) >= 2 * len(pool)  # each answer names its output at least twice
    Store(db_path, must_exist=True).close()  # a writing open applies m009
    assert (
        rows(db_path, "SELECT id_type, identifier, job_id FROM aliases ORDER BY 1, 2") == expected
    )
    named = {
        (row[0], json.loads(row[1]).get("doi"))
        for row in rows(db_path, "SELECT job_id, identifiers FROM outputs")
    }
    assert all(
        rows(
            db_path,
            f"SELECT job_id FROM aliases WHERE id_type = 'doi' AND identifier = '{doi.lower()}'",
        )
        == [(job_id,)]
        for job_id, doi in named
        if doi
    )


def test_enqueue_finds_an_output_by_any_identifier_its_answer_named(store: Store) -> None:
    [body] = universe.body_pool(1)
    store_answer(store, Identifier("doi", "10.5150/alias.one"), body)
    named = rows(store, "SELECT id_type, identifier FROM aliases WHERE id_type != 'doi'")
    assert named
    counts = store.jobs.add([Identifier(*pair) for pair in named])
    assert (counts.added, counts.already_queued) == (0, len(named))
    assert rows(store, "SELECT count(*) FROM jobs") == [(1,)]
    assert store.jobs.add([Identifier("doi", "10.5150/alias.two")]).added == 1


def test_a_record_named_only_at_its_top_level_finds_its_job(store: Store) -> None:
    """Every identifier field an answer may carry outside `citation` is read on import."""
    records = [
        ImportedRecord(b'{"nct_id": "NCT01234567"}', "2024-01-01T00:00:00.000000Z", "a.json", 1),
        ImportedRecord(b'{"ssrn": "1234567", "title": "x"}', "2024-01-01T00:00:00.000000Z", "b", 1),
        ImportedRecord(
            b'{"title": "nothing to find it by"}', "2024-01-01T00:00:00.000000Z", "c", 1
        ),
    ]
    counts = store.import_records(records)
    assert counts.imported == 2 and len(counts.rejected) == 1
    assert "c:1: no identifier" in counts.rejected[0]
    assert rows(store, "SELECT id_type, identifier FROM jobs ORDER BY id") == [
        ("nct_id", "NCT01234567"),
        ("ssrn", "1234567"),
    ]


# -- one job per output, never two outputs in one job (issue 22) ---------------------------

BOOK_ISBN = "9780306406157"
AS_OF = "2024-06-01T00:00:00.000000Z"


def answer(altmetric_id: int, template: bytes, **citation: object) -> bytes:
    """A fetch-shaped answer (the universe's `template`) naming its output by
    `altmetric_id` and `citation`'s identifiers alone."""
    document = json.loads(template)
    kept = {k: v for k, v in document["citation"].items() if k not in ("doi", "pmid")}
    document["citation"] = {**kept, **citation}
    document["altmetric_id"] = altmetric_id
    return json.dumps(document).encode()


def chapters(count: int, isbn: str = BOOK_ISBN) -> list[bytes]:
    """`count` chapters of one book: their own DOIs and Altmetric IDs, its ISBN."""
    pool = universe.body_pool(count)
    return [
        answer(900 + n, pool[n], doi=f"10.5150/book.ch{n}", isbns=[isbn], type="chapter")
        for n in range(count)
    ]


def records(bodies: list[bytes], member: str = "chapters.json") -> list[ImportedRecord]:
    return [ImportedRecord(body, AS_OF, member, n) for n, body in enumerate(bodies, start=1)]


def test_chapters_sharing_their_books_isbn_become_a_job_each(store: Store) -> None:
    counts = store.import_records(records(chapters(3)))
    assert (counts.imported, counts.rejected) == (3, [])
    assert rows(store, "SELECT id_type, identifier FROM jobs ORDER BY id") == [
        ("doi", "10.5150/book.ch0"),
        ("doi", "10.5150/book.ch1"),
        ("doi", "10.5150/book.ch2"),
    ]
    assert rows(store, "SELECT altmetric_id FROM latest_outputs ORDER BY 1") == [
        (900,),
        (901,),
        (902,),
    ]
    assert rows(store, f"SELECT shared FROM aliases WHERE identifier = '{BOOK_ISBN}'") == [(1,)]
    # Each chapter's DOI is its own job's; the book's ISBN is nobody's: queued on its own.
    again = store.jobs.add([Identifier("doi", f"10.5150/book.ch{n}") for n in range(3)])
    assert (again.added, again.already_queued) == (0, 3)
    assert store.jobs.add([Identifier("isbn", BOOK_ISBN)]).added == 1
    # Imported again, nothing moves and nothing is doubled.
    assert store.import_records(records(chapters(3))).present == 3
    assert rows(store, "SELECT count(*) FROM responses") == [(3,)]


def test_in_one_batch_two_outputs_carrying_one_doi_get_a_job_each(store: Store) -> None:
    """Two Altmetric IDs for one DOI (the API has such duplicates): the second output
    gets a job under its next identifier of its own, and the DOI finds neither."""
    pool = universe.body_pool(2)
    first = answer(700, pool[0], doi="10.5150/twice", pmid="31000001")
    second = answer(701, pool[1], doi="10.5150/twice", pmid="31000002")
    counts = store.import_records(records([first, second]))
    assert (counts.imported, counts.rejected) == (2, [])
    assert rows(store, "SELECT id_type, identifier FROM jobs ORDER BY id") == [
        ("doi", "10.5150/twice"),
        ("pmid", "31000002"),
    ]
    assert rows(store, "SELECT shared FROM aliases WHERE identifier = '10.5150/twice'") == [(1,)]
    # A third record of the first output finds it by its Altmetric ID.
    third = answer(700, pool[1], doi="10.5150/twice", pmid="31000001")
    assert store.import_records(records([third], "later.json")).imported == 1
    assert rows(store, "SELECT job_id, count(*) FROM responses GROUP BY 1") == [(1, 2), (2, 1)]


def test_a_job_queued_under_an_isbn_gets_no_record_by_that_isbn(store: Store) -> None:
    """An ISBN names a book and each of its chapters alike: which record is the job's,
    only the API's answer for it says. The job stays pending for that answer."""
    store.jobs.add([Identifier("isbn", BOOK_ISBN)])
    counts = store.import_records(records(chapters(2)))
    assert (counts.imported, counts.rejected) == (2, [])
    assert rows(store, "SELECT id_type, state FROM jobs ORDER BY id") == [
        ("isbn", "pending"),
        ("doi", "done"),
        ("doi", "done"),
    ]
    # The API's answer for the ISBN (the book) is the job's, and leaves the ISBN shared.
    [book] = [answer(800, universe.body_pool(1)[0], isbns=[BOOK_ISBN], type="book")]
    store_answer(store, Identifier("isbn", BOOK_ISBN), book)
    assert rows(store, "SELECT job_id, altmetric_id FROM latest_outputs ORDER BY 1") == [
        (1, 800),
        (2, 900),
        (3, 901),
    ]
    assert rows(store, f"SELECT shared FROM aliases WHERE identifier = '{BOOK_ISBN}'") == [(1,)]


def test_a_record_joins_the_job_of_its_own_doi_before_that_job_has_an_answer(
    store: Store,
) -> None:
    store.jobs.add([Identifier("doi", "10.5150/book.ch1")])
    assert store.import_records(records(chapters(2))).imported == 2
    assert rows(store, "SELECT id, id_type, identifier, state FROM jobs ORDER BY id") == [
        (1, "doi", "10.5150/book.ch1", "done"),
        (2, "doi", "10.5150/book.ch0", "done"),
    ]
    assert rows(store, "SELECT job_id, altmetric_id FROM outputs ORDER BY 1") == [
        (1, 901),
        (2, 900),
    ]


def test_answers_the_harvest_stores_mark_what_several_outputs_carry(store: Store) -> None:
    """Chapters queued by their DOIs and fetched: each answer is its job's, and the
    book's ISBN they all carry finds none of them."""
    for n, body in enumerate(chapters(2)):
        store_answer(store, Identifier("doi", f"10.5150/book.ch{n}"), body)
    assert rows(store, f"SELECT shared FROM aliases WHERE identifier = '{BOOK_ISBN}'") == [(1,)]
    assert store.jobs.add([Identifier("isbn", BOOK_ISBN)]).added == 1
    # Two jobs of one output (queued by DOI and by PubMed ID before either was
    # answered) share its identifiers without making them shared.
    [body] = universe.body_pool(1)
    same = answer(555, body, doi="10.5150/same", pmid="32000001")
    store_answer(store, Identifier("doi", "10.5150/same"), same)
    store_answer(store, Identifier("pmid", "32000001"), same)
    assert rows(store, "SELECT count(*) FROM aliases WHERE shared") == [(1,)]


def test_an_answer_without_an_altmetric_id_is_placed_by_its_identifiers(store: Store) -> None:
    store.jobs.add([Identifier("nct_id", "NCT01234567")])
    counts = store.import_records(
        [
            ImportedRecord(b'{"nct_id": "NCT01234567"}', AS_OF, "a.json", 1),
            ImportedRecord(f'{{"isbns": ["{BOOK_ISBN}"]}}'.encode(), AS_OF, "a.json", 2),
        ]
    )
    assert counts.imported == 2
    assert rows(store, "SELECT id_type, state FROM jobs ORDER BY id") == [
        ("nct_id", "done"),
        ("isbn", "done"),
    ]
    # Another ISBN-only record with no Altmetric ID has no identifier of its own.
    counts = store.import_records(
        [ImportedRecord(f'{{"isbn": "{BOOK_ISBN}", "title": "x"}}'.encode(), AS_OF, "b.json", 1)]
    )
    assert counts.imported == 0 and "no identifier of its own" in counts.rejected[0]
