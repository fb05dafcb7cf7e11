"""`harvester config`: which config file and store a command would use, and the
settings in effect, as TOML that can be saved and edited.

The config is `--config`, else `$HARVESTER_CONFIG`, else the first file found of
./harvester.toml, `$XDG_CONFIG_HOME/altmetric-harvester/harvester.toml` and
/etc/altmetric-harvester/harvester.toml, else the built-in defaults; the store is
`--db`, else `$HARVESTER_DB`, else `store.path`. When a harvester does something
unexpected, this is the first thing to ask. The key is never shown, nor the password
in `api.proxy` (shown as `***`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from harvester.commands.context import Invocation
from harvester.config import DB_ENV_VAR, Settings, config_search_path
from harvester.model import ExitCode
from harvester.redaction import shown_url


def cmd_config(invocation: Invocation) -> ExitCode:
    settings = invocation.settings()
    print(f"# config: {settings.source or 'none found: the built-in defaults'}")
    searched = [
        f"./{path}" if not path.is_absolute() else str(path)
        for path in config_search_path(os.environ)
    ]
    looked = ["--config", "$HARVESTER_CONFIG", *searched]
    print(f"# looked for, in order: {', '.join(looked)}")
    print(f"# store: {settings.store.path} (from {store_source(invocation)})")
    print(settings_as_toml(settings))
    return ExitCode.OK


def store_source(invocation: Invocation) -> str:
    """Where the store's path came from, in the words of the search order."""
    if invocation.db_path is not None:
        return "--db"
    if os.environ.get(DB_ENV_VAR, "").strip():
        return f"${DB_ENV_VAR}"
    return "store.path"


def settings_as_toml(settings: Settings) -> str:
    """Every section and key with the value in effect (unset optional keys commented)."""
    lines: list[str] = []
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        if not dataclasses.is_dataclass(values):
            continue
        lines.append(f"\n[{section.name}]")
        for key in dataclasses.fields(values):
            value = getattr(values, key.name)
            if (section.name, key.name) == ("api", "proxy"):
                value = shown_url(value)  # its password is a secret
            if value is None and key.name != "requests_per_s":
                lines.append(f"# {key.name} =")
            else:
                lines.append(f"{key.name} = {_toml_value(value)}")
    return "\n".join(lines).lstrip("\n")


def _toml_value(value: object) -> str:
    if value is None:
        return '"auto"'  # rate.requests_per_s: no ceiling
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string, escapes and all
