"""`harvester import`: Altmetric's dump as the store's first snapshot of every output.

Dumps come from the simulator's generator (`harvester.sim.dump`): both file layouts,
the quirks of the real one, bad records and an archive cut short (refused: the damage
is tested in test_import_damage.py). The store is a real
SQLite file; a kill is a real SIGKILL of a real process.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import (
    HARVESTER,
    KEY,
    cli_env,
    harvester,
    rows,
    run_on_a_terminal,
    simulator_process,
)

from harvester.progress import ERASE_LINE
from harvester.sim.dump import Layout, write_dump


def stored(db: Path) -> list[tuple[str, str, str, str, str]]:
    """Every response as (job type, job identifier, sha256, mode, fetched_at), sorted."""
    return sorted(
        rows(
            db,
            """SELECT jobs.id_type, jobs.identifier, responses.sha256, responses.mode,
                      responses.fetched_at
               FROM responses JOIN jobs ON jobs.id = responses.job_id""",
        )
    )


def derived_counts(db: Path) -> dict[str, int]:
    return {
        table: rows(db, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("outputs", "counts", "tweets", "posts", "aliases", "jobs")
    }


@pytest.mark.parametrize("layout", ["ndjson", "per_file", "mixed"])
def test_every_record_is_stored_as_received_and_derived(tmp_path: Path, layout: Layout) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 300, layout=layout, seed=3)
    db = tmp_path / "s.db"
    done = harvester("--db", str(db), "import", str(dump.path), "--as-of", "2024-05-01")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported 300, already present 0, rejected 0"
    responses = stored(db)
    assert len(responses) == 300
    assert rows(db, "SELECT DISTINCT endpoint FROM responses") == [("dump",)]
    assert {(mode, fetched_at) for *_, mode, fetched_at in responses} == {
        ("dump", "2024-05-01T00:00:00.000000Z")
    }
    counts = derived_counts(db)
    assert counts["outputs"] == counts["jobs"] == 300
    assert rows(db, "SELECT count(*) FROM latest_outputs WHERE mode = 'dump'") == [(300,)]
    params = json.loads(rows(db, "SELECT request_params FROM responses LIMIT 1")[0][0])
    assert params["source"] == "dump" and params["line"] >= 1 and params["member"]
    verified = harvester("--db", str(db), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_exact_bytes_of_a_quirky_record_come_back(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar", 120, layout="mixed", seed=5, gzip=False)
    db = tmp_path / "s.db"
    assert harvester("--db", str(db), "import", str(dump.path)).returncode == 0
    for id_type, identifier, sha256, *_ in stored(db)[:40]:
        raw = subprocess.run(
            [*HARVESTER, "--db", str(db), "show", id_type, identifier, "--raw"],
            capture_output=True,
            env=cli_env(),
            check=True,
        ).stdout
        assert hashlib.sha256(raw).hexdigest() == sha256
    # mtime of the members, as no --as-of was given
    assert {fetched_at for *_, fetched_at in stored(db)} != set()


def test_bad_records_are_reported_and_the_rest_imported(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 200, seed=7, not_objects=3)
    db = tmp_path / "s.db"
    done = harvester("--db", str(db), "import", str(dump.path))
    assert done.returncode == 1
    assert done.stdout.strip() == "imported 200, already present 0, rejected 3"
    for member, line in dump.rejects:
        assert f"rejected {member}:{line}: " in done.stderr
    assert len(stored(db)) == 200


@pytest.mark.parametrize("compressed", [True, False])
def test_an_archive_cut_short_stores_nothing(tmp_path: Path, compressed: bool) -> None:
    """Proven bytes only: the records before the cut are not proven sound (a .tar.gz's
    checks come at its end), so none is stored (tests/commands/test_import_damage.py)."""
    name = "dump.tar.gz" if compressed else "dump.tar"
    dump = write_dump(tmp_path / name, 400, seed=9, truncate=True, gzip=compressed)
    db = tmp_path / "s.db"
    done = harvester("--db", str(db), "import", str(dump.path))
    assert done.returncode == 1
    assert "cut short" in done.stderr and done.stderr.strip().endswith(": nothing imported")
    assert not db.exists()


def test_a_second_import_adds_nothing(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 250, seed=11)
    db = tmp_path / "s.db"
    assert harvester("--db", str(db), "import", str(dump.path)).returncode == 0
    before, counts_before = stored(db), derived_counts(db)
    again = harvester("--db", str(db), "import", str(dump.path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "imported 0, already present 250, rejected 0"
    assert stored(db) == before and derived_counts(db) == counts_before
    backfill = harvester("--db", str(db), "backfill", "--twitter")  # dump records are whole
    assert backfill.returncode == 0 and backfill.stdout.startswith("queued 0 outputs")


def test_kill_9_then_run_again_ends_as_one_clean_run(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 6000, layout="mixed", seed=13)
    clean, killed = tmp_path / "clean.db", tmp_path / "killed.db"
    assert harvester("--db", str(clean), "import", str(dump.path)).returncode == 0
    process = subprocess.Popen(
        [*HARVESTER, "--db", str(killed), "import", str(dump.path)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if killed.exists() and _responses_or_zero(killed) >= 1000:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < _responses_or_zero(killed) < 6000
    resumed = harvester("--db", str(killed), "import", str(dump.path))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    assert _shape(stored(killed)) == _shape(stored(clean))
    assert derived_counts(killed) == derived_counts(clean)


def _responses_or_zero(db: Path) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM responses")[0][0])
    except Exception:
        return 0  # created but not yet migrated, or locked for a moment


def _shape(responses: list[tuple[str, str, str, str, str]]) -> list[tuple[str, str, str]]:
    return [(id_type, identifier, sha256) for id_type, identifier, sha256, *_ in responses]


def test_an_output_has_one_job_whichever_identifier_comes_first(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 50, seed=17)
    db = tmp_path / "s.db"
    # Queued first by PubMed ID: the record's DOI finds that job through the record
    # itself, which names both.
    first_pmid = _a_pmid(tmp_path, dump.path)
    assert harvester("--db", str(db), "enqueue", stdin=f"pmid:{first_pmid}\n").returncode == 0
    assert harvester("--db", str(db), "import", str(dump.path)).returncode == 0
    assert rows(db, "SELECT count(*) FROM jobs") == [(50,)]
    queued_by_pmid = (
        f"SELECT state FROM jobs WHERE id_type = 'pmid' AND identifier = '{first_pmid}'"
    )
    assert rows(db, queued_by_pmid) == [("done",)]
    # One the API had answered 404 for is done too once the dump holds its answer.
    second = tmp_path / "second.db"
    assert harvester("--db", str(second), "enqueue", stdin=f"pmid:{first_pmid}\n").returncode == 0
    conn = sqlite3.connect(second)
    with conn:
        conn.execute("UPDATE jobs SET state = 'not_found'")
    conn.close()
    assert harvester("--db", str(second), "import", str(dump.path)).returncode == 0
    assert rows(second, queued_by_pmid) == [("done",)]
    # Enqueued afterwards by another identifier of an imported output: no new job.
    doi, pmid = rows(
        db,
        """SELECT jobs.identifier, aliases.identifier FROM aliases JOIN jobs ON jobs.id = job_id
           WHERE aliases.id_type = 'pmid' AND jobs.id_type = 'doi' LIMIT 1""",
    )[0]
    queued = harvester("--db", str(db), "enqueue", stdin=f"pmid:{pmid}\ndoi:{doi}\n")
    assert queued.stdout.strip() == "added 0, already queued 2, rejected 0"
    assert rows(db, "SELECT count(*) FROM jobs") == [(50,)]


def _a_pmid(tmp_path: Path, dump: Path) -> str:
    probe = tmp_path / "probe.db"
    assert harvester("--db", str(probe), "import", str(dump)).returncode == 0
    return str(rows(probe, "SELECT identifier FROM aliases WHERE id_type = 'pmid' LIMIT 1")[0][0])


def test_refresh_after_an_import_asks_the_api_for_a_later_snapshot(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 40, seed=19)
    db = tmp_path / "s.db"
    assert (
        harvester("--db", str(db), "import", str(dump.path), "--as-of", "2024-01-01").returncode
        == 0
    )
    refreshed = harvester("--db", str(db), "refresh", "--older-than", "0s")
    assert refreshed.returncode == 0, refreshed.stderr
    with simulator_process() as base_url:
        config = tmp_path / "h.toml"
        config.write_text(
            f'[api]\nbase_url = "{base_url}"\n[rate]\nrequests_per_s = 200\nburst = 10\n'
        )
        ran = harvester(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
    assert ran.returncode in (0, 1), ran.stderr  # 1 if the universe does not know some
    modes = rows(
        db,
        """SELECT jobs.state, group_concat(responses.mode, ',') FROM jobs
           JOIN responses ON responses.job_id = jobs.id GROUP BY jobs.id""",
    )
    refetched = [mode for state, mode in modes if state == "done" and mode == "dump,full"]
    assert len(refetched) >= 30  # each a later snapshot of the same output
    latest = rows(db, "SELECT mode, count(*) FROM latest_outputs GROUP BY mode")
    assert ("full", len(refetched)) in latest


def test_bad_input_gets_one_line_and_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    missing = harvester("--db", str(db), "import", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 1 and "nope.tar.gz" in missing.stderr
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello\n")
    refused = harvester("--db", str(db), "import", str(not_a_dump))
    assert refused.returncode == 1 and "notes.txt" in refused.stderr
    dump = write_dump(tmp_path / "dump.tar.gz", 5, seed=1)
    bad_date = harvester("--db", str(db), "import", str(dump.path), "--as-of", "last week")
    assert bad_date.returncode == 1 and "--as-of" in bad_date.stderr
    assert not db.exists()


@pytest.mark.parametrize("when", ["2999-01-01", "2999-01-01T00:00:00Z", "tomorrow"])
def test_an_as_of_date_in_the_future_is_refused(tmp_path: Path, when: str) -> None:
    """Dates from the user are not in the future: a dump cannot be from after now."""
    if when == "tomorrow":
        when = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    dump = write_dump(tmp_path / "dump.tar.gz", 5, seed=1)
    db = tmp_path / "s.db"
    refused = harvester("--db", str(db), "import", str(dump.path), "--as-of", when)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"harvester import: --as-of {when!r} is in the future: give the date the dump was made"
    ]
    assert refused.stdout == "" and not db.exists()
    today = datetime.now(UTC).date().isoformat()
    done = harvester("--db", str(db), "import", str(dump.path), "--as-of", today)
    assert done.returncode == 0, done.stderr


def test_on_a_terminal_a_bar_shows_the_files_records_and_megabytes(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "dump.tar.gz", 3_000, layout="mixed", seed=29)
    db = tmp_path / "s.db"
    code, shown = run_on_a_terminal("--db", str(db), "import", str(dump.path))
    assert code == 0, shown
    drawn = shown.replace(ERASE_LINE, "\n").replace("\r", "\n").splitlines()
    bar = [line for line in drawn if line.startswith("import [")]
    assert bar, shown
    size_mb = dump.size_bytes // 1_000_000
    assert f"/{size_mb:,} MB" in bar[-1] and "MB/s" in bar[-1]
    assert bar[-1].endswith("records")
    assert "3,000 records" in bar[-1] and " files, " in bar[-1]
    assert "imported 3,000, already present 0, rejected 0" in shown
