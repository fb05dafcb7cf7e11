"""Messages keep what matters (issue 24): a list the user must choose from is printed
whole, on lines of its own when long; a cut takes only the middle of a long value the
user gave, never the words that answer the question. The real CLI, as a process."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import harvester, rows

from harvester.identifiers import TYPE_NAMES


def store(tmp_path: Path) -> Path:
    db = tmp_path / "m.db"
    assert harvester("--db", str(db), "enqueue", stdin="10.1000/a\n").returncode == 0
    return db


def words_listed(stderr: str) -> set[str]:
    return set(re.findall(r"[a-z_]+", stderr.split("there are:")[1]))


def test_an_unknown_table_is_answered_with_every_table_name(tmp_path: Path) -> None:
    db = store(tmp_path)
    names = {
        name
        for (name,) in rows(db, "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        if not name.startswith(("sqlite_", "_sqlite_"))
    }
    result = harvester("--db", str(db), "export", "--format", "csv", "--table", "nope")
    assert result.returncode == 1
    assert "no table or view 'nope' in the store; there are:" in result.stderr
    assert words_listed(result.stderr) == names
    assert "…" not in result.stderr
    assert max(len(line) for line in result.stderr.splitlines()) <= 100


def test_a_long_value_is_cut_but_the_list_after_it_is_whole(tmp_path: Path) -> None:
    db = store(tmp_path)
    long_name = "t" * 500
    result = harvester("--db", str(db), "export", "--format", "csv", "--table", long_name)
    assert result.returncode == 1
    first, *listed = result.stderr.splitlines()
    assert "…" in first and len(first) <= 200 and first.endswith("there are:")
    assert {"jobs", "outputs", "outputs_wide", "zstd_dictionaries"} <= words_listed(result.stderr)
    assert all("…" not in line for line in listed)


def test_an_unknown_type_lists_every_type() -> None:
    result = harvester("show", "nope", "x")
    assert result.returncode == 1
    listed = set(re.findall(r"[a-z_]+", result.stderr.split("known types:")[1]))
    assert listed == set(TYPE_NAMES) and "…" not in result.stderr


def test_a_path_of_normal_length_is_never_cut(tmp_path: Path) -> None:
    deep = "a-directory-with-a-long-name-of-its-own/and-another-long-one-below-it/s.db"
    result = harvester("--db", deep, "status", cwd=tmp_path)
    assert result.returncode == 1 and deep in result.stderr and "…" not in result.stderr
