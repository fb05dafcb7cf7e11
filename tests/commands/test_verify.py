"""`verify`: every stored body checked against its checksum, damage named."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import harvest_from_simulator, store_answer

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
