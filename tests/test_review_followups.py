"""What a black-box review of "nothing a user types can lose data or mislead" found:
each case runs the real CLI on real files, and each failed before its fix."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import KEY, cli_env, copy_store, harvest_store, harvester

from harvester.model import iso_utc
from harvester.store import Store

OLD = "2020-01-01T00:00:00.000000Z"


@pytest.fixture(scope="module")
def harvested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harvest_store(tmp_path_factory.mktemp("harvested"), count=12)


@pytest.fixture
def db(harvested: Path, tmp_path: Path) -> Path:
    return copy_store(harvested, tmp_path)


def states(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    finally:
        conn.close()


def many_done_outputs(db: Path, count: int) -> None:
    """`count` done outputs with one old snapshot each, written as SQL (harvesting
    thousands would take a minute): enough for refresh's several chunks of 5,000."""
    with Store(db) as store:
        conn = store.conn
        now = iso_utc(time.time())
        with store.transaction():
            conn.execute(
                "INSERT INTO bodies (id, sha256, size_bytes, codec, data)"
                " VALUES (1, 'x', 2, 'identity', X'7B7D')"
            )
            for n in range(1, count + 1):
                conn.execute(
                    "INSERT INTO jobs (id, id_type, identifier, state, next_attempt_at,"
                    " created_at, updated_at) VALUES (?, 'doi', ?, 'done', ?, ?, ?)",
                    (n, f"10.5150/many.{n}", now, now, now),
                )
                conn.execute(
                    "INSERT INTO responses (id, job_id, http_status, sha256, size_bytes,"
                    " request_params, mode, fetched_at, body_id)"
                    " VALUES (?, ?, 200, 'x', 2, '{}', 'full', ?, 1)",
                    (n, n, OLD),
                )
                conn.execute(
                    "INSERT INTO outputs (response_id, job_id, identifiers, fetched_at, mode,"
                    " is_latest) VALUES (?, ?, '{}', ?, 'full', 1)",
                    (n, n, OLD),
                )


