"""The `harvester` command as users run it: real subprocesses, real files, exit codes;
errors in words, never a traceback, whichever command meets them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import HARVESTER, KEY, config_for, harvester, harvester_async, stored_responses

from harvester.sim.server import Simulator


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enqueue", "--type", "pubmed"), "unknown identifier type 'pubmed'"),
        (("enqueue", "/no/such/file"), "cannot read /no/such/file"),
        (("status",), "no store at"),
        (("show", "doi", "10.1000/x"), "no store at"),
        (("show", "doi", "junk"), "not a DOI"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = harvester("--db", str(tmp_path / "none.db"), *args, stdin="")
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[workers]\nconcurrency = -3\n")
    result = harvester("--config", str(config), "status")
    assert result.returncode == 1
    assert "workers.concurrency must be between 1 and 1024" in result.stderr


def test_run_without_a_key_refuses_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    harvester("--db", str(db), "enqueue", stdin="10.1000/a\n")
    before = db.read_bytes()
    result = harvester("--db", str(db), "run", "--drain")
    assert result.returncode == 1
    assert "no API key" in result.stderr and "harvester demo" in result.stderr
    assert db.read_bytes() == before


async def test_run_show_export_status_against_the_simulator(
    simulator: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    config = config_for(tmp_path, simulator.base_url)
    ids = "".join(f"10.1000/cli.{n}\n" for n in range(60))
    assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0

    code, out, err = await harvester_async(
        "--config", str(config), "--db", str(db), "run", "--drain", env={"ALTMETRIC_API_KEY": KEY}
    )
    assert code == 0, err
    assert KEY not in out + err
    assert '"event": "harvest.stop"' in err  # JSON lines when not on a terminal

    # The reading commands need no simulator: run them off the event loop.
    await asyncio.to_thread(assert_reading_commands_agree, db, tmp_path)


def assert_reading_commands_agree(db: Path, tmp_path: Path) -> None:
    """status, show, export (both formats) on a store of 60 harvested DOIs."""
    status = json.loads(harvester("--db", str(db), "status", "--json").stdout)
    jobs = status["jobs"]
    assert set(jobs) == {"pending", "in_progress", "done", "not_found", "failed"}
    assert jobs["done"] + jobs["not_found"] == 60 and jobs["pending"] == 0
    assert status["throughput_per_s"]["last_1m"] > 0

    _, identifier, _, _, _, stored = next(row for row in stored_responses(db) if row[2] == "done")
    command = [*HARVESTER, "--db", str(db), "show", "doi"]
    raw = subprocess.run([*command, identifier.upper(), "--raw"], capture_output=True, check=True)
    assert raw.stdout == stored
    shown = harvester("--db", str(db), "show", "doi", identifier)
    assert shown.returncode == 0 and "state=done" in shown.stderr
    assert json.loads(shown.stdout) == json.loads(stored)  # the answer alone: pipeable

    jsonl = harvester("--db", str(db), "export", "--format", "jsonl").stdout.splitlines()
    records = [json.loads(line) for line in jsonl]
    assert len(records) == 60
    assert {
        "type",
        "identifier",
        "state",
        "http_status",
        "sha256",
        "fetched_at",
        "mode",
        "body",
    } <= set(records[0])
    assert all(isinstance(r["body"], dict) for r in records if r["state"] == "done")
    out_csv = tmp_path / "out.csv"
    assert (
        harvester("--db", str(db), "export", "--format", "csv", "--output", str(out_csv)).returncode
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [row["sha256"] for row in rows] == [r["sha256"] for r in records]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--db", "{tmp}/afile/x.db", "enqueue"), "afile"),
        (("--db", "{tmp}/missing.db", "retry"), "no store at"),
        (("--db", "{tmp}/missing.db", "backfill", "--twitter"), "no store at"),
        (("--config", "{tmp}/binary.toml", "status"), "is not UTF-8 text"),
        (("--db", "{tmp}/foreign.db", "status"), "is not a harvester store"),
    ],
)
def test_odd_paths_and_files_get_a_message_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "afile").write_text("a file where a directory is expected")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00binary")
    foreign = sqlite3.connect(tmp_path / "foreign.db")
    foreign.execute("CREATE TABLE jobs (something TEXT)")
    foreign.close()
    result = harvester(*(arg.format(tmp=tmp_path) for arg in args), stdin="10.1000/x\n")
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "missing.db").exists()
