"""Fixtures any test may use: stores in a temporary directory, the simulator, stores
harvested from it and systemd's end of the notify socket. The functions
behind them, and everything else the tests share, are in helpers.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from helpers import KEY, NotifyListener, harvest_from_simulator, harvest_store

from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store


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
