"""One store, one writer, by any path (`store.home`): a hard link, a symlink, a relative
path and a bind mount of a store all open it by one name, its home, so every process
meets the same log, the same SQLite locks and the same daemon lock; a log another name
left behind is never replayed.

A process of an earlier version, or any other SQLite program, writing through a hard
link is played by a few lines of raw SQLite killed with SIGKILL: what it leaves is the
stale `-wal` that once shrank a store from 21 MB to 1 MB.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    KEY,
    copy_store,
    daemon_config,
    harvester,
    harvester_async,
    rows,
    run_main,
    start_harvester,
)

from harvester.errors import DaemonLockError, StoreError
from harvester.sim.server import Simulator
from harvester.store import Store
from harvester.store.home import HOME_KEY, StoreHome, read_home
from harvester.store.lock import daemon_lock

# Another program writing through the name it is given, with no checkpoint, until killed.
FOREIGN_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")  # what it writes stays in its log
for n in range(20):
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO jobs (id_type, identifier, next_attempt_at, created_at, updated_at)"
        " VALUES ('doi', ?, '', '', '')",
        [(f"10.9999/foreign.{n}.{i}",) for i in range(50)],
    )
    conn.execute("COMMIT")
print("written", flush=True)
time.sleep(600)
"""


MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"


def responses_and_integrity(db: Path) -> tuple[int, str]:
    [(count,)] = rows(db, "SELECT count(*) FROM responses")
    [(verdict,)] = rows(db, "PRAGMA integrity_check")
    return count, verdict


def has_log(name: Path) -> bool:
    return Path(f"{name}-wal").exists()


async def harvesting(db: Path, *, responses: int) -> None:
    """Until the store holds `responses` answers: a daemon is at work."""
    deadline = time.monotonic() + 60
    while rows(db, "SELECT count(*) FROM responses")[0][0] < responses:
        assert time.monotonic() < deadline, "the daemon stored nothing"
        await asyncio.sleep(0.1)


