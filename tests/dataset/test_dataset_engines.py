"""The dataset read by real engines: DuckDB, polars, pyarrow.dataset and Spark in local
mode each give the counts and the top outputs `harvester query` gives on the store,
after a first export and after an incremental one, reading the files as the README
says (month folders as a column, the latest tables without what `superseded` lists).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset
import pytest
from helpers import (
    config_for,
    harvest_store,
    harvester,
    query_json,
    refresh_some,
    simulator_process,
    spread_over_months,
)

LATEST = ("latest_outputs", "outputs_wide", "mentions")
SNAPSHOTS = ("responses", "outputs", "counts", "readers", "score_context")
TOP = 10


@dataclass(frozen=True)
class Expected:
    """What `harvester query` says of the store, for one dataset to be read."""

    directory: Path
    counts: dict[str, int]  # rows per table, as the store has them
    top: list[tuple[int, int, str, float]]  # job_id, response_id, doi, score
    per_source: dict[str, int]  # mentions per source
    in_month: tuple[str, int]  # the oldest month and the outputs fetched in it


def expected(db: Path, directory: Path) -> Expected:
    counts = {
        table: query_json(db, f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for table in (*LATEST, *SNAPSHOTS, "jobs")
    }
    top = [
        (row["job_id"], row["response_id"], row["doi"], row["score"])
        for row in query_json(
            db,
            "SELECT job_id, response_id, doi, score FROM latest_outputs"
            f" ORDER BY score DESC, job_id LIMIT {TOP}",
        )
    ]
    per_source = {
        row["source"]: row["n"]
        for row in query_json(db, "SELECT source, count(*) AS n FROM mentions GROUP BY 1")
    }
    month = query_json(
        db,
        "SELECT substr(fetched_at, 1, 7) AS month, count(*) AS n FROM outputs"
        " GROUP BY 1 ORDER BY 1 LIMIT 1",
    )[0]
    return Expected(directory, counts, top, per_source, (month["month"], month["n"]))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> list[Expected]:
    """A store of 50 outputs harvested over three months, exported; then a fifth of them
    refreshed and exported again into the same directory (the first kept as a copy)."""
    root = tmp_path_factory.mktemp("engines")
    db = harvest_store(root, 50)
    spread_over_months(db, 3)
    directory = root / "dataset"
    assert harvester("--db", str(db), "export", "--dataset", str(directory)).returncode == 0
    first = root / "first"
    shutil.copytree(directory, first)
    before = expected(db, first)
    with simulator_process() as base_url:
        refresh_some(db, config_for(root, base_url), "job_id % 5 = 0")
    result = harvester("--db", str(db), "export", "--dataset", str(directory))
    assert result.returncode == 0, result.stderr
    assert "exported run 2" in result.stderr
    after = expected(db, directory)
    assert after.counts["outputs"] > before.counts["outputs"]
    return [before, after]


Reader = Callable[[Expected], Expected]


def check(read: Reader, datasets: list[Expected]) -> None:
    for want in datasets:
        assert read(want) == want


# -- DuckDB ---------------------------------------------------------------------------------


def duckdb_reads(want: Expected) -> Expected:
    root = want.directory
    with duckdb.connect() as con:
        for table in (*LATEST, *SNAPSHOTS):
            files = f"read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true)"
            if table in LATEST:
                marks = f"read_parquet('{root}/superseded/*.parquet')"
                files += f" AS t ANTI JOIN {marks} AS s ON t.response_id = s.response_id"
            con.sql(f"CREATE VIEW {table} AS SELECT * FROM {files}")
        con.sql(f"CREATE VIEW jobs AS SELECT * FROM read_parquet('{root}/jobs/*.parquet')")
        counts = {
            table: con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for table in want.counts
        }
        top = con.sql(
            "SELECT job_id, response_id, doi, score FROM latest_outputs"
            f" ORDER BY score DESC, job_id LIMIT {TOP}"
        ).fetchall()
        per_source = dict(con.sql("SELECT source, count(*) FROM mentions GROUP BY 1").fetchall())
        month = want.in_month[0]
        in_month = con.sql(f"SELECT count(*) FROM outputs WHERE fetched_month = '{month}'")
        return Expected(root, counts, top, per_source, (month, in_month.fetchall()[0][0]))


def test_duckdb_reads_what_harvester_query_reads(datasets: list[Expected]) -> None:
    check(duckdb_reads, datasets)


# -- polars ---------------------------------------------------------------------------------


def polars_reads(want: Expected) -> Expected:
    root = want.directory
    marks = pl.scan_parquet(f"{root}/superseded/*.parquet").select("response_id")

    def scan(table: str) -> pl.LazyFrame:
        if table == "jobs":
            return pl.scan_parquet(f"{root}/jobs/*.parquet")
        frame = pl.scan_parquet(f"{root}/{table}/**/*.parquet", hive_partitioning=True)
        return frame.join(marks, on="response_id", how="anti") if table in LATEST else frame

    counts = {table: scan(table).select(pl.len()).collect().item() for table in want.counts}
    top = (
        scan("latest_outputs")
        .sort(["score", "job_id"], descending=[True, False])
        .head(TOP)
        .select("job_id", "response_id", "doi", "score")
        .collect()
        .rows()
    )
    per_source = dict(scan("mentions").group_by("source").len().collect().rows())
    month = want.in_month[0]
    in_month = scan("outputs").filter(pl.col("fetched_month") == month).select(pl.len())
    return Expected(root, counts, top, per_source, (month, in_month.collect().item()))


def test_polars_reads_what_harvester_query_reads(datasets: list[Expected]) -> None:
    check(polars_reads, datasets)


# -- pyarrow.dataset ------------------------------------------------------------------------


def pyarrow_reads(want: Expected) -> Expected:
    root = want.directory
    marks = pyarrow.dataset.dataset(root / "superseded", format="parquet").to_table()

    def table_of(name: str, columns: list[str] | None = None) -> pa.Table:
        partitioning = None if name == "jobs" else "hive"
        found = pyarrow.dataset.dataset(root / name, format="parquet", partitioning=partitioning)
        read = found.to_table(columns=columns)
        if name in LATEST:
            read = read.join(marks.select(["response_id"]), "response_id", join_type="left anti")
        return read

    counts = {name: table_of(name).num_rows for name in want.counts}
    latest = table_of("latest_outputs", ["job_id", "response_id", "doi", "score"])
    latest = latest.sort_by([("score", "descending"), ("job_id", "ascending")]).slice(0, TOP)
    top = [tuple(row.values()) for row in latest.to_pylist()]
    sources = (
        table_of("mentions", ["source", "response_id"])
        .group_by("source")
        .aggregate([([], "count_all")])
    )
    per_source = dict(zip(*sources.to_pydict().values(), strict=True))
    month = want.in_month[0]
    outputs = pyarrow.dataset.dataset(root / "outputs", format="parquet", partitioning="hive")
    in_month = outputs.count_rows(filter=pyarrow.dataset.field("fetched_month") == month)
    return Expected(root, counts, top, per_source, (month, in_month))


def test_pyarrow_dataset_reads_what_harvester_query_reads(datasets: list[Expected]) -> None:
    check(pyarrow_reads, datasets)


# -- Spark, local mode ----------------------------------------------------------------------


def java_runtime() -> str | None:
    """Why Spark cannot run here, or None: pyspark and a Java runtime are needed."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'altmetric-harvester[spark]')"
    home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=os.path.join(home, "bin")) if home else None
    java = java or shutil.which("java")
    if java is None:
        return "no Java runtime (java on PATH or under $JAVA_HOME) for Spark"
    probe = subprocess.run([java, "-version"], capture_output=True, timeout=60, check=False)
    return None if probe.returncode == 0 else f"{java} -version fails: no usable Java runtime"


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    missing = java_runtime()
    if missing is not None:
        pytest.skip(missing)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("altmetric-harvester tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    yield session
    session.stop()


def spark_reads(spark: Any, want: Expected) -> Expected:
    from pyspark.sql import functions

    root = want.directory
    marks = spark.read.parquet(str(root / "superseded")).select("response_id")

    def frame(table: str) -> Any:
        read = spark.read.parquet(str(root / table))
        return read.join(marks, "response_id", "left_anti") if table in LATEST else read

    counts = {table: frame(table).count() for table in want.counts}
    latest = frame("latest_outputs").orderBy(functions.desc("score"), "job_id").limit(TOP)
    top = [tuple(row) for row in latest.select("job_id", "response_id", "doi", "score").collect()]
    per_source = {
        row["source"]: row["count"] for row in frame("mentions").groupBy("source").count().collect()
    }
    month = want.in_month[0]
    in_month = frame("outputs").where(functions.col("fetched_month") == month).count()
    return Expected(root, counts, top, per_source, (month, in_month))


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_reads_what_harvester_query_reads(spark: Any, datasets: list[Expected]) -> None:
    check(lambda want: spark_reads(spark, want), datasets)
