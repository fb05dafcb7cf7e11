"""`harvester derive [--rebuild]`: fill the derived tables for stored answers that
have none yet; `--rebuild` empties them first. The raw store is never touched.

A plain `derive` may run beside the daemon. A rebuild must not: answers the daemon
derives meanwhile would be emptied away or left out, so it takes the store's lock.
Nor may a rebuild start while any stored body is damaged: it would empty the derived
rows of that answer and could not derive them again.
"""

from __future__ import annotations

from pathlib import Path

from harvester.commands.context import Invocation, require_store
from harvester.errors import CommandError, DaemonLockError
from harvester.model import ExitCode
from harvester.progress import ProgressLine
from harvester.store import Store, derived
from harvester.store.lock import daemon_lock


def cmd_derive(invocation: Invocation, *, rebuild: bool) -> ExitCode:
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
            _refuse_damaged_bodies(store)
            derived.clear_all(store.conn)
        progress = ProgressLine("derive")
        if progress.enabled:
            progress.total = derived.count_underived(store.conn)
        done, skipped = derived.derive_missing(
            store.conn, store.bodies, lambda done, skipped: progress.update(done + skipped)
        )
        progress.close()
    print(
        f"derived {done:,} answers; {skipped:,} were skipped (not a JSON object, or a "
        "damaged body: `harvester verify` names those)"
    )
    return ExitCode.OK


def _refuse_damaged_bodies(store: Store) -> None:
    """Every body must decompress before the derived tables are emptied (one pass of
    decompression, which the rebuild repeats anyway)."""
    damaged = sum(1 for _, problem in store.bodies.iter_checks() if problem is not None)
    if damaged:
        raise CommandError(
            f"{damaged:,} stored bodies are damaged (`harvester verify` lists them): "
            "derive --rebuild would drop their derived rows, so nothing was changed"
        )
