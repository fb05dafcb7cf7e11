"""What the README and the demo tell users is what the program does."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    KEY,
    ROOT,
    cli_env,
    drain,
    free_port,
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


# -- issue 24: what the docs show runs as shown, on a fresh machine ------------------------------


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def section(title: str) -> str:
    return re.split(r"\n#{2,4} ", README.split(title, 1)[1], maxsplit=1)[0]


def fresh_shell(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A shell's environment as on a fresh machine: a new home, and a PATH without the
    venv (the README says how to put it there)."""
    path = os.pathsep.join(
        part for part in os.environ["PATH"].split(os.pathsep) if Path(part) != VENV_BIN
    )
    return cli_env({"HOME": str(home), "PATH": path, **(extra or {})})


VENV_BIN = Path(sys.executable).parent


def run_bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "-e", "-o", "pipefail", "-c", script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_readme_puts_harvester_on_path_before_calling_it(tmp_path: Path) -> None:
    blocks = sh_blocks(README)
    first_bare = next(i for i, block in enumerate(blocks) if re.search(r"^harvester ", block, re.M))
    [activate] = [
        line.split("#")[0].strip()
        for block in blocks[:first_bare]
        for line in block.splitlines()
        if "activate" in line
    ]
    if not (ROOT / ".venv" / "bin" / "harvester").exists():
        pytest.skip("no .venv in this checkout: the README's set-up line was not run here")
    found = run_bash(
        f"cd {ROOT} && {activate} && command -v harvester", tmp_path, fresh_shell(tmp_path)
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve() == (ROOT / ".venv/bin/harvester").resolve()


def with_venv(home: Path) -> dict[str, str]:
    env = fresh_shell(home)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return env


def test_try_it_without_a_key_runs_as_shown(tmp_path: Path) -> None:
    [block] = sh_blocks(section("### Try it without a key"))
    port = str(free_port())  # the default, 8642, may be taken on a machine running tests
    script = block.replace("8642", port).replace(
        "harvester simulate ", f"harvester simulate --port {port} ", 1
    )
    done = run_bash(script, tmp_path, with_venv(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    said = (tmp_path / "simulator.txt").read_text()
    assert f'base_url = "http://127.0.0.1:{port}/v1"' in said
    assert "export ALTMETRIC_API_KEY=simulator-key" in said
    assert done.stderr.count("created a new store at altmetric.db") == 1
    table = [line.split() for line in done.stdout.splitlines() if line[:1].isdigit()]
    snapshots = [row for row in table if len(row) == 4 and row[1] == "2"]
    assert snapshots and all(float(row[3]) > float(row[2]) for row in snapshots), done.stdout


def test_the_completion_and_man_page_lines_work_in_a_fresh_home(tmp_path: Path) -> None:
    block = sh_blocks(section("### Completion, the man page, Datasette, notebooks"))[0]
    lines = [line for line in block.splitlines() if "pip install" not in line]
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()  # harvester installed here: its man page goes beside it, not in the venv
    (bin_dir / "harvester").symlink_to(VENV_BIN / "harvester")
    env = with_venv(home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = run_bash("\n".join(lines), tmp_path, env)
    assert done.returncode == 0, done.stderr
    for path in (
        ".local/share/bash-completion/completions/harvester",
        ".zfunc/_harvester",
        ".config/fish/completions/harvester.fish",
    ):
        assert "harvester" in (home / path).read_text(), path
    if shutil.which("man"):
        found = run_bash("man -w harvester", tmp_path, env)
        assert found.returncode == 0, found.stderr
        assert Path(found.stdout.strip()).resolve() == (tmp_path / "share/man/man1/harvester.1")


def test_the_import_section_tries_a_dump_it_makes(tmp_path: Path) -> None:
    block = next(b for b in sh_blocks(section("## Import the dump")) if "--make-dump" in b)
    done = run_bash(block, tmp_path, with_venv(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("created a new store at tried.db") == 1
    assert "imported 500, already present 0, rejected 0" in done.stdout
    assert re.search(r"dump\s+500", done.stdout)


def test_the_readme_and_help_agree_on_which_commands_create_a_store() -> None:
    said = re.search(r"Only ((?:`\w+`(?:, | and )?)+) create a\s+store", README)
    assert said is not None
    named = set(re.findall(r"`(\w+)`", said[1]))
    helped = {
        name
        for name, parser in subcommands().items()
        if "Creates the store" in (parser.description or "")
    }
    assert named == helped == {"enqueue", "import", "discover"}
