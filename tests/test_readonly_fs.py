"""Read-only is not broken: every reading command, `serve` and `harvester.open_store`
read a store on a read-only filesystem or in a read-only directory, where SQLite cannot
make the `-shm` a `mode=ro` reader needs, by reading it as an immutable file, and say
so once. Never while a writer may be at work: a `-wal` and `-shm` there are read
through, and a log that cannot be read is refused, never ignored.

Root ignores chmod, so read-only is made here as users meet it: a tmpfs remounted
read-only, and a read-only bind mount. Where mounting is not allowed, the tests are
skipped and say why.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from helpers import HARVESTER, cli_env, copy_store, harvester

from harvester.errors import StoreError
from harvester.notebook import open_store
from harvester.store import Store
from harvester.store.home import HOME_KEY

MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"
NOTICE = "as an immutable file: its directory is read-only, so nothing can be writing it"

# A writer through the name it is given (no harvester, so no home name), until killed.
WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.executemany(
    "INSERT INTO jobs (id_type, identifier, next_attempt_at, created_at, updated_at)"
    " VALUES ('doi', ?, '', '', '')",
    [(f"10.9999/in.the.log.{n}",) for n in range(25)],
)
print("written", flush=True)
time.sleep(600)
"""


def mount(*args: str) -> None:
    done = subprocess.run([MOUNT, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args[:2])} is not allowed here: {done.stderr.strip()}")


def unmount(target: Path) -> None:
    if subprocess.run([UMOUNT, str(target)], capture_output=True, check=False).returncode:
        subprocess.run([UMOUNT, "-l", str(target)], capture_output=True, check=False)


MakeReadOnly = Callable[[Callable[[Path], None]], Path]


@pytest.fixture(params=["tmpfs remounted ro", "bind mount ro"])
def read_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeReadOnly]:
    """`read_only(fill)`: a directory that `fill(directory)` fills while it is
    writable, then made read-only: a tmpfs remounted `ro`, or a read-only bind mount
    of a directory that stays writable underneath. Unmounted at the end."""
    target = tmp_path / "ro"
    target.mkdir()
    mounted: list[Path] = []

    def make(fill: Callable[[Path], None]) -> Path:
        if request.param == "tmpfs remounted ro":
            mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target))
            mounted.append(target)
            fill(target)
            mount("-o", "remount,ro", str(target))
        else:
            source = tmp_path / "rw"
            source.mkdir()
            fill(source)
            mount("--bind", str(source), str(target))
            mounted.append(target)
            mount("-o", "remount,bind,ro", str(target))
        return target

    try:
        yield make
    finally:
        for path in mounted:
            unmount(path)


@pytest.fixture
def harvested_ro(harvested_by_cli: Callable[[int], Path], read_only: MakeReadOnly) -> Path:
    """A store of 40 harvested outputs, closed (no `-wal`, no `-shm`), read-only."""
    source = harvested_by_cli(40)
    directory = read_only(lambda writable: copy_store(source, writable).touch())
    return directory / source.name


def test_every_reading_command_reads_a_store_on_a_read_only_filesystem(
    harvested_ro: Path,
) -> None:
    db = str(harvested_ro)
    commands = {
        "status": ("status", "--json"),
        "show": ("show", "doi", "10.1000/harvested.7", "--json"),
        "query": ("query", "SELECT count(*) AS n FROM responses", "--format", "json"),
        "export": ("export", "--format", "jsonl", "--table", "jobs"),
        "verify": ("verify",),
    }
    results = {name: harvester("--db", db, *args) for name, args in commands.items()}
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert result.stderr.count(f"reading {db} {NOTICE}") == 1, (name, result.stderr)
        assert "check the path and its permissions" not in result.stderr
    assert json.loads(results["status"].stdout)["jobs"]["done"] == 40
    assert json.loads(results["show"].stdout)["identifier"] == "10.1000/harvested.7"
    assert json.loads(results["query"].stdout) == [{"n": 40}]
    assert len(results["export"].stdout.splitlines()) == 40
    assert not Path(f"{harvested_ro}-shm").exists()  # SQLite needed none


def test_a_writing_command_still_says_it_cannot_write(harvested_ro: Path) -> None:
    refused = harvester("--db", str(harvested_ro), "enqueue", stdin="10.1000/new\n")
    assert refused.returncode == 1
    assert "immutable" not in refused.stderr  # a writer is never given an immutable file


