"""`export` never writes over the store and never leaves a truncated file; on a
terminal (a real pseudo-terminal) it works and shows its progress."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli_env, harvester, run_on_a_terminal
from harvested import copy_store, harvest_store


@pytest.fixture(scope="module")
def harvested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harvest_store(tmp_path_factory.mktemp("harvested"))


@pytest.fixture
def db(harvested: Path, tmp_path: Path) -> Path:
    return copy_store(harvested, tmp_path)


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in `directory` with the sha256 of its bytes (but SQLite's `-shm`,
    the shared-memory index any reader may create and rewrite)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.is_symlink() and not path.name.endswith("-shm")
    }


EXPORT_FORMS = [
    ("--format", "jsonl"),
    ("--format", "csv"),
    ("--format", "jsonl", "--table", "outputs"),
    ("--format", "csv", "--table", "mentions"),
    ("--format", "parquet", "--table", "jobs"),
]


def protected_names(db: Path) -> dict[str, Path]:
    """Ways to name the store's files: directly, through links, with `..`."""
    directory = db.parent
    (directory / "sub").mkdir(exist_ok=True)
    names = {
        "store": db,
        "wal": db.with_name(db.name + "-wal"),
        "shm": db.with_name(db.name + "-shm"),
        "journal": db.with_name(db.name + "-journal"),
        "lock": db.with_name(db.name + ".lock"),
        "dotdot": directory / "sub" / ".." / db.name,
        "symlink": directory / "link-to-store.db",
        "symlink-to-absent-wal": directory / "link-to-wal",
        "hardlink": directory / "hardlink.db",
    }
    names["symlink"].symlink_to(db)
    names["symlink-to-absent-wal"].symlink_to(names["wal"])
    os.link(db, names["hardlink"])
    return names


@pytest.mark.parametrize("form", EXPORT_FORMS, ids=lambda form: "-".join(form[1::2]))
def test_export_refuses_every_name_of_the_store(db: Path, form: tuple[str, ...]) -> None:
    names = protected_names(db)
    before = fingerprint(db.parent)
    for label, target in names.items():
        result = harvester("--db", str(db), "export", *form, "--output", str(target))
        assert result.returncode == 1, (label, result.stderr)
        assert "choose another file name" in result.stderr, (label, result.stderr)
        assert "Traceback" not in result.stderr
        assert fingerprint(db.parent) == before, label
    assert harvester("--db", str(db), "verify").returncode == 0


def test_refused_through_a_symlinked_store_path(db: Path) -> None:
    """The store named through a link (`--db link`) is protected under its real name."""
    link = db.parent / "store-link.db"
    link.symlink_to(db)
    before = fingerprint(db.parent)
    result = harvester("--db", str(link), "export", "--format", "jsonl", "--output", str(db))
    assert result.returncode == 1 and "choose another file name" in result.stderr
    assert fingerprint(db.parent) == before


FAILS_AFTER_FIVE_ROWS = "CASE WHEN id > 5 THEN abs(-9223372036854775807 - 1) ELSE 1 END"


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "parquet"])
def test_a_failing_export_leaves_the_previous_file_whole(db: Path, output_format: str) -> None:
    target = db.parent / f"jobs.{output_format}"
    good = harvester(
        "--db", str(db), "export", "--format", output_format, "--table", "jobs",
        "--output", str(target),
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    previous = target.read_bytes()
    assert previous
    before = fingerprint(db.parent)

    failed = harvester(
        "--db", str(db), "export", "--format", output_format, "--table", "jobs",
        "--where", FAILS_AFTER_FIVE_ROWS, "--output", str(target),
    )  # fmt: skip
    assert failed.returncode == 1
    assert "overflow" in failed.stderr
    assert target.read_bytes() == previous
    assert fingerprint(db.parent) == before  # no partial file left beside it


def test_a_full_disk_mid_export_leaves_no_partial_file(db: Path) -> None:
    """Writes fail half-way (a file size limit stands in for a full disk): the old
    export stays whole and nothing half-written is left beside it."""
    target = db.parent / "bodies.jsonl"
    target.write_text("an earlier export\n")
    before = fingerprint(db.parent)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    result = subprocess.run(
        [sys.executable, "-m", "harvester", "--db", str(db), "export", "--format", "jsonl",
         "--table", "bodies", "--output", str(target)],
        env=cli_env(), capture_output=True, text=True, preexec_fn=limit_file_size, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(db.parent) == before


def test_output_to_a_device_is_written_not_replaced(db: Path) -> None:
    result = harvester("--db", str(db), "export", "--format", "jsonl", "--output", os.devnull)
    assert result.returncode == 0, result.stderr
    assert Path(os.devnull).is_char_device()


def test_an_export_keeps_the_mode_a_plain_file_would_have(db: Path) -> None:
    target = db.parent / "jobs.csv"
    result = harvester("--db", str(db), "export", "--format", "csv", "--output", str(target))
    assert result.returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("output_format", ["csv", "jsonl", "parquet"])
def test_export_table_works_on_a_terminal(db: Path, output_format: str) -> None:
    target = db.parent / f"outputs.{output_format}"
    code, shown = run_on_a_terminal(
        "--db", str(db), "export", "--format", output_format, "--table", "outputs",
        "--where", "score >= 0", "--output", str(target),
    )  # fmt: skip
    assert code == 0, shown
    assert "not authorized" not in shown
    assert "exported 40 rows of outputs" in shown
    assert "[" in shown and "/40" in shown  # the progress bar, with the row count
    assert target.stat().st_size > 0
