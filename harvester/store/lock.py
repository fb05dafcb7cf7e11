"""The store's lock file (`STORE.lock`): held by the daemon for its lifetime, and by
the few commands that must not run beside it (`derive --rebuild`). It is one of the
store's own files, beside the `-wal` and `-shm` that SQLite keeps, and like them beside
the store's home name (`store.home`): a symlink, a relative path, a hard link or a
bind mount of the store all meet the same lock. The other commands that write take no
lock of their own: they may run beside the daemon, and meet SQLite's locks on the
same `-wal` and `-shm`, for they open the store by the same name."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from harvester.errors import DaemonLockError
from harvester.store.home import reach


@contextlib.contextmanager
def daemon_lock(store_path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the store for the daemon's lifetime.

    The kernel drops a flock when its process dies, however it dies, so a crashed
    daemon never leaves a stale lock behind; and while we hold it, every job found
    `in_progress` at start belongs to a dead run and can safely be requeued.
    """
    home = reach(store_path)  # one lock per store, whatever name it is given by
    lock_path = home.with_name(home.name + ".lock")
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonLockError(  # through another name, `reach` has named its home
                f"another harvester daemon is already running on {store_path}"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
