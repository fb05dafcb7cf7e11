"""Fixtures any test may use: stores in a temporary directory, the simulator, stores
harvested from it and systemd's end of the notify socket. The functions
behind them, and everything else the tests share, are in helpers.py."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from helpers import KEY, NotifyListener, harvest_from_simulator, harvest_store

from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store


def close_datasettes_probes() -> None:
    """Datasette 0.65 probes SQLite through connections it never closes: JSON1 when
    `datasette.filters` is imported and on every table page (`datasette.facets`), and
    its version once. Python 3.13 reports each as a ResourceWarning (an error here) when
    the garbage collector gets to it, in whatever test runs then. The same probes on
    connections that are closed, in place before any datasette module copies them
    (datasette 1.0 closes its own)."""
    try:
        import datasette.utils
        import datasette.utils.sqlite
    except ImportError:
        return
    assert "datasette.filters" not in sys.modules, "imported before its probes were closed"
    leaky = datasette.utils.detect_json1

    def detect_json1(conn: sqlite3.Connection | None = None) -> bool:
        if conn is not None:
            return bool(leaky(conn))
        with contextlib.closing(datasette.utils.sqlite.sqlite3.connect(":memory:")) as probe:
            return bool(leaky(probe))

    datasette.utils.detect_json1 = detect_json1
    version = datasette.utils.sqlite.sqlite3.sqlite_version
    datasette.utils.sqlite._cached_sqlite_version = tuple(map(int, version.split(".")))


close_datasettes_probes()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """The bundled simulator on loopback, answering to `KEY`."""
    async with Simulator(SimulatorSettings(key=KEY)) as running:
        yield running


@pytest.fixture
async def harvested(db_path: Path) -> Path:
    """The store at `db_path`, 40 outputs harvested into it from the simulator."""
    await harvest_from_simulator(db_path, 40)
    return db_path


@pytest.fixture(scope="session")
def harvested_by_cli(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Stores of `count` outputs harvested by the real CLI (`helpers.harvest_store`),
    each size built once a session: take a copy (`helpers.copy_store`) to change one."""
    built: dict[int, Path] = {}

    def harvested_store(count: int) -> Path:
        if count not in built:
            built[count] = harvest_store(tmp_path_factory.mktemp(f"harvested{count}"), count)
        return built[count]

    return harvested_store


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths hold at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def listener(short_dir: Path) -> AsyncIterator[NotifyListener]:
    """systemd's end of $NOTIFY_SOCKET, listening at `short_dir/notify`."""
    opened = NotifyListener(short_dir / "notify")
    async with opened:
        yield opened
    opened.close()
