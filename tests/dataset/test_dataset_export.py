"""`harvester export --dataset DIR`: the store as a Parquet dataset, run as users run it
on stores harvested from the simulator. The first run writes every table (typed, zstd,
in month folders, with a manifest that describes each column as Datasette does); a
later one adds only new files and marks what newer snapshots superseded; a dataset
of another store, or one the store can no longer be followed into, is refused with
the dataset untouched; a run stopped at any point (SIGKILL, a full disk, a stop among
its renames) leaves the dataset readable and the next run completes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest
from helpers import (
    HARVESTER,
    cli_env,
    config_for,
    copy_store,
    harvest_store,
    harvester,
    refresh_some,
    rows,
    simulator_process,
    spread_over_months,
)

from harvester.dataset import commit, export_dataset
from harvester.dataset import manifest as manifests
from harvester.store.descriptions import TABLES as DESCRIBED

TABLES = (
    "responses", "outputs", "counts", "readers", "score_context", "latest_outputs",
    "outputs_wide", "mentions", "superseded", "jobs",
)  # fmt: skip
PARTITIONED = set(TABLES) - {"superseded", "jobs"}


@pytest.fixture(scope="module")
def harvested_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 outputs harvested by the CLI, their snapshots spread over three months."""
    store = harvest_store(tmp_path_factory.mktemp("months"), 60)
    spread_over_months(store, 3)
    return store


