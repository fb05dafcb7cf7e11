"""What scripts rely on: which commands may create a store, exit codes, where output
goes, global options, bad input files, the key's precedence. Real subprocesses."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    HARVESTER,
    KEY,
    Terminal,
    cli_env,
    config_for,
    copy_store,
    harvester,
    harvester_async,
    rows,
    start_harvester,
)

from harvester.sim.server import Simulator, SimulatorSettings


@pytest.fixture
def db(harvested_by_cli: Callable[[int], Path], tmp_path: Path) -> Path:
    """A copy of a store of 12 outputs harvested by the CLI."""
    return copy_store(harvested_by_cli(12), tmp_path)


# -- mistyped paths -------------------------------------------------------------------------

STORE_COMMANDS = [
    ("run",),
    ("run", "--drain"),
    ("status",),
    ("status", "--json"),
    ("show", "doi", "10.1000/x"),
    ("verify",),
    ("derive",),
    ("derive", "--rebuild"),
    ("refresh", "--older-than", "1d"),
    ("retry",),
    ("backfill", "--twitter"),
    ("query", "SELECT 1"),
    ("export", "--format", "jsonl"),
    ("export", "--format", "csv", "--table", "jobs", "--output", "{tmp}/out.csv"),
]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_commands_never_create_a_store(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "mistyped.db"
    args = [part.format(tmp=tmp_path) for part in command]
    result = harvester("--db", str(missing), *args, env={"ALTMETRIC_API_KEY": KEY})
    assert result.returncode == 1, result.stderr
    assert str(missing) in result.stderr and "no store at" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store, no lock, no WAL, no output


@pytest.mark.parametrize("command", STORE_COMMANDS[:4], ids=" ".join)
def test_commands_never_create_a_directory(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "s.db"
    result = harvester("--db", str(missing), *command, env={"ALTMETRIC_API_KEY": KEY})
    assert result.returncode == 1 and str(missing) in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_enqueue_creates_a_store_only_in_an_existing_directory(tmp_path: Path) -> None:
    missing_dir = tmp_path / "nope" / "s.db"
    result = harvester("--db", str(missing_dir), "enqueue", stdin="10.1000/a\n")
    assert result.returncode == 1
    assert f"no directory {missing_dir.parent}" in result.stderr
    assert list(tmp_path.iterdir()) == []

    created = tmp_path / "s.db"
    result = harvester("--db", str(created), "enqueue", stdin="10.1000/a\n")
    assert result.returncode == 0 and created.exists()


def test_enqueue_that_rejects_every_line_leaves_no_file(tmp_path: Path) -> None:
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", stdin="junk\nmore junk\n")
    assert result.returncode == 1 and "rejected 2" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_enqueue_that_rejects_every_line_keeps_an_existing_store(db: Path) -> None:
    before = rows(db, "SELECT count(*) FROM jobs")
    result = harvester("--db", str(db), "enqueue", stdin="junk\n")
    assert result.returncode == 1 and db.exists()
    assert rows(db, "SELECT count(*) FROM jobs") == before


@pytest.mark.parametrize("command", [("enqueue",), ("derive",), ("retry",)], ids=" ".join)
def test_someone_elses_database_is_never_changed(tmp_path: Path, command: tuple[str, ...]) -> None:
    foreign = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('precious')")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    result = harvester("--db", str(foreign), *command, stdin="10.1000/a\n")
    assert result.returncode == 1
    assert "is not a harvester store" in result.stderr
    assert foreign.read_bytes() == before


def test_an_empty_file_is_not_a_store_for_reading_commands(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (("status",), ("derive",), ("retry",)):
        result = harvester("--db", str(empty), *command)
        assert result.returncode == 1 and "not a harvester store" in result.stderr
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("command", [("status",), ("retry",), ("enqueue",)], ids=" ".join)
def test_a_file_that_is_not_sqlite_gets_words_not_sqlite_jargon(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    mistaken = tmp_path / "dois.txt"
    mistaken.write_text("10.1000/a\n" * 200)  # the input file given as --db
    before = mistaken.read_bytes()
    result = harvester("--db", str(mistaken), *command, stdin="10.1000/b\n")
    assert result.returncode == 1
    assert f"cannot open store {mistaken}: the store file is not an SQLite database" in (
        result.stderr
    )
    assert mistaken.read_bytes() == before


# -- run --drain tells scripts the truth ------------------------------------------------------


async def test_drain_with_failed_jobs_exits_4(tmp_path: Path) -> None:
    settings = SimulatorSettings(key=KEY, fault_rate=1.0, fault_kinds=("500",))
    async with Simulator(settings) as simulator:
        db = tmp_path / "s.db"
        assert (
            harvester("--db", str(db), "enqueue", stdin="10.1000/f1\n10.1000/f2\n").returncode == 0
        )
        config = config_for(tmp_path, simulator.base_url, max_attempts=1)
        process = await _run_async("--config", str(config), "--db", str(db), "run", "--drain")
    assert process[0] == 4, process[2]
    assert "2 jobs ended failed" in process[2]
    states = rows(db, "SELECT DISTINCT state FROM jobs")
    assert states == [("failed",)]


async def test_drain_exits_4_only_for_jobs_that_failed_during_it(tmp_path: Path) -> None:
    """Issue 24: a failure left by an earlier run is named, not the exit code of a later
    run that failed nothing (a cron job would report failure until someone retried)."""
    db = tmp_path / "s.db"
    failing = SimulatorSettings(key=KEY, fault_rate=1.0, fault_kinds=("500",))
    async with Simulator(failing) as simulator:
        assert harvester("--db", str(db), "enqueue", stdin="10.1000/f1\n").returncode == 0
        config = config_for(tmp_path, simulator.base_url, max_attempts=1)
        code, _, err = await _run_async("--config", str(config), "--db", str(db), "run", "--drain")
    assert code == 4 and "1 job ended failed in this run" in err, err
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        assert harvester("--db", str(db), "enqueue", stdin="10.1000/ok1\n").returncode == 0
        config = config_for(tmp_path, simulator.base_url, max_attempts=1)
        code, _, err = await _run_async("--config", str(config), "--db", str(db), "run", "--drain")
        assert code == 0, err
        assert "1 job left failed by earlier runs" in err
        code, _, err = await _run_async("--config", str(config), "--db", str(db), "run", "--drain")
        assert code == 0 and "1 job left failed by earlier runs" in err
    assert sorted(rows(db, "SELECT state FROM jobs")) == [("done",), ("failed",)]


async def test_drain_that_ends_clean_exits_0(tmp_path: Path) -> None:
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        db = tmp_path / "s.db"
        assert harvester("--db", str(db), "enqueue", stdin="10.1000/ok1\n").returncode == 0
        config = config_for(tmp_path, simulator.base_url)
        code, _, err = await _run_async("--config", str(config), "--db", str(db), "run", "--drain")
    assert code == 0, err


async def test_drain_stopped_by_a_signal_is_a_graceful_stop(tmp_path: Path) -> None:
    """SIGTERM exits 0 (the service contract) and says the queue was not drained."""
    settings = SimulatorSettings(key=KEY, latency_s=0.5)
    async with Simulator(settings) as simulator:
        db = tmp_path / "s.db"
        ids = "".join(f"10.1000/slow.{n}\n" for n in range(200))
        assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0
        config = config_for(tmp_path, simulator.base_url)
        process = await start_harvester(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": KEY}, stdout=None,
        )  # fmt: skip
        assert process.stderr is not None
        while b"harvest.start" not in await process.stderr.readline():
            pass
        await asyncio.sleep(1.0)  # the signal handlers are installed just after that line
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert "stopped by signal SIGTERM before the queue was drained" in err.decode()
    states = dict(rows(db, "SELECT state, count(*) FROM jobs GROUP BY 1"))
    assert states.get("pending", 0) > 0 and "in_progress" not in states


async def _run_async(*args: str) -> tuple[int, str, str]:
    return await harvester_async(*args, env={"ALTMETRIC_API_KEY": KEY})


# -- output fit for pipes -------------------------------------------------------------------


def test_show_writes_the_answer_alone_on_stdout(db: Path) -> None:
    conn = sqlite3.connect(db)
    (identifier,) = conn.execute("SELECT identifier FROM jobs WHERE state = 'done'").fetchone()
    conn.close()
    shown = harvester("--db", str(db), "show", "doi", identifier)
    assert shown.returncode == 0
    answer = json.loads(shown.stdout)  # nothing but the JSON answer: `| jq` works
    assert isinstance(answer, dict) and "altmetric_id" in answer
    assert "state=done" in shown.stderr and "sha256=" in shown.stderr

    both = harvester("--db", str(db), "show", "doi", identifier, "--json")
    record = json.loads(both.stdout)
    assert record["body"] == answer
    assert record["state"] == "done" and record["type"] == "doi"
    assert record["identifier"] == identifier and len(record["sha256"]) == 64
    assert both.stderr == ""


def test_show_refuses_raw_and_json_together(db: Path) -> None:
    result = harvester("--db", str(db), "show", "doi", "10.1000/x", "--raw", "--json")
    assert result.returncode == 2 and "not allowed with" in result.stderr


# -- global options anywhere ----------------------------------------------------------------


def test_global_options_work_after_the_command(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "h.toml"
    config.write_text('[log]\nlevel = "warning"\n')
    before = harvester("--config", str(config), "--db", str(db), "status", "--json")
    after = harvester("status", "--json", "--db", str(db), "--config", str(config))
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout)["jobs"] == json.loads(after.stdout)["jobs"]
    mixed = harvester("--db", str(tmp_path / "elsewhere.db"), "status", "--db", str(db))
    assert mixed.returncode == 0, mixed.stderr  # the one after the command wins
    bad = harvester("status", "--config", str(tmp_path / "none.toml"), "--db", str(db))
    assert bad.returncode == 1 and "none.toml" in bad.stderr


# -- bad input files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("10.1000/a\n".encode("utf-16"), "not a text file"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00binary gzip", "not a text file"),
        ("caf\xe9/1\n10.1000/\xe9t\xe9\n\xe9\xe8\n".encode("latin-1"), "is not UTF-8 text"),
    ],
    ids=["utf-16", "gzip", "latin-1"],
)
def test_a_file_that_is_not_text_gets_one_message(
    tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "ids.txt"
    source.write_bytes(content)
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", str(source))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()
    piped = subprocess.run(
        [*HARVESTER, "--db", str(tmp_path / "s.db"), "enqueue"],
        input=content, capture_output=True, env=cli_env(), check=False,
    )  # fmt: skip
    assert piped.returncode == 1 and message in piped.stderr.decode()


def test_a_few_bad_bytes_reject_only_their_lines(tmp_path: Path) -> None:
    source = tmp_path / "ids.txt"
    lines = [f"10.1000/good.{n}".encode() for n in range(30)] + [b"10.1000/bad\xff"]
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", str(source))
    assert result.returncode == 1
    assert "added 30" in result.stdout and "rejected 1" in result.stdout
    assert "line 31: not valid UTF-8" in result.stderr


def test_input_longer_than_the_look_at_its_head_arrives_whole(tmp_path: Path) -> None:
    """The first 64 KiB are read to check the input is text, then replayed: every line
    of a longer file or pipe is queued once, none lost or doubled at the seam."""
    ids = "".join(f"10.1000/long-file-{n:06d}\n" for n in range(20_000))  # ~530 KB
    source = tmp_path / "ids.txt"
    source.write_text(ids)
    from_file = harvester("--db", str(tmp_path / "a.db"), "enqueue", str(source))
    from_pipe = harvester("--db", str(tmp_path / "b.db"), "enqueue", stdin=ids)
    for result, db in ((from_file, "a.db"), (from_pipe, "b.db")):
        assert result.returncode == 0 and "added 20,000" in result.stdout, result.stderr
        conn = sqlite3.connect(tmp_path / db)
        rows = conn.execute("SELECT identifier FROM jobs ORDER BY identifier").fetchall()
        conn.close()
        assert [row[0] for row in rows] == sorted(ids.split())


def test_many_rejects_are_shown_twenty_then_counted(tmp_path: Path) -> None:
    lines = [f"junk-{n}" for n in range(250)] + ["pmid:0"] * 30 + ["10.1000/" + "x" * 5000]
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", stdin="\n".join(lines))
    assert result.returncode == 1
    err = result.stderr.splitlines()
    shown = [line for line in err if line.startswith("line ")]
    assert len(shown) == 20
    assert "... and 261 more rejected lines:" in err
    assert any(line.strip().startswith("230 ") for line in err)
    assert any(line.strip().startswith("30 not a PubMed ID") for line in err)
    assert max(len(line) for line in err) <= 200
    assert "rejected 281" in result.stdout


def test_enqueue_on_a_terminal_says_it_reads_standard_input(tmp_path: Path) -> None:
    terminal = Terminal("--db", str(tmp_path / "s.db"), "enqueue")
    terminal.read_until("reading identifiers from standard input")
    terminal.type("10.1000/typed\n\x04")
    code, shown = terminal.finish()
    assert code == 0, shown
    assert "added 1, already queued 0, rejected 0" in shown


def test_enqueue_from_a_pipe_says_nothing_of_standard_input(tmp_path: Path) -> None:
    result = harvester("--db", str(tmp_path / "s.db"), "enqueue", stdin="10.1000/piped\n")
    assert result.returncode == 0 and "standard input" not in result.stderr


def test_query_with_no_sql_is_an_error(db: Path) -> None:
    for sql in ("", "   "):
        result = harvester("--db", str(db), "query", sql)
        assert result.returncode == 1 and "no SQL given" in result.stderr


# -- the key's precedence -------------------------------------------------------------------


def test_a_configured_key_file_that_is_missing_is_an_error_even_with_the_variable(
    db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "h.toml"
    config.write_text(f'[api]\nkey_file = "{tmp_path / "absent-key"}"\n')
    before = db.read_bytes()
    result = harvester(
        "--config", str(config), "--db", str(db), "run", "--drain",
        env={"ALTMETRIC_API_KEY": KEY},
    )  # fmt: skip
    assert result.returncode == 1
    assert "api.key_file" in result.stderr and "cannot be read" in result.stderr
    assert KEY not in result.stderr
    assert db.read_bytes() == before
