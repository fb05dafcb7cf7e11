"""The store's lock file: one daemon per store, however the store is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harvester.errors import DaemonLockError
from harvester.store import Store
from harvester.store.lock import daemon_lock


def test_a_second_daemon_is_refused_even_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    real.touch()
    (tmp_path / "link.db").symlink_to(real)
    with (
        daemon_lock(real),
        pytest.raises(DaemonLockError, match="already running"),
        daemon_lock(tmp_path / "link.db"),
    ):
        pass


def test_a_second_daemon_is_refused_through_a_hard_link_and_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock lies beside the store's home name (`store.home`), whatever name the
    store is given: a hard link in another directory meets it too."""
    home = tmp_path / "store.db"
    Store(home).close()
    (tmp_path / "other").mkdir()
    os.link(home, tmp_path / "other" / "linked.db")
    monkeypatch.chdir(tmp_path / "other")
    with daemon_lock(Path("linked.db")):
        for name in (home, Path("../store.db"), tmp_path / "other" / "linked.db"):
            with pytest.raises(DaemonLockError, match="already running"), daemon_lock(name):
                pass
    assert sorted(path.name for path in tmp_path.rglob("*.lock")) == ["store.db.lock"]
