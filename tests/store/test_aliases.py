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
        expected = rows(store, "SELECT * FROM aliases ORDER BY 1, 2")
        store.conn.execute("DROP TABLE aliases")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_aliases'")
    assert len(expected) >= 2 * len(pool)  # each answer names its output at least twice
    Store(db_path, must_exist=True).close()  # a writing open applies m009
    assert rows(db_path, "SELECT * FROM aliases ORDER BY 1, 2") == expected
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
    from harvester.store.imports import ImportedRecord

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
