"""`harvester derive [--rebuild]`: fill the derived tables for stored answers that
have none yet; `--rebuild` empties them first. The raw store is never touched.

A plain `derive` may run beside the daemon. A rebuild must not: answers the daemon
derives meanwhile would be emptied away or left out, so it takes the daemon's lock,
which the CLI hands in (the lock is the service's, and commands never import it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from harvester.commands.context import Invocation, require_store
from harvester.errors import CommandError, DaemonLockError
from harvester.model import ExitCode
from harvester.progress import ProgressLine
from harvester.store import Store, derived

StoreLock = Callable[[Path], AbstractContextManager[None]]
"""`service.daemon.daemon_lock`: held, no daemon runs on the store (DaemonLockError
if one does)."""


def cmd_derive(invocation: Invocation, *, rebuild: bool, daemon_lock: StoreLock) -> ExitCode:
    """`harvester derive [--rebuild]`."""
    path = invocation.settings().store.path
    require_store(path)  # before the lock, which would create a file beside it
    if not rebuild:
        return _derive(path, rebuild=False)
    try:
        with daemon_lock(path):  # a daemon deriving meanwhile would leave gaps
            return _derive(path, rebuild=True)
    except DaemonLockError:
        raise CommandError(
            "a daemon is running on this store: stop it before derive --rebuild "
            "(plain `derive` may run beside it)"
        ) from None


def _derive(path: Path, *, rebuild: bool) -> ExitCode:
    with Store(path, must_exist=True) as store:
        if rebuild:
            derived.clear_all(store.conn)
        progress = ProgressLine("derive")
        if progress.enabled:
            progress.total = derived.count_underived(store.conn)
        done, skipped = derived.derive_missing(
            store.conn, store.bodies, lambda done, skipped: progress.update(done + skipped)
        )
        progress.close()
    print(f"derived {done:,} answers; {skipped:,} were not JSON objects and were skipped")
    return ExitCode.OK