@pytest.fixture
def store(harvested_months: Path, tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    return copy_store(harvested_months, tmp_path / "store")


def export(db: Path, directory: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return harvester("--db", str(db), "export", "--dataset", str(directory), *more)


def manifest(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / "_dataset.json").read_text())
    return document


def files_of(directory: Path) -> dict[str, str]:
    """Every Parquet file under `directory` with the sha256 of its bytes."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*.parquet"))
    }


def read(directory: Path, table: str, sql: str = "SELECT count(*) FROM t") -> list[Any]:
    """`sql` over a table of the dataset as DuckDB reads it (`t`), superseded rows left
    out of the latest tables, as the README says to read them."""
    files = f"read_parquet('{directory}/{table}/**/*.parquet', hive_partitioning = true)"
    if table in ("superseded", "jobs"):
        files = f"read_parquet('{directory}/{table}/*.parquet')"
    if table in ("latest_outputs", "outputs_wide", "mentions"):
        marks = f"read_parquet('{directory}/superseded/*.parquet')"
        files = (
            f"(SELECT * FROM {files} AS m ANTI JOIN {marks} AS s ON m.response_id = s.response_id)"
        )
    with duckdb.connect() as con:
        return con.sql(sql.replace("FROM t", f"FROM {files} AS t")).fetchall()


def store_count(db: Path, table: str) -> int:
    return int(rows(db, f"SELECT count(*) FROM {table}")[0][0])


def test_a_first_export_writes_every_table_typed_in_month_folders(
    store: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "dataset"
    result = export(store, directory)
    assert result.returncode == 0, result.stderr
    watermark = store_count(store, "responses")
    assert f"exported run 1 to {directory}:" in result.stderr
    assert f"from the start to response {watermark:,}" in result.stderr
    months = {month for (month,) in rows(store, "SELECT substr(fetched_at, 1, 7) FROM outputs")}
    assert len(months) == 3
    for table in TABLES:
        folders = {path.name for path in (directory / table).iterdir()}
        if table in PARTITIONED:
            assert folders <= {f"fetched_month={month}" for month in months}, table
        expected = 0 if table == "superseded" else store_count(store, table)
        assert read(directory, table) == [(expected,)], table
    document = manifest(directory)
    assert document["version"] == 1
    assert document["watermark"]["response_id"] == watermark
    assert document["schema"] == rows(store, "SELECT max(name) FROM _sqlite_migrations")[0][0]
    assert document["store"]["path"] == str(store.resolve())
    assert list(document["tables"]) == list(TABLES)
    for table, described in document["tables"].items():
        assert described["files"] and described["rows"] == sum(
            pq.ParquetFile(directory / name).metadata.num_rows for name in described["files"]
        )
        if table in DESCRIBED and table != "mentions":
            words = DESCRIBED[table].columns
            for column in described["columns"]:
                assert column["description"] == words[column["name"]], (table, column)
    # Typed columns, zstd: integers are int64, times UTC timestamps, never text.
    mentions = manifest(directory)["tables"]["mentions"]["files"][0]
    parquet = pq.ParquetFile(directory / mentions)
    schema = parquet.schema_arrow
    assert str(schema.field("tweet_id").type) == "int64"
    assert str(schema.field("posted_on").type) == "timestamp[us, tz=UTC]"
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    outputs = read(directory, "outputs", "SELECT typeof(fetched_at), typeof(score) FROM t LIMIT 1")
    assert outputs == [("TIMESTAMP WITH TIME ZONE", "DOUBLE")]
    jobs = read(directory, "jobs", "SELECT min(created_at) FROM t")[0][0]
    assert jobs.isoformat().startswith(rows(store, "SELECT min(created_at) FROM jobs")[0][0][:19])


def test_a_month_is_a_folder_that_readers_prune_on(store: Path, tmp_path: Path) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    oldest = rows(store, "SELECT min(substr(fetched_at, 1, 7)) FROM outputs")[0][0]
    expected = rows(store, f"SELECT count(*) FROM outputs WHERE fetched_at LIKE '{oldest}%'")
    found = read(directory, "outputs", f"SELECT count(*) FROM t WHERE fetched_month = '{oldest}'")
    assert found == expected
    # A filter on the month picks its folder's files before any is opened.
    dataset = pyarrow.dataset.dataset(directory / "outputs", format="parquet", partitioning="hive")
    picked = list(dataset.get_fragments(filter=pyarrow.dataset.field("fetched_month") == oldest))
    assert [Path(fragment.path).parent.name for fragment in picked] == [f"fetched_month={oldest}"]


def test_a_second_run_adds_new_files_only_and_marks_what_was_superseded(
    store: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    first = files_of(directory)
    was = dict(rows(store, "SELECT job_id, response_id FROM latest_outputs"))
    with simulator_process() as base_url:
        refresh_some(store, config_for(tmp_path, base_url), "job_id % 4 = 0")
    result = export(store, directory)
    assert result.returncode == 0, result.stderr
    assert "exported run 2" in result.stderr
    now = files_of(directory)
    # Every earlier file is there, byte for byte, but the queue's (`jobs`, swapped whole).
    assert {name: digest for name, digest in first.items() if not name.startswith("jobs/")} == {
        name: digest for name, digest in now.items() if name in first
    }
    assert all("-r00002-" in name for name in set(now) - set(first))
    refreshed = {job for job in was if job % 4 == 0}
    marks = read(directory, "superseded", "SELECT response_id, job_id, superseded_by FROM t")
    latest = dict(rows(store, "SELECT job_id, response_id FROM latest_outputs"))
    assert sorted(marks) == sorted((was[job], job, latest[job]) for job in refreshed)
    # Read as the README says, the latest tables are the store's again.
    found = read(directory, "latest_outputs", "SELECT job_id, response_id FROM t ORDER BY 1")
    assert found == sorted(latest.items())
    posts = "SELECT job_id, source, post_key, author_id, tweet_id, first_response_id,"
    posts += " last_response_id FROM t ORDER BY ALL"
    assert read(directory, "mentions", posts) == rows(
        store, posts.replace("FROM t ORDER BY ALL", "FROM mentions ORDER BY 1, 2, 3")
    )
    for table in ("outputs", "counts", "responses", "outputs_wide", "jobs"):
        assert read(directory, table) == [(store_count(store, table),)], table
    document = manifest(directory)
    assert [run["run"] for run in document["runs"]] == [1, 2]
    assert document["runs"][1]["since"] == document["runs"][0]["watermark"]


def test_a_run_with_nothing_new_rewrites_only_the_queue(store: Path, tmp_path: Path) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    first = files_of(directory)
    result = export(store, directory)
    assert result.returncode == 0, result.stderr
    added = set(files_of(directory)) - set(first)
    assert added == {"jobs/part-r00002-00000.parquet"}
    assert "mentions 0," in result.stderr


def test_a_dataset_of_another_store_is_refused_untouched(
    store: Path, tmp_path: Path, harvested_by_cli: Any
) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    before = (files_of(directory), (directory / "_dataset.json").read_bytes())
    other = harvested_by_cli(40)
    result = export(other, directory)
    assert result.returncode == 1
    assert f"{directory} was exported from another store ({store.resolve()})" in result.stderr
    assert "--rebuild" in result.stderr
    assert (files_of(directory), (directory / "_dataset.json").read_bytes()) == before
    rebuilt = export(other, directory, "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "exported run 1" in rebuilt.stderr
    assert read(directory, "outputs") == [(store_count(other, "outputs"),)]
    assert not any("r00002" in name for name in files_of(directory))


def test_a_schema_that_moved_on_and_a_store_behind_the_dataset_are_refused(
    store: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    document = manifest(directory)
    document["schema"] = "m011_outputs_wide"  # as a dataset written before m012 says
    (directory / "_dataset.json").write_text(json.dumps(document))
    result = export(store, directory)
    assert result.returncode == 1
    assert "the store's schema moved on since" in result.stderr
    assert "(m011_outputs_wide then, m012_one_job_per_output now)" in result.stderr
    document["schema"] = "m012_one_job_per_output"
    document["watermark"]["response_id"] += 5  # the store restored from an older copy
    (directory / "_dataset.json").write_text(json.dumps(document))
    result = export(store, directory)
    assert result.returncode == 1
    assert "restored from an older copy?" in result.stderr


def test_snapshots_derived_below_the_watermark_since_are_refused(tmp_path: Path) -> None:
    """With `store.derive = false` the answers are exported before their rows exist;
    deriving them afterwards would leave the dataset without them: refused."""
    db = tmp_path / "underived.db"
    assert harvester("--db", str(db), "enqueue", stdin="10.1000/u.1\n10.1000/u.2\n").returncode == 0
    with simulator_process() as base_url:
        config = config_for(tmp_path, base_url)
        config.write_text(config.read_text() + "\n[store]\nderive = false\n")
        ran = harvester(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": "test-key-9f8e7d"},
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
    directory = tmp_path / "dataset"
    assert export(db, directory).returncode == 0
    assert harvester("--db", str(db), "derive").returncode == 0
    result = export(db, directory)
    assert result.returncode == 1
    assert "the store's derived tables changed below the last response" in result.stderr
    assert export(db, directory, "--rebuild").returncode == 0
    assert read(directory, "outputs") == [(store_count(db, "outputs"),)]


def test_what_is_not_a_dataset_is_never_written_into(store: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    result = export(store, mine)
    assert result.returncode == 1
    assert "is not empty and holds no dataset (thesis.tex)" in result.stderr
    assert sorted(path.name for path in mine.iterdir()) == [".lock", "thesis.tex"]
    assert export(store, mine, "--rebuild").returncode == 1  # not even to start over
    result = export(store, store)
    assert result.returncode == 1
    assert "is a file: --dataset names a directory" in result.stderr
    result = export(store, tmp_path / "no" / "such")
    assert result.returncode == 1
    assert "no directory" in result.stderr
    for flags in (("--table", "jobs"), ("--output", "x")):
        result = export(store, tmp_path / "d", *flags)
        assert result.returncode == 1
        assert "does not go with --dataset" in result.stderr
    assert harvester("--db", str(store), "export", "--rebuild", "--format", "csv").returncode == 1


def test_one_export_at_a_time(store: Path, tmp_path: Path) -> None:
    directory = tmp_path / "dataset"
    directory.mkdir()
    with (directory / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = export(store, directory)
    assert result.returncode == 1
    assert "another export is writing" in result.stderr
    assert export(store, directory).returncode == 0


def test_an_export_never_holds_the_writer_and_reads_one_state(store: Path, tmp_path: Path) -> None:
    """While the export reads, another connection writes and commits at once (no busy
    wait allowed); what it wrote is not in this run, and is in the next."""
    jobs = store_count(store, "jobs")
    wrote: list[float] = []

    def write_meanwhile(_table: str, _rows: int) -> None:
        if wrote:
            return
        with sqlite3.connect(store, timeout=0) as writer:
            started_s = time.monotonic()
            writer.execute(
                "INSERT INTO jobs (id_type, identifier, next_attempt_at, created_at, updated_at)"
                " VALUES ('doi', '10.1/meanwhile', 'x', 'x', 'x')"
            )
            wrote.append(time.monotonic() - started_s)
        writer.close()

    directory = tmp_path / "dataset"
    export_dataset(store, directory, on_rows=write_meanwhile)
    assert wrote and wrote[0] < 0.5
    assert read(directory, "jobs") == [(jobs,)]
    export_dataset(store, directory)
    assert read(directory, "jobs") == [(jobs + 1,)]


def test_a_run_stopped_among_its_renames_is_finished_by_the_next(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    with simulator_process() as base_url:
        refresh_some(store, config_for(tmp_path, base_url), "job_id % 3 = 0")
    real = manifests.write_atomically

    def stopped_before_the_manifest(path: Path, text: str) -> None:
        if path.name == "_dataset.json":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(commit, "write_atomically", stopped_before_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(store, directory)
    monkeypatch.undo()
    assert (directory / ".staging" / "commit.json").exists()
    assert manifest(directory)["watermark"]["response_id"] < store_count(store, "responses")
    result = export(store, directory)
    assert result.returncode == 0, result.stderr
    assert "finished the moves of a run stopped after it was committed" in result.stderr
    assert "exported run 3" in result.stderr  # run 2 landed, then this one
    assert not (directory / ".staging").exists()
    assert read(directory, "latest_outputs") == [(store_count(store, "latest_outputs"),)]
    assert read(directory, "outputs") == [(store_count(store, "outputs"),)]


def test_a_full_disk_leaves_the_dataset_as_it_was(store: Path, tmp_path: Path) -> None:
    """A rebuild (the largest files) on a disk that fills: the dataset stays as it was,
    and the next run, with room, brings it up to date."""
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    with simulator_process() as base_url:
        refresh_some(store, config_for(tmp_path, base_url), "job_id % 2 = 0")
    before = (files_of(directory), manifest(directory))

    def small_disk() -> None:  # no file past 33 kB (SQLite's -shm is 32): EFBIG, as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (33_000, 33_000))

    result = subprocess.run(
        [*HARVESTER, "--db", str(store), "export", "--dataset", str(directory), "--rebuild"],
        capture_output=True,
        text=True,
        env=cli_env(),
        preexec_fn=small_disk,  # the child's own limit; it starts no thread before
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "File too large" in result.stderr
    assert (files_of(directory), manifest(directory)) == before
    assert not (directory / ".staging").exists()
    assert export(store, directory).returncode == 0
    assert read(directory, "outputs") == [(store_count(store, "outputs"),)]


def test_killed_at_any_moment_the_dataset_reads_as_before_or_after(
    store: Path, tmp_path: Path
) -> None:
    """SIGKILL at moments spread over runs, rebuilds and not: every time, what the
    manifest lists is on disk and whole, every table can be read, and the next run
    makes what a clean run makes."""
    directory = tmp_path / "dataset"
    assert export(store, directory).returncode == 0
    with simulator_process() as base_url:
        refresh_some(store, config_for(tmp_path, base_url), "job_id % 2 = 1")
    for number, delay_s in enumerate((0.3, 0.45, 0.6, 0.75, 0.9, 1.05, 1.2, 1.5)):
        rebuild = ("--rebuild",) if number % 2 else ()
        process = subprocess.Popen(
            [*HARVESTER, "--db", str(store), "export", "--dataset", str(directory), *rebuild],
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        tables = manifest(directory)["tables"]
        for name in [name for table in tables.values() for name in table["files"]]:
            assert pq.ParquetFile(directory / name).metadata.num_rows >= 0
        for table in TABLES:
            assert read(directory, table)[0][0] >= 0, table
    result = export(store, directory)
    assert result.returncode == 0, result.stderr
    for table in ("outputs", "latest_outputs", "mentions", "responses", "counts", "jobs"):
        assert read(directory, table) == [(store_count(store, table),)], table
