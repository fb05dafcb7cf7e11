"""Where exports write: never over the store, never a truncated file.

One mistyped `--output` must not destroy years of harvest, so a target that is the
store, one of SQLite's files beside it (`-wal`, `-shm`, `-journal`) or the daemon's
lock, under any name (a symlink, a hard link, `..`), is refused before anything is
opened for writing. And an export that fails half-way (a full disk, Ctrl-C, a bad
row) must not leave half a file where a good one was: rows go to a temporary file
beside the target, which is renamed into place only once everything is written.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from harvester.errors import CommandError, UnsafeOutput

STORE_COMPANIONS = ("", "-wal", "-shm", "-journal", ".lock")
"""Suffixes of the files that make up a store: itself, SQLite's, the daemon lock."""


def refuse_store_files(output: Path, store_path: Path) -> None:
    """Raise UnsafeOutput if writing `output` would touch any file of the store."""
    target = output.resolve()
    real_store = store_path.resolve()
    for suffix in STORE_COMPANIONS:
        protected = real_store.with_name(real_store.name + suffix)
        if target == protected or _same_file(output, protected):
            what = "the store itself" if not suffix else f"the store's {suffix.lstrip('-.')} file"
            raise UnsafeOutput(
                f"--output {output} is {what} ({protected}): choose another file name"
            )


def _same_file(first: Path, second: Path) -> bool:
    """True when both names reach one inode (hard links, symlinks, bind mounts)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False  # one of them does not exist yet


@contextmanager
def replace_on_success(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` only if the
    block finishes. A failure or an interrupt removes it and leaves `target` as it was.

    Targets that are not regular files (`/dev/null`, a FIFO) are written directly:
    renaming over them would replace a device with a file.
    """
    real_target = target.resolve()
    if real_target.exists() and not stat.S_ISREG(real_target.stat().st_mode):
        yield real_target
        return
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{real_target.name}.", suffix=".partial", dir=real_target.parent
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        yield temporary
        _give_default_mode(temporary, real_target)
        os.replace(temporary, real_target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@contextmanager
def text_output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a text file at `path` that appears only once it is whole."""
    if path is None:
        yield sys.stdout
        return
    try:
        with (
            replace_on_success(path) as partial,
            partial.open("w", encoding="utf-8", newline="") as handle,
        ):
            yield handle
    except PermissionError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None


def _give_default_mode(temporary: Path, target: Path) -> None:
    """mkstemp makes files only the owner can read; an export should get the mode a
    plain `open` would give it (or keep the mode of the file it replaces)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)
