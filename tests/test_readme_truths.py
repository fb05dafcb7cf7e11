"""What the README and the demo tell users is what the program does."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from cli_helpers import cli_env, harvester

from harvester.cli import build_parser

BASH = shutil.which("bash") or "/bin/bash"
README = (Path(__file__).parent.parent / "README.md").read_text()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [choices] = [
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    return dict(choices)


def test_every_command_and_flag_is_documented() -> None:
    undocumented = []
    for name, parser in subcommands().items():
        if f"`{name}" not in README:
            undocumented.append(name)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and flag not in README:
                    undocumented.append(f"{name} {flag}")
    assert undocumented == []


def test_the_demo_hints_run_as_printed(tmp_path: Path) -> None:
    result = harvester("demo", "--count", "60", env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    hints = result.stdout.split("Look inside:\n", 1)[1].splitlines()
    assert len(hints) >= 3
    for hint in hints:
        ran = subprocess.run(
            [BASH, "-o", "pipefail", "-c", hint.strip()],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, (hint, ran.stderr)
        assert ran.stdout.strip(), hint
