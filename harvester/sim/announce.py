"""What `harvester simulate` says when it starts: where it serves, and the lines that
point a harvester at it, written as they are to be used (issue 24)."""

from __future__ import annotations

import shlex


def how_to_use(url: str, key: str) -> str:
    """The lines that point `harvester` at a simulator serving at `url`."""
    return (
        "To harvest from it, put these lines in harvester.toml (or the file --config names):\n"
        "[api]\n"
        f'base_url = "{url}"\n'
        "and give the harvester its key:\n"
        f"export ALTMETRIC_API_KEY={shlex.quote(key)}\n"
        "Ctrl-C stops the simulator."
    )