def leave_a_stale_log(name: Path) -> None:
    """A writer through `name`, killed (SIGKILL) with its writes still in `name`-wal."""
    writer = subprocess.Popen(
        [sys.executable, "-c", FOREIGN_WRITER, str(name)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
        if writer.stdout is not None:
            writer.stdout.close()
    assert Path(f"{name}-wal").stat().st_size > 0


@pytest.fixture
def harvested_copy(harvested_by_cli: Callable[[int], Path], tmp_path: Path) -> Path:
    """A store of 40 harvested outputs, in `tmp_path` as `store.db`, its home recorded
    there (by the first command that writes it)."""
    copy = copy_store(harvested_by_cli(40), tmp_path)
    db = copy.rename(tmp_path / "store.db")
    assert harvester("--db", str(db), "retry").returncode == 0
    assert read_home(db.resolve()) is not None
    return db


# -- every name reaches the home ----------------------------------------------------------


def test_a_new_store_records_its_home_in_the_file_itself(tmp_path: Path) -> None:
    with Store(tmp_path / "store.db") as store:
        assert store.opened_as == (tmp_path / "store.db").resolve()
    home = read_home((tmp_path / "store.db").resolve())  # the main file alone, no log
    assert home is not None and home.path == str((tmp_path / "store.db").resolve())


def test_every_name_of_a_store_opens_it_by_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "a" / "store.db"
    home.parent.mkdir()
    Store(home).close()
    (tmp_path / "b").mkdir()
    hard = tmp_path / "b" / "other.db"
    os.link(home, hard)
    (tmp_path / "link.db").symlink_to(hard)
    monkeypatch.chdir(tmp_path / "b")
    for name in (home, hard, tmp_path / "link.db", Path("other.db"), Path("../a/store.db")):
        with Store(name) as store:
            assert store.opened_as == home.resolve()
            store.jobs.add([])
            store.state.save({"probe": f'"{name}"'})
    assert not has_log(hard) and not Path(f"{hard}-shm").exists()
    err = capfd.readouterr().err
    assert err.count(f"opening other.db by its home name {home.resolve()} (the same file)") == 1


def test_a_copy_becomes_a_store_of_its_own(tmp_path: Path) -> None:
    Store(tmp_path / "store.db").close()
    copy = (tmp_path / "copy.db").resolve()
    shutil.copy(tmp_path / "store.db", copy)
    with Store(copy, read_only=True) as reader:  # a reader records nothing
        assert reader.opened_as == copy
    assert read_home(copy) == StoreHome(str((tmp_path / "store.db").resolve()))
    with Store(copy) as writer:
        assert writer.opened_as == copy
    assert read_home(copy) == StoreHome(str(copy))


# -- one lock ------------------------------------------------------------------------------


def test_a_hard_link_a_symlink_and_a_relative_path_meet_the_daemon_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "store.db"
    Store(home).close()
    (tmp_path / "elsewhere").mkdir()
    other = tmp_path / "elsewhere" / "other.db"
    os.link(home, other)
    (tmp_path / "link.db").symlink_to(other)
    monkeypatch.chdir(tmp_path / "elsewhere")
    with daemon_lock(home):
        for name in (Path("other.db"), tmp_path / "link.db", Path("../store.db")):
            with pytest.raises(DaemonLockError, match="already running"), daemon_lock(name):
                pass
    with daemon_lock(Path("other.db")):  # and the other way round
        with pytest.raises(DaemonLockError), daemon_lock(other):
            pass
        with pytest.raises(DaemonLockError), daemon_lock(home):
            pass
    assert not (tmp_path / "elsewhere" / "other.db.lock").exists()


def test_derive_rebuild_through_a_hard_link_meets_a_running_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "store.db"
    Store(home).close()
    os.link(home, tmp_path / "other.db")
    with daemon_lock(home):
        code, _, err = run_main(capsys, "--db", str(tmp_path / "other.db"), "derive", "--rebuild")
    assert code == 1
    assert "a daemon is running on this store: stop it before derive --rebuild" in err


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Callable[[Path, Path], None]]:
    """`mount(source, target)`: `mount --bind`, undone at the end; the test is skipped
    where mounting is not allowed (not root, or no CAP_SYS_ADMIN in a container)."""
    mounted: list[Path] = []

    def mount(source: Path, target: Path) -> None:
        done = subprocess.run(
            [MOUNT, "--bind", str(source), str(target)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"mount --bind is not allowed here: {done.stderr.strip()}")
        mounted.append(target)

    try:
        yield mount
    finally:
        for target in reversed(mounted):
            subprocess.run([UMOUNT, str(target)], check=False)


def test_a_bind_mount_meets_the_lock_and_the_log(
    tmp_path: Path, bind_mount: Callable[[Path, Path], None]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "file.db").touch()
    home = tmp_path / "a" / "store.db"
    Store(home).close()
    bind_mount(tmp_path / "a", tmp_path / "b")  # the directory: the same log files
    bind_mount(home, tmp_path / "file.db")  # the file alone: a log would go beside it
    with daemon_lock(home):
        for name in (tmp_path / "b" / "store.db", tmp_path / "file.db"):
            with pytest.raises(DaemonLockError, match="already running"), daemon_lock(name):
                pass
    with Store(tmp_path / "file.db") as store:
        assert store.opened_as == home
        store.state.save({"probe": '"through the file"'})
    assert not has_log(tmp_path / "file.db")
    with Store(tmp_path / "b" / "store.db") as store:
        assert store.state.load("probe") is not None


# -- two daemons, and a stale log ---------------------------------------------------------


async def test_a_second_daemon_through_a_hard_link_is_refused(
    harvested_copy: Path, simulator: Simulator, tmp_path: Path
) -> None:
    db = harvested_copy
    other = tmp_path / "elsewhere" / "other.db"
    other.parent.mkdir()
    os.link(db, other)
    ids = "".join(f"10.1000/linked.{n}\n" for n in range(3000))
    assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0
    config = daemon_config(tmp_path / "h.toml", simulator.base_url, rate=100, workers={})
    first = await start_harvester(
        "--config", str(config), "--db", str(db), "run", env={"ALTMETRIC_API_KEY": KEY}
    )
    try:
        await harvesting(db, responses=60)
        before = rows(db, "SELECT count(*) FROM responses")[0][0]
        code, _, err = await harvester_async(
            "--config", str(config), "--db", str(other), "run", env={"ALTMETRIC_API_KEY": KEY}
        )
        assert code == 1
        assert f"another harvester daemon is already running on {other}" in err
        assert f"opening {other} by its home name {db.resolve()}" in err
        assert rows(db, "SELECT count(*) FROM responses")[0][0] >= before
    finally:
        first.send_signal(signal.SIGTERM)
        _, first_err = await asyncio.wait_for(first.communicate(), timeout=60)
    assert first.returncode == 0, first_err.decode()
    count, verdict = responses_and_integrity(db)
    assert verdict == "ok" and count >= before
    [(done,)] = rows(db, "SELECT count(*) FROM jobs WHERE state IN ('done', 'not_found')")
    assert count == done  # one answer a finished job, none lost, none doubled
    assert not has_log(other)


def test_a_log_a_killed_writer_left_beside_a_hard_link_is_never_replayed(
    harvested_copy: Path, tmp_path: Path
) -> None:
    db = harvested_copy
    other = tmp_path / "other.db"
    os.link(db, other)
    responses, _ = responses_and_integrity(db)
    leave_a_stale_log(other)
    stale = Path(f"{other}-wal").read_bytes()
    ids = "".join(f"10.1000/after.{n}\n" for n in range(500))
    assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0
    assert not has_log(db)  # it ended with a checkpoint, as every run does
    later = harvester("--db", str(other), "enqueue", stdin="10.1000/through.other\n")
    assert later.returncode == 0, later.stderr
    assert f"opening {other} by its home name {db.resolve()}" in later.stderr
    assert f"{other}-wal is not this store's log (another program left it)" in later.stderr
    status = harvester("--db", str(other), "status", "--json")
    assert status.returncode == 0, status.stderr
    assert responses_and_integrity(db) == (responses, "ok")
    [(kept,)] = rows(db, "SELECT count(*) FROM jobs WHERE identifier LIKE '10.1000/after.%'")
    assert kept == 500
    assert rows(db, "SELECT count(*) FROM jobs WHERE identifier LIKE '10.9999/foreign%'") == [(0,)]
    assert Path(f"{other}-wal").read_bytes() == stale  # left as it was, unread


def test_with_no_home_recorded_a_hard_link_with_a_log_is_refused(
    harvested_copy: Path, tmp_path: Path
) -> None:
    """A store last written by an earlier version: no home; its other name's log could
    be that name's own, or stale, and nothing can tell which."""
    db = harvested_copy
    with Store(db) as store:
        store.state.forget(HOME_KEY)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other = tmp_path / "other.db"
    os.link(db, other)
    leave_a_stale_log(other)
    responses, _ = responses_and_integrity(db)
    for command in (("enqueue",), ("status",), ("run", "--drain")):
        refused = harvester(
            "--db", str(other), *command, stdin="10.1000/x\n", env={"ALTMETRIC_API_KEY": KEY}
        )
        assert refused.returncode == 1
        assert f"{other}: 2 hard links, no home name, and its -wal may be another" in (
            refused.stderr
        )
    assert responses_and_integrity(db) == (responses, "ok")
    done = harvester("--db", str(db), "enqueue", stdin="10.1000/y\n")  # the clean name works,
    assert done.returncode == 0, done.stderr  # and becomes the home
    assert harvester("--db", str(other), "status").returncode == 0
    assert responses_and_integrity(db) == (responses, "ok")


def test_a_store_moved_away_from_its_log_is_refused(harvested_copy: Path, tmp_path: Path) -> None:
    db = harvested_copy
    leave_a_stale_log(db)  # its own log this time: writes not yet in the file
    moved = db.rename(tmp_path / "moved.db")
    refused = harvester("--db", str(moved), "status")
    assert refused.returncode == 1
    assert f"the store was moved from {db.resolve()}, and its log is still there" in (
        refused.stderr
    )
    with pytest.raises(StoreError, match="was moved from"):
        Store(moved)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").rename(f"{moved}{suffix}")
    assert harvester("--db", str(moved), "status").returncode == 0
    [(foreign,)] = rows(moved, "SELECT count(*) FROM jobs WHERE identifier LIKE '10.9999/%'")
    assert foreign == 1000  # its writes were kept