def test_the_notebook_reads_it_and_says_so_once(
    harvested_ro: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        with open_store(harvested_ro) as store:
            assert store.immutable
            assert store.query("SELECT count(*) AS n FROM outputs_wide") == [{"n": 40}]
    assert capfd.readouterr().err.count(NOTICE) == 1


def test_serve_serves_it_as_one_of_datasettes_immutable_files(
    harvested_ro: Path, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [*HARVESTER, "--db", str(harvested_ro), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env({"XDG_CACHE_HOME": str(tmp_path / "cache")}),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " read-only on http://" in line, process.communicate(timeout=30)
        assert "(an immutable file (its directory is read-only); Ctrl-C stops)" in line
        url = line.split(" on ")[1].split()[0]
        query = f"{url}harvested/harvest-progress.json?_shape=array"
        with urllib.request.urlopen(query, timeout=30) as answer:  # noqa: S310 (loopback)
            assert json.load(answer) == [{"state": "done", "count(*)": 40}]
        with urllib.request.urlopen(f"{url}-/databases.json", timeout=30) as answer:  # noqa: S310
            assert [db["is_mutable"] for db in json.load(answer)] == [False]
        first = f"{url}harvested/latest_outputs.json?_shape=array&_size=1&_col=title"
        with urllib.request.urlopen(first, timeout=30) as answer:  # noqa: S310
            [title] = [row["title"] for row in json.load(answer)]
        word = max(re.findall(r"[A-Za-z]+", title), key=len)
        search = f"{url}harvested/latest_outputs.json?_search={word}&_shape=array&_col=title"
        with urllib.request.urlopen(search, timeout=30) as answer:  # noqa: S310
            assert title in [row["title"] for row in json.load(answer)]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err.count(NOTICE) == 1
    assert "search: indexed 40 of 40 outputs" in err


# -- never immutable while a writer may be at work ----------------------------------------


def homeless_store(db: Path) -> None:
    """A new store with no home name, as if copied from elsewhere: no name of it is
    preferred, so it is read by the name given (read-only here)."""
    with Store(db) as store:
        store.state.forget(HOME_KEY)


def killed_writer(db: Path) -> None:
    """Writes in `db`-wal, then killed: a `-wal` with changes and a `-shm` left."""
    homeless_store(db)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"written\n"
    finally:
        writer.kill()
        writer.communicate(timeout=30)


def test_a_log_and_its_index_are_read_through_not_ignored(read_only: MakeReadOnly) -> None:
    directory = read_only(lambda writable: killed_writer(writable / "store.db"))
    db = directory / "store.db"
    found = harvester("--db", str(db), "query", "SELECT count(*) FROM jobs", "--format", "csv")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[1:] == ["25"]  # the log's rows: read through it
    assert "immutable" not in found.stderr


def test_a_log_that_cannot_be_read_is_refused_not_ignored(read_only: MakeReadOnly) -> None:
    def fill(writable: Path) -> None:
        killed_writer(writable / "store.db")
        (writable / "store.db-shm").unlink()

    db = read_only(fill) / "store.db"
    refused = harvester("--db", str(db), "status")
    assert refused.returncode == 1
    assert f"{db}: its -wal holds changes that need a -shm this read-only directory" in (
        refused.stderr
    )
    with pytest.raises(StoreError, match="its -wal holds changes"):
        Store(db, read_only=True)


def test_a_writer_at_work_under_a_read_only_view_is_read_live(tmp_path: Path) -> None:
    """A read-only bind mount of a directory where a writer is at work: its `-wal` and
    `-shm` are there, so readers go through them and see every commit at once."""
    source, view = tmp_path / "rw", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    homeless_store(source / "store.db")
    mount("--bind", str(source), str(view))
    try:
        mount("-o", "remount,bind,ro", str(view))
        with closing(sqlite3.connect(source / "store.db", isolation_level=None)) as writer:
            for n in range(3):
                writer.execute(
                    "INSERT INTO jobs (id_type, identifier, next_attempt_at, created_at,"
                    " updated_at) VALUES ('doi', ?, '', '', '')",
                    (f"10.9999/live.{n}",),
                )
                seen = harvester(
                    "--db", str(view / "store.db"), "query", "SELECT count(*) AS n FROM jobs",
                    "--format", "csv",
                )  # fmt: skip
                assert seen.returncode == 0, seen.stderr
                assert seen.stdout.split() == ["n", str(n + 1)]
                assert "immutable" not in seen.stderr
    finally:
        unmount(view)
