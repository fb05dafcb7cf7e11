"""What every command is given: the global options (`--config`, `--db`), and the
settings and store they lead to.

A command loads its settings when it asks for them, after checking its own
arguments, so a bad argument is named before a bad config file is. The config, the
logs and the store are imported then too: the CLI imports this module for every
command, `--help` and a completion's TAB included (issue 24).

Which commands create a store is said here once: `enqueue`, `import` and `discover`
(`CREATING_COMMANDS`), each saying so on stderr once when it does; every other
command refuses a missing store before it does anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harvester.errors import NO_STORE_HINT, STORE_CREATING_COMMANDS, CommandError

if TYPE_CHECKING:
    from harvester.config import Settings
    from harvester.store import Store

# The commands that create a store where none is (`errors` holds the list, for the
# store's own refusal too); `run` with a `[schedule]` that discovers starts one as
# well (a daemon that finds its own outputs), and says so.
CREATING_COMMANDS = STORE_CREATING_COMMANDS


@dataclass(frozen=True, slots=True)
class Invocation:
    """The global options of one `harvester` command."""

    config_path: Path | None = None  # --config; None: ./harvester.toml if present
    db_path: Path | None = None  # --db, over store.path

    def read_settings(self) -> Settings:
        """The settings, loaded and checked afresh (ConfigError if they are wrong)."""
        from harvester.config import load_settings

        return load_settings(self.config_path, db_override=self.db_path)

    def settings(self) -> Settings:
        """The settings, with logging configured as they say."""
        from harvester.logs import configure_logging

        settings = self.read_settings()
        configure_logging(settings.log.level)
        return settings

    def open_store(self, *, read_only: bool) -> Store:
        """The configured store; read-only, it must exist (see Store)."""
        from harvester.store import Store

        return Store(self.settings().store.path, read_only=read_only)


def require_store(path: Path) -> None:
    """Commands other than CREATING_COMMANDS work on a store that exists; see Store too."""
    if not path.exists():
        raise CommandError(f"no store at {path} ({NO_STORE_HINT})")


@contextmanager
def new_store_kept_if_used(path: Path) -> Iterator[Store]:
    """Open (or create) the store for the commands that may make one (`enqueue`,
    `import`); a store this run created but put no job into is removed again, so a
    mistyped `--db` or an input of rejects leaves no stray file behind, and a store
    it created and kept is said once on stderr (`settle_new_store`)."""
    from harvester.store import Store

    real_path = path.resolve()  # through a symlink: the link itself is the user's
    is_new = not real_path.exists()
    store = Store(path)
    try:
        yield store
    finally:
        unused = is_new and not store.jobs.any()
        store.close()
        if is_new:
            settle_new_store(path, real_path, used=not unused)


def settle_new_store(path: Path, real_path: Path, *, used: bool) -> None:
    """After a command of CREATING_COMMANDS made the store at `path`: say so once on
    stderr if it holds a job, else remove it again (and its WAL files), silently."""
    if used:
        print(f"created a new store at {path}", file=sys.stderr)
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            real_path.with_name(real_path.name + suffix).unlink()
