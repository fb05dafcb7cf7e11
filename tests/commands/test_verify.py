"""`verify`: every stored body checked against its checksum, damage named, with the
command that fetches the damaged answers again; a damaged store file told as such."""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from pathlib import Path

import pytest
from helpers import harvest_from_simulator, harvester, store_answer

from harvester.cli import main
from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store import Store


def test_verify_catches_a_flipped_byte_in_a_compressed_body(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(db_path) as store:
        for n, body in enumerate(universe.body_pool(5)):
            store_answer(store, Identifier("doi", f"10.5150/flip.{n}"), body)
    assert main(["--db", str(db_path), "verify"]) == 0
    assert "checked 5 distinct bodies of 5 responses, 0 mismatches" in capsys.readouterr().out
    conn = sqlite3.connect(db_path)
    [(data,)] = conn.execute("SELECT data FROM bodies WHERE id = 3").fetchall()
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x10
    conn.execute("UPDATE bodies SET data = ? WHERE id = 3", (bytes(damaged),))
    conn.commit()
    conn.close()
    assert main(["--db", str(db_path), "verify"]) == 1
    output = capsys.readouterr().out
    assert "MISMATCH response 3 doi:10.5150/flip.2" in output
    assert "1 mismatches" in output
    assert main(["--db", str(db_path), "show", "doi", "10.5150/flip.2"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert main(["--db", str(db_path), "show", "doi", "10.5150/flip.1", "--raw"]) == 0


async def test_verify_catches_a_corrupted_byte(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await harvest_from_simulator(db_path, 30)
    assert main(["--db", str(db_path), "verify"]) == 0
    conn = sqlite3.connect(db_path)
    response_id, body_id, data = conn.execute(
        """SELECT r.id, b.id, b.data FROM responses r JOIN bodies b ON b.id = r.body_id
           WHERE r.http_status = 200 AND b.codec = 'zstd' LIMIT 1"""
    ).fetchone()
    flipped = bytearray(data)  # one bit of the compressed bytes on disk
    flipped[len(flipped) // 2] ^= 0x01
    conn.execute("UPDATE bodies SET data = ? WHERE id = ?", (bytes(flipped), body_id))
    conn.commit()
    conn.close()
    capsys.readouterr()
    assert main(["--db", str(db_path), "verify"]) == 1
    output = capsys.readouterr().out
    assert f"MISMATCH response {response_id} " in output
    assert "1 mismatches" in output


async def test_verify_says_how_to_fetch_the_damaged_answers_again(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command it prints works: the damaged answer's job goes back to pending."""
    await harvest_from_simulator(db_path, 10)
    conn = sqlite3.connect(db_path)
    response_id, body_id, data = conn.execute(
        """SELECT r.id, b.id, b.data FROM responses r JOIN bodies b ON b.id = r.body_id
           WHERE r.http_status = 200 AND b.codec = 'zstd' ORDER BY r.id LIMIT 1"""
    ).fetchone()
    conn.execute("UPDATE bodies SET data = ? WHERE id = ?", (data[:-9] + bytes(9), body_id))
    conn.commit()
    conn.close()
    capsys.readouterr()
    assert main(["--db", str(db_path), "verify"]) == 1
    *_, summary, hint = capsys.readouterr().out.splitlines()
    assert summary.endswith("1 mismatches")
    assert hint == (
        "to fetch them again (those that are their output's latest answer): harvester refresh"
        f" --older-than 0s --where 'response_id IN ({response_id})'"
    )
    command = shlex.split(hint.split(": ", 1)[1])[1:]
    assert main(["--db", str(db_path), *command]) == 0
    assert "requeued 1 output " in capsys.readouterr().out
    with Store(db_path, read_only=True) as store:
        assert store.jobs.counts_by_state()["pending"] == 1


def damage_page(db_path: Path, table: str) -> None:
    """Overwrite the root page of `table` in the file with garbage, as a failing disk
    might: SQLite then finds the file malformed when it reads that table."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    with db_path.open("r+b") as handle:
        handle.seek(page_size * (root - 1))
        handle.write(b"\xde\xad\xbe\xef" * (page_size // 4))


async def test_a_damaged_store_file_is_told_with_what_to_do_not_verify_again(
    db_path: Path,
) -> None:
    await harvest_from_simulator(db_path, 40)
    damage_page(db_path, "bodies")
    result = harvester("--db", str(db_path), "verify")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("harvester verify: the store file itself is damaged")
    assert "malformed" in line and "backup" in line and "sqlite3's .recover" in line
    assert "`harvester verify`" not in line  # it once sent the user to itself
