"""Fixtures any test may use: stores in a temporary directory, the simulator, stores
harvested from it, a mocked API and systemd's end of the notify socket. The functions
behind them, and everything else the tests share, are in helpers.py."""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses
from helpers import KEY, NotifyListener, harvest_from_simulator, harvest_store
from yarl import URL

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


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.9 builds responses without aiohttp 3.14's new `stream_writer`
    argument (pnuckowski/aioresponses#289); supply a finished writer so it works on
    both sides of that change."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters


@pytest.fixture
def mock_api() -> Iterator[aioresponses]:
    """aioresponses, with every mocked answer built by the compatible response class."""
    with aioresponses() as mocked:
        add = mocked.add

        def add_compatible(url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("response_class", _CompatResponse)
            add(url, method, *args, **kwargs)

        mocked.add = add_compatible  # type: ignore[method-assign]
        yield mocked
