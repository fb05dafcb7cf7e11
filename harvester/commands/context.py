"""What every command is given: the global options (`--config`, `--db`), and the
settings and store they lead to.

A command loads its settings when it asks for them, after checking its own
arguments, so a bad argument is named before a bad config file is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from harvester.config import Settings, load_settings
from harvester.errors import CommandError
from harvester.logs import configure_logging
from harvester.store import Store


@dataclass(frozen=True, slots=True)
class Invocation:
    """The global options of one `harvester` command."""

    config_path: Path | None = None  # --config; None: ./harvester.toml if present
    db_path: Path | None = None  # --db, over store.path

    def read_settings(self) -> Settings:
        """The settings, loaded and checked afresh (ConfigError if they are wrong)."""
        return load_settings(self.config_path, db_override=self.db_path)

    def settings(self) -> Settings:
        """The settings, with logging configured as they say."""
        settings = self.read_settings()
        configure_logging(settings.log.level)
        return settings

    def open_store(self, *, read_only: bool) -> Store:
        """The configured store; read-only, it must exist (see Store)."""
        return Store(self.settings().store.path, read_only=read_only)


def require_store(path: Path) -> None:
    """Commands other than `enqueue` work on a store that exists; see Store too."""
    if not path.exists():
        raise CommandError(f"no store at {path} (check --db or store.path; `enqueue` creates one)")


@contextmanager
def new_store_kept_if_used(path: Path) -> Iterator[Store]:
    """Open (or create) the store for the commands that may make one (`enqueue`,
    `import`); a store this run created but put no job into is removed again, so a
    mistyped `--db` or an input of rejects leaves no stray file behind."""
    real_path = path.resolve()  # through a symlink: the link itself is the user's
    is_new = not real_path.exists()
    store = Store(path)
    try:
        yield store
    finally:
        unused = is_new and not store.jobs.any()
        store.close()
        if unused:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with suppress(FileNotFoundError):
                    real_path.with_name(real_path.name + suffix).unlink()
