"""The `harvester` command as users run it: real subprocesses, real files, exit codes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cli_helpers import KEY, config_for, harvester, harvester_async
from conftest import stored_responses

from harvester.sim.server import Simulator, SimulatorSettings


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(key=KEY)) as running:
        yield running


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
    assert "workers.concurrency must be at least 1" in result.stderr


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
    command = [sys.executable, "-m", "harvester", "--db", str(db), "show", "doi"]
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


def test_retry_puts_failed_jobs_back(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    harvester("--db", str(db), "enqueue", stdin="10.1000/a\n10.1000/b\n")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE jobs SET state = 'failed', attempts = 5, last_error = 'HTTP 500'")
    conn.commit()
    result = harvester("--db", str(db), "retry", "--state", "failed")
    assert result.returncode == 0 and "requeued 2 failed jobs" in result.stdout
    assert conn.execute("SELECT state, attempts FROM jobs").fetchall() == [("pending", 0)] * 2
    conn.close()


def test_demo_runs_without_a_key(tmp_path: Path) -> None:
    result = harvester("demo", "--count", "80", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout and "not_found" in result.stdout
    [store] = list(tmp_path.glob("harvester-demo-*/demo.db"))
    conn = sqlite3.connect(store)
    assert conn.execute(
        "SELECT count(*) FROM jobs WHERE state IN ('done', 'not_found')"
    ).fetchone() == (80,)
    conn.close()


async def test_simulate_serves_on_loopback_until_stopped() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        "simulate",
        "--port",
        "0",
        "--key",
        "k",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        base_url = line.split(" on ")[1].split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=k") as response:
                assert response.status in (200, 404)
            async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=bad") as response:
                assert response.status == 403
    finally:
        process.terminate()
        await process.wait()


async def test_simulate_can_enforce_a_rate_limit() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        "simulate",
        "--port",
        "0",
        "--key",
        "k",
        "--rate-limit",
        "1",
        "--retry-after",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        base_url = line.split(" on ")[1].split()[0]
        statuses, retry_after, hourly = [], [], []
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                async with session.get(f"{base_url}/fetch/doi/10.1000/r{n}?key=k") as response:
                    statuses.append(response.status)
                    retry_after.append(response.headers.get("Retry-After"))
                    hourly.append(response.headers.get("X-HourlyRateLimit-Remaining"))
        assert statuses[0] in (200, 404) and statuses[1:] == [429, 429]
        assert retry_after[1:] == ["1", "1"]
        assert all(value is not None for value in hourly)
    finally:
        process.terminate()
        await process.wait()


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


def test_priority_is_bounded_and_a_bom_is_ignored(tmp_path: Path) -> None:
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", "--priority", "9" * 20)
    assert result.returncode == 2 and "must be between" in result.stderr
    source = tmp_path / "bom.txt"
    source.write_bytes("\ufeff10.1000/first\n10.1000/second\n".encode())
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", str(source))
    assert result.returncode == 0 and "added 2" in result.stdout
