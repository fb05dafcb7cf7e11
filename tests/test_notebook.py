"""The notebook API (`harvester.open_store`) and the README's "In a notebook" snippets.

The API is tested on a store harvested by the real CLI: rows as dicts, DataFrames and
Arrow tables, every write refused, no store made from a mistyped path, and the extra
named when pandas or pyarrow is missing. Each snippet of the README's section runs as
printed, in a directory holding that store as `altmetric.db`, and what it prints is
checked against the store. DuckDB's sqlite extension and R run where they are
installed, and are skipped, with the reason, where they are not.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import ROOT, cli_env, harvester, rows

import harvester as package
from harvester.errors import QueryError, StoreError
from harvester.notebook import EXTRA, MissingExtra, StoreReader, open_store
from harvester.store import wide

# -- the API -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_dir(
    harvested_by_cli: Callable[[int], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A directory holding a harvested store as `altmetric.db`, the README's name."""
    directory = tmp_path_factory.mktemp("notebook")
    source = harvested_by_cli(40)
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", directory / f"altmetric.db{suffix}")
    return directory


@pytest.fixture
def reader(store_dir: Path) -> Iterator[StoreReader]:
    with open_store(store_dir / "altmetric.db") as opened:
        yield opened


def test_harvester_open_store_is_the_notebooks_and_import_harvester_stays_cheap() -> None:
    assert package.open_store is open_store
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, harvester; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heavy in ("harvester.notebook", "harvester.store", "pandas", "pyarrow", "sqlite3"):
        assert f"'{heavy}'" not in imported
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = package.nothing


def test_query_gives_rows_as_dicts_with_parameters(reader: StoreReader, store_dir: Path) -> None:
    db = store_dir / "altmetric.db"
    [(doi,)] = rows(db, "SELECT doi FROM latest_outputs ORDER BY response_id LIMIT 1")
    found = reader.query("SELECT doi, twitter_posts FROM outputs_wide WHERE doi = ?", (doi,))
    expected = rows(db, f"SELECT twitter_posts FROM outputs_wide WHERE doi = '{doi}'")[0][0]
    assert found == [{"doi": doi, "twitter_posts": expected}]
    named = reader.query("SELECT count(*) AS n FROM jobs WHERE state = :state", {"state": "done"})
    assert named == [{"n": rows(db, "SELECT count(*) FROM jobs WHERE state = 'done'")[0][0]}]
    with pytest.raises(QueryError, match="uses 1, and there are 0"):
        reader.query("SELECT ?")


def test_tables_are_the_tables_and_views_a_query_can_read(reader: StoreReader) -> None:
    tables = reader.tables()
    assert {"outputs_wide", "latest_outputs", "outputs", "counts", "jobs", "mentions"} <= set(
        tables
    )
    assert not [name for name in tables if name.startswith(("sqlite_", "_sqlite_"))]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DELETE FROM jobs", "would write"),
        ("UPDATE outputs SET score = 0", "would write"),
        ("DROP VIEW outputs_wide", "would write"),
        ("CREATE TEMP TABLE scratch (x)", "read-only"),
        ("PRAGMA query_only = OFF", "PRAGMA query_only with a value is refused"),
        ("ATTACH 'elsewhere.db' AS elsewhere", "ATTACH is refused"),
        ("SELECT 1; DELETE FROM jobs", "one statement"),
    ],
)
def test_a_notebook_can_never_write(
    reader: StoreReader, store_dir: Path, sql: str, reason: str
) -> None:
    before = rows(store_dir / "altmetric.db", "SELECT count(*) FROM jobs")
    with pytest.raises(QueryError, match=reason):
        reader.query(sql)
    assert reader.query("SELECT count(*) AS n FROM jobs") == [{"n": before[0][0]}]
    assert not (store_dir / "elsewhere.db").exists()


def test_a_missing_store_is_an_error_never_a_new_file(tmp_path: Path) -> None:
    missing = tmp_path / "altmetirc.db"
    with pytest.raises(StoreError, match="no store at"):
        package.open_store(missing)
    assert not missing.exists()
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)


def test_to_pandas_and_to_arrow_take_a_table_or_a_query(
    reader: StoreReader, store_dir: Path
) -> None:
    db = store_dir / "altmetric.db"
    [(outputs,)] = rows(db, "SELECT count(*) FROM latest_outputs")
    frame = reader.to_pandas("outputs_wide")
    assert frame.shape == (outputs, len(wide.COLUMNS))
    assert tuple(frame.columns) == wide.COLUMNS
    [(tweets,)] = rows(db, "SELECT sum(twitter_posts) FROM outputs_wide")
    assert frame.twitter_posts.sum() == tweets

    table = reader.to_arrow("outputs_wide")
    assert (table.num_rows, tuple(table.column_names)) == (outputs, wide.COLUMNS)
    assert table.schema.field("twitter_posts").type == pa.int64()
    assert table.schema.field("score_pct_all").type == pa.float64()

    some = reader.to_arrow("SELECT doi, score FROM outputs_wide WHERE score > ?", (1,))
    assert some.num_rows == rows(db, "SELECT count(*) FROM outputs_wide WHERE score > 1")[0][0]
    assert reader.to_pandas("SELECT doi FROM outputs_wide WHERE score > ?", (1,)).shape == (
        some.num_rows,
        1,
    )


