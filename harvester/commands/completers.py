"""What a completion's TAB offers where a fixed list of choices cannot say: identifier
types (`show TYPE`, `enqueue --type`), the store's tables (`export --table`) and
config files (`--config`).

argcomplete calls these with the word typed so far and the arguments parsed before
it, only when the shell asks (`harvester completion` installs the script that asks).
Each imports what it needs when called, so that a TAB costs little more than Python's
own start (issue 24), and none of them can fail: a TAB that finds nothing offers
nothing.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any


def identifier_types(prefix: str, **_: Any) -> list[str]:
    """Every type name `enqueue --type` and `show` accept, aliases included."""
    from harvester.identifiers import TYPE_NAMES

    return [name for name in TYPE_NAMES if name.startswith(prefix)]


def config_paths(prefix: str, **_: Any) -> list[str]:
    """TOML files and directories (a config file is TOML)."""
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter(allowednames=("toml",))(prefix))


def store_tables(prefix: str, parsed_args: Any = None, **_: Any) -> list[str]:
    """The tables and views of the store the command would use (`--db`, else
    $HARVESTER_DB, else the config's `store.path`), as `export --table` takes them."""
    path = _store_path(parsed_args)
    if path is None or not path.is_file():
        return []
    from harvester.store.names import exportable_tables

    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=0.2)) as conn:
            names = exportable_tables(conn)
    except sqlite3.Error:
        return []
    return [name for name in names if name.startswith(prefix)]


def _store_path(parsed_args: Any) -> Path | None:
    db = getattr(parsed_args, "db", None)
    if db is not None:
        return Path(db)
    from harvester.config import DB_ENV_VAR, load_settings

    if os.environ.get(DB_ENV_VAR):
        return Path(os.environ[DB_ENV_VAR])
    try:
        return load_settings(getattr(parsed_args, "config", None)).store.path
    except Exception:  # a config that does not load: nothing to offer, never a traceback
        return None
