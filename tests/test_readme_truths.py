"""What the README and the demo tell users is what the program does."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import (
    KEY,
    ROOT,
    cli_env,
    drain,
    harvest_from_simulator,
    harvester,
    queue,
    run_main,
)

from harvester.cli import build_parser
from harvester.config import ApiSettings, Settings, StoreSettings, WorkerSettings
from harvester.identifiers import Identifier
from harvester.sim.server import Simulator, SimulatorSettings

BASH = shutil.which("bash") or "/bin/bash"
README = (ROOT / "README.md").read_text()


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


def readme_queries() -> list[str]:
    """The statements of the README's example queries."""
    block = README.split("### Example queries", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


async def test_the_readme_example_queries_run_and_answer(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = readme_queries()
    assert len(queries) >= 7
    run_main(capsys, "--db", str(harvested), "refresh", "--older-than", "0s")
    await harvest_from_simulator(harvested, 40)  # a second snapshot of every output
    await fail_two_jobs(harvested)  # so "why did jobs fail?" has something to say
    for sql in queries:
        code, out, err = run_main(capsys, "--db", str(harvested), "query", sql, "--format", "json")
        assert code == 0, (sql, err)
        assert json.loads(out), sql  # every example answers on a 40-output harvest


async def fail_two_jobs(db: Path) -> None:
    """Two more outputs, harvested from a simulator that answers only HTTP 500."""
    queue(db, [Identifier("doi", "10.5150/fails.1"), Identifier("doi", "10.5150/fails.2")])
    failing = SimulatorSettings(key=KEY, fault_rate=1.0, fault_kinds=("500",))
    async with Simulator(failing) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            workers=WorkerSettings(max_attempts=1),
            store=StoreSettings(path=db),
        )
        await drain(settings)
