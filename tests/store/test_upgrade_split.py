"""Schema m012 (`store.upgrade_split`): a store where outputs were merged into one job
(the import and discovery of versions before it) gets one job per output on upgrade,
nothing lost, and the upgrade says what it split.

The merged store is made as those versions made it: records stored into the job an
earlier record created (what their `job_known_as` chose for an ISBN the records
share), derived by the real derive code, on a real SQLite file, then put back at
schema m011 (no `shared` column, no index, m012 not applied)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import harvester, rows

from harvester.identifiers import Identifier
from harvester.model import Endpoint, StoredResponse
from harvester.sim import universe
from harvester.store import Store
from harvester.store.derived import derive_answers
from harvester.store.imports import ImportedRecord
from harvester.store.snapshot import Answer

ISBN = "9780306406157"
AS_OF = "2024-06-01T00:00:00.000000Z"


def answer(altmetric_id: int, template: bytes, **citation: object) -> bytes:
    document = json.loads(template)
    kept = {k: v for k, v in document["citation"].items() if k not in ("doi", "pmid")}
    document["citation"] = {**kept, **citation}
    document["altmetric_id"] = altmetric_id
    return json.dumps(document).encode()


def book(first_id: int, count: int, stem: str, isbn: str = ISBN) -> list[bytes]:
    """`count` chapters of a book: their own DOIs and Altmetric IDs, its ISBN."""
    pool = universe.body_pool(count + 3)[3:]
    return [
        answer(first_id + n, pool[n], doi=f"10.5150/{stem}.ch{n}", isbns=[isbn])
        for n in range(count)
    ]


def merge_into(store: Store, job_id: int, bodies: list[bytes]) -> None:
    """Store `bodies` as dump records of `job_id` and derive them, as the import before
    m012 did for a record whose ISBN the store knew for that job."""
    with store.transaction() as conn:
        for n, body in enumerate(bodies, start=1):
            params = json.dumps({"source": "dump", "member": "merged.json", "line": n})
            response = StoredResponse(200, body, params, "dump", AS_OF, endpoint=Endpoint.DUMP)
            response_id = store.responses.insert(conn, job_id, response)
            derive_answers(conn, [Answer(response_id, job_id, AS_OF, "dump", body)])


def back_to_m011(db: Path) -> None:
    with Store(db) as store:
        # Before m012, the first job an identifier was named for kept it.
        store.conn.execute("UPDATE aliases SET shared = 0")
        store.conn.execute("DROP INDEX aliases_output")
        store.conn.execute("ALTER TABLE aliases DROP COLUMN shared")
        store.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm012_one_job_per_output'")


def records(bodies: list[bytes]) -> list[ImportedRecord]:
    return [ImportedRecord(body, AS_OF, "clean.json", n) for n, body in enumerate(bodies, 1)]


def by_identifier(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of `sql` (selecting a `job_id` first) with the job named by its identifier."""
    found = rows(db, sql)
    jobs = dict(
        ((job_id, (t, v)) for job_id, t, v in rows(db, "SELECT id, id_type, identifier FROM jobs"))
    )
    return sorted((jobs[row[0]], *row[1:]) for row in found)


PER_JOB = {
    "responses": "SELECT job_id, sha256, endpoint FROM responses",
    "outputs": "SELECT job_id, altmetric_id, is_latest, response_id IS NOT NULL FROM outputs",
    "counts": "SELECT job_id, count(*) FROM counts GROUP BY 1",
    "contexts": "SELECT job_id, count(*) FROM score_context GROUP BY 1",
    "mentions": "SELECT job_id, source, post_key, url, title FROM mentions",
    "aliases": "SELECT job_id, id_type, identifier, shared FROM aliases",
}


def test_merged_outputs_get_a_job_each_and_nothing_is_lost(tmp_path: Path) -> None:
    chapters = book(900, 3, "book")
    merged, clean = tmp_path / "merged.db", tmp_path / "clean.db"
    with Store(merged) as store:
        store.import_records(records(chapters[:1]))  # the first chapter's own job
        merge_into(store, 1, chapters[1:])
        assert rows(store, "SELECT count(*) FROM latest_outputs") == [(1,)]
    back_to_m011(merged)
    with Store(clean) as store:
        store.import_records(records(chapters))

    upgraded = harvester("--db", str(merged), "derive")  # a writing command upgrades it
    assert upgraded.returncode == 0, upgraded.stderr
    [said] = [
        json.loads(line)
        for line in upgraded.stderr.splitlines()
        if "store.upgrade.outputs_split" in line
    ]
    assert (said["merged_jobs"], said["outputs_moved"], said["responses_moved"]) == (1, 2, 2)
    assert said["identifiers_shared"] == 1  # the book's ISBN

    assert rows(merged, "SELECT id_type, identifier, state FROM jobs ORDER BY id") == [
        ("doi", "10.5150/book.ch0", "done"),
        ("doi", "10.5150/book.ch1", "done"),
        ("doi", "10.5150/book.ch2", "done"),
    ]
    assert rows(merged, "SELECT job_id, altmetric_id FROM latest_outputs ORDER BY 1") == [
        (1, 900),
        (2, 901),
        (3, 902),
    ]
    for what, sql in PER_JOB.items():  # as if it had never been merged
        assert by_identifier(merged, sql) == by_identifier(clean, sql), what
    assert harvester("--db", str(merged), "verify").returncode == 0
    queued = harvester("--db", str(merged), "enqueue", stdin="doi:10.5150/book.ch2\n")
    assert queued.stdout.strip() == "added 0, already queued 1, rejected 0"
    queued = harvester("--db", str(merged), "enqueue", stdin=f"isbn:{ISBN}\n")
    assert queued.stdout.strip() == "added 1, already queued 0, rejected 0"


def test_a_job_whose_identifier_several_of_its_outputs_carry_waits_for_its_own(
    tmp_path: Path,
) -> None:
    """Queued under the book's ISBN, then given two chapters' records by it: which
    output is the job's, only the API's answer for the ISBN says, so each chapter
    moves to a job of its own and the ISBN's job is pending again."""
    db = tmp_path / "s.db"
    chapters = book(950, 2, "other")
    with Store(db) as store:
        store.jobs.add([Identifier("isbn", ISBN)])
        merge_into(store, 1, chapters)
        store.conn.execute("UPDATE jobs SET state = 'done'")
    back_to_m011(db)
    with Store(db) as store:  # any writing open upgrades it
        assert rows(store, "SELECT id_type, identifier, state FROM jobs ORDER BY id") == [
            ("isbn", ISBN, "pending"),
            ("doi", "10.5150/other.ch0", "done"),
            ("doi", "10.5150/other.ch1", "done"),
        ]
        assert rows(store, "SELECT job_id, altmetric_id, is_latest FROM outputs ORDER BY 1") == [
            (2, 950, 1),
            (3, 951, 1),
        ]
        assert rows(store, "SELECT count(*) FROM responses WHERE job_id = 1") == [(0,)]


def test_a_store_with_nothing_merged_is_upgraded_quietly(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.import_records(records(book(980, 2, "fine", isbn="9781861972712")))
        expected = rows(store, "SELECT * FROM responses ORDER BY id")
    back_to_m011(db)
    upgraded = harvester("--db", str(db), "derive")
    assert upgraded.returncode == 0, upgraded.stderr
    said = [json.loads(line) for line in upgraded.stderr.splitlines() if "outputs_split" in line]
    assert [(s["merged_jobs"], s["identifiers_shared"]) for s in said] == [(0, 1)]
    assert rows(db, "SELECT * FROM responses ORDER BY id") == expected