def test_a_column_of_mixed_types_comes_to_arrow_as_text(reader: StoreReader) -> None:
    table = reader.to_arrow("SELECT 1 AS x UNION ALL SELECT 'a' UNION ALL SELECT NULL")
    assert table.schema.field("x").type == pa.string()
    assert table.column("x").to_pylist() == ["1", "a", None]


@pytest.mark.parametrize(("library", "method"), [("pandas", "to_pandas"), ("pyarrow", "to_arrow")])
def test_without_the_extra_the_error_names_it(
    reader: StoreReader, monkeypatch: pytest.MonkeyPatch, library: str, method: str
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # `import` raises ImportError
    with pytest.raises(MissingExtra) as raised:
        getattr(reader, method)("outputs_wide")
    assert isinstance(raised.value, ImportError)
    assert str(raised.value) == f"{method}() needs {library}: {EXTRA}"
    assert "pip install 'altmetric-harvester[notebook]'" in str(raised.value)
    assert reader.query("SELECT count(*) AS n FROM jobs")  # query() needs neither


def test_a_closed_reader_says_so(store_dir: Path) -> None:
    with open_store(store_dir / "altmetric.db") as reader:
        assert repr(reader) == f"StoreReader({str(store_dir / 'altmetric.db')!r})"
    with pytest.raises(QueryError, match="closed"):
        reader.query("SELECT 1")


# -- the README's snippets ------------------------------------------------------------------


def readme_snippets() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the README's "In a notebook" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### In a notebook\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)


def snippet(marker: str) -> str:
    """The block whose first line is the comment `# marker`."""
    [code] = [code for _, code in readme_snippets() if code.startswith(f"# {marker}\n")]
    return code


def run_python(code: str, directory: Path) -> str:
    ran = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        cwd=directory,
        env=cli_env(),
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_the_section_has_each_snippet() -> None:
    languages = [language for language, _ in readme_snippets()]
    assert languages.count("python") == 5
    assert languages.count("sh") == 1
    assert languages.count("r") == 1


def test_the_python_api_snippet(store_dir: Path) -> None:
    out = run_python(snippet("The Python API"), store_dir).splitlines()
    assert "'outputs_wide'" in out[0]
    top = rows(
        store_dir / "altmetric.db",
        "SELECT doi, score, twitter_posts FROM outputs_wide ORDER BY score DESC LIMIT 5",
    )
    assert out[1:] == [" ".join(str(value) for value in row) for row in top]


def test_the_pandas_snippet(store_dir: Path) -> None:
    out = run_python(snippet("pandas"), store_dir)
    [(outputs,)] = rows(store_dir / "altmetric.db", "SELECT count(*) FROM outputs_wide")
    assert out.startswith(f"({outputs}, {len(wide.COLUMNS)})\n")
    assert "mendeley_readers" in out


def journal_sums(db: Path, column: str) -> list[tuple[str, int]]:
    return rows(
        db,
        f"SELECT journal, sum({column}) FROM outputs_wide WHERE journal IS NOT NULL"
        " GROUP BY journal",
    )


def test_the_polars_snippet(store_dir: Path) -> None:
    out = run_python(snippet("polars"), store_dir)
    assert "twitter_posts" in out
    for journal, tweets in journal_sums(store_dir / "altmetric.db", "twitter_posts"):
        [line] = [line for line in out.splitlines() if f" {journal} " in line]
        assert f" {tweets} " in line


def test_the_parquet_export_and_the_duckdb_snippet(store_dir: Path) -> None:
    [command] = [code for language, code in readme_snippets() if language == "sh"]
    program, *args = shlex.split(command)
    assert program == "harvester"
    exported = harvester(*args, cwd=store_dir)
    assert exported.returncode == 0, exported.stderr
    assert (store_dir / "wide.parquet").exists()

    out = run_python(snippet("DuckDB: the Parquet export"), store_dir)
    assert re.search(r"journal .* outputs .* tweets .* readers", out)
    for journal, tweets in journal_sums(store_dir / "altmetric.db", "twitter_posts"):
        [line] = [line for line in out.splitlines() if f" {journal} " in line]
        assert f" {tweets} " in line


def test_the_duckdb_sqlite_snippet(store_dir: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import duckdb; duckdb.connect().install_extension('sqlite')"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        said = probe.stderr.strip().splitlines() or ["no reason given"]
        reason = next((line for line in said if "Error" in line), said[-1])
        pytest.skip(f"DuckDB's sqlite extension cannot be installed here: {reason}")
    out = run_python(snippet("DuckDB: the SQLite file"), store_dir)
    [(outputs,)] = rows(store_dir / "altmetric.db", "SELECT count(*) FROM outputs_wide")
    assert out.strip() == f"({outputs},)"


def test_the_r_snippet(store_dir: Path) -> None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed here (no Rscript on PATH)")
    probe = subprocess.run(
        [rscript, "-e", "library(DBI); library(RSQLite)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"R's DBI or RSQLite is not installed here: {probe.stderr.strip()}")
    script = store_dir / "snippet.R"
    script.write_text(snippet("R (RSQLite)"))
    ran = subprocess.run(
        [rscript, str(script)], capture_output=True, text=True, cwd=store_dir, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    [(outputs,)] = rows(store_dir / "altmetric.db", "SELECT count(*) FROM outputs_wide")
    assert re.search(rf"\[1\] +{outputs} +{len(wide.COLUMNS)}\n", ran.stdout), ran.stdout