def test_a_where_that_fails_half_way_requeues_nothing(tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    many_done_outputs(db, 6_000)
    fails_late = "CASE WHEN job_id > 5500 THEN abs(-9223372036854775807 - 1) ELSE 1 END"
    result = harvester(
        "--db", str(db), "refresh", "--older-than", "0s", "--where", fails_late
    )  # fmt: skip
    assert result.returncode == 1 and "overflow" in result.stderr
    assert states(db) == {"done": 6_000}
    ok = harvester("--db", str(db), "refresh", "--older-than", "1d", "--where", "job_id > 10")
    assert ok.returncode == 0 and "requeued 5,990 outputs" in ok.stdout


@pytest.mark.parametrize("age", ["400000000000s", "99999999999999999999w", "1" + "0" * 400 + "d"])
def test_an_age_beyond_the_epoch_selects_nothing(db: Path, age: str) -> None:
    before = states(db)
    result = harvester("--db", str(db), "refresh", "--older-than", age)
    assert result.returncode == 0, result.stderr
    assert "requeued 0 outputs" in result.stdout and "Traceback" not in result.stderr
    assert states(db) == before


def test_the_clis_own_lines_carry_a_priority_under_journald(tmp_path: Path) -> None:
    log = tmp_path / "journal"
    with log.open("wb") as stderr:
        stat = os.fstat(stderr.fileno())
        subprocess.run(
            [sys.executable, "-m", "harvester", "--db", str(tmp_path / "none.db"), "status"],
            stderr=stderr,
            env=cli_env({"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}),
            check=False,
        )
    assert log.read_text().startswith("<3>harvester status: no store at")


def test_enqueue_refuses_an_empty_file_that_was_there(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = harvester("--db", str(empty), "enqueue", stdin="10.1000/a\n")
    assert result.returncode == 1 and "not a harvester store" in result.stderr
    assert empty.stat().st_size == 0


def test_a_dangling_symlink_as_store_keeps_the_link_and_leaves_no_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "real" / "target.db")
    result = harvester("--db", str(link), "enqueue", stdin="garbage\n")
    assert result.returncode == 1 and "rejected 1" in result.stdout
    assert link.is_symlink()
    assert list((tmp_path / "real").iterdir()) == []


def test_a_nul_byte_past_the_first_64_kib_refuses_the_file_and_queues_nothing(
    tmp_path: Path,
) -> None:
    lines = b"".join(b"10.1000/line.%d\n" % n for n in range(6_000))  # ~100 KB
    content = lines + b"10.1000/x\x00y\n10.1000/z\n"
    source = tmp_path / "ids.txt"
    source.write_bytes(content)
    for stdin_path in (None, source):
        db = tmp_path / f"s{stdin_path is None}.db"
        args = [sys.executable, "-m", "harvester", "--db", str(db), "enqueue"]
        result = subprocess.run(
            args if stdin_path is None else [*args, str(source)],
            input=content if stdin_path is None else None,
            capture_output=True,
            env=cli_env(),
            check=False,
        )
        assert result.returncode == 1
        assert b"not a text file (it holds NUL bytes" in result.stderr
        assert not db.exists()  # nothing queued, no store made


def damage_one_body(db: Path) -> str:
    """Flip bytes inside one compressed body; the identifier whose answer it was."""
    conn = sqlite3.connect(db)
    try:
        body_id, identifier = conn.execute(
            "SELECT b.id, j.identifier FROM bodies AS b JOIN responses AS r ON r.body_id = b.id"
            " JOIN jobs AS j ON j.id = r.job_id WHERE r.http_status = 200 AND b.codec = 'zstd'"
            " ORDER BY b.id LIMIT 1"
        ).fetchone()
        data = bytearray(
            conn.execute("SELECT data FROM bodies WHERE id = ?", (body_id,)).fetchone()[0]
        )
        for at in (len(data) // 2, len(data) // 2 + 1):
            data[at] ^= 0xFF
        conn.execute("UPDATE bodies SET data = ? WHERE id = ?", (bytes(data), body_id))
        conn.commit()
        return str(identifier)
    finally:
        conn.close()


def test_rebuild_refuses_while_a_body_is_damaged_and_loses_nothing(db: Path) -> None:
    damage_one_body(db)
    conn = sqlite3.connect(db)
    before = conn.execute("SELECT count(*) FROM outputs").fetchone()
    conn.close()
    result = harvester("--db", str(db), "derive", "--rebuild")
    assert result.returncode == 1
    assert "1 stored bodies are damaged" in result.stderr and "nothing was changed" in result.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM outputs").fetchone() == before
    conn.close()


@pytest.mark.parametrize("table", [(), ("--table", "bodies")], ids=["records", "bodies"])
def test_export_says_when_it_wrote_a_damaged_body_as_null(db: Path, table: tuple[str, ...]) -> None:
    damage_one_body(db)
    result = harvester("--db", str(db), "export", "--format", "jsonl", *table)
    assert result.returncode == 1  # everything written, then a failure (issue 22)
    assert "1 stored bodies are damaged and were exported as null" in result.stderr


def test_sigterm_during_an_export_leaves_no_partial_file(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("precious\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "harvester", "--db", str(db), "export", "--format", "jsonl",
         "--table", "bodies", "--output", str(target)],
        env=cli_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob(".out.jsonl.*.partial")):  # writing has begun
        if process.poll() is not None:
            break  # done before a poll saw its partial file: said below
        assert time.monotonic() < deadline
        time.sleep(0.001)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    if process.returncode == 0:
        pytest.skip("the export finished before the signal arrived")
    assert process.returncode == 128 + signal.SIGTERM, err
    assert target.read_text() == "precious\n"
    assert list(tmp_path.glob(".out.jsonl.*")) == []


@pytest.mark.parametrize("sql", [";", "-- only a comment", "/* c */", " ; ; "])
def test_query_of_nothing_is_an_error(db: Path, sql: str) -> None:
    result = harvester("--db", str(db), "query", sql)
    assert result.returncode == 1
    assert "no statement that returns rows" in result.stderr or "no SQL" in result.stderr


def test_show_json_gives_a_404s_text_as_body(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.jobs.add([])
    many_done_outputs(db, 1)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM outputs")
    conn.execute("UPDATE jobs SET state = 'not_found'")
    conn.execute(
        "INSERT INTO bodies (id, sha256, size_bytes, codec, data) VALUES"
        " (2, 'nf', 9, 'identity', CAST('Not Found' AS BLOB))"
    )
    conn.execute(
        "UPDATE responses SET http_status = 404, body_id = 2, sha256 = 'nf', size_bytes = 9"
    )
    conn.commit()
    conn.close()
    result = harvester("--db", str(db), "show", "doi", "10.5150/many.1", "--json")
    assert result.returncode == 0, result.stderr
    import json

    assert json.loads(result.stdout)["body"] == "Not Found"
    plain = harvester("--db", str(db), "show", "doi", "10.5150/many.1")
    assert plain.stdout == "Not Found\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--port", "70000"), "--port must be between"),
        (("--port", "-1"), "--port must be between"),
        (("--key", ""), "--key must not be empty"),
        (("--latency-ms", "nan"), "--latency-ms must be a number"),
        (("--rate-limit-burst", "0"), "--rate-limit-burst must be at least 1"),
    ],
)
def test_simulate_refuses_bad_values(args: tuple[str, ...], message: str) -> None:
    result = harvester("simulate", *args)
    assert result.returncode == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_paths_are_named_as_empty(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "h.toml"
    config.write_text('[api]\nkey_file = ""\n')
    result = harvester(
        "--config", str(config), "--db", str(db), "run", env={"ALTMETRIC_API_KEY": KEY}
    )
    assert result.returncode == 1 and "api.key_file is empty" in result.stderr
    result = harvester("--db", "", "status")
    assert result.returncode == 1 and "--db or store.path is empty" in result.stderr


def test_no_eta_without_a_daemon_even_when_nothing_is_left(db: Path) -> None:
    import json

    status = json.loads(harvester("--db", str(db), "status", "--json").stdout)
    assert status["daemon"]["running"] is False
    assert status["eta_s"] is None


def test_long_user_values_never_make_a_message_line_over_200_characters(db: Path) -> None:
    long_where = "title = '" + "x" * 400 + "' AND nosuchcolumn = 1"
    for args in (
        ("export", "--format", "jsonl", "--table", "outputs", "--where", long_where),
        ("show", "doi", "10.1000/" + "y" * 300),
        ("query", "SELECT * FROM " + "z" * 300),
        ("export", "--format", "csv", "--output", "/no/" + "d" * 600 + "/out.csv"),
    ):
        result = harvester("--db", str(db), *args)
        assert result.returncode == 1, args
        assert max(len(line) for line in result.stderr.splitlines()) <= 200, result.stderr
