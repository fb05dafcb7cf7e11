"""`config --example` and `systemd-unit`: the files the wheel ships, printed as they are.

Both files live in `harvester/data/` and are read through `importlib.resources`, so an
installed harvester prints the copy that came with it, whatever the working directory.
The repository's `config/harvester.example.toml` and `systemd/altmetric-harvester.service`
are symlinks to the same files: one source, nothing to keep in step.
"""

from __future__ import annotations

import sys
from importlib.resources import files

from harvester.model import ExitCode

EXAMPLE_CONFIG = "harvester.example.toml"
SYSTEMD_UNIT = "altmetric-harvester.service"


def packaged_text(name: str) -> str:
    """The text of one file of `harvester/data/`, as shipped."""
    return (files("harvester") / "data" / name).read_text(encoding="utf-8")


def cmd_config_example() -> ExitCode:
    """Print the example config (every key, its default and what it does) to stdout."""
    sys.stdout.write(packaged_text(EXAMPLE_CONFIG))
    return ExitCode.OK


def cmd_systemd_unit() -> ExitCode:
    """Print the systemd unit (install it as /etc/systemd/system/altmetric-harvester.service)."""
    sys.stdout.write(packaged_text(SYSTEMD_UNIT))
    return ExitCode.OK
