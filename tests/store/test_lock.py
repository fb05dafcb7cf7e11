"""The store's lock file: one daemon per store, however the store is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.errors import DaemonLockError
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
