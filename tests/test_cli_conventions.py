"""The conventions a command line is expected to keep: where the config and the store
are looked for (and `status` naming what it used), `harvester config`, shell
completion that a real bash runs, a man page from the same parser, help with examples
and exit codes. Each runs the real CLI as a process, in a directory and environment of
its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import HARVESTER, dois, queue

from harvester.cli import COMMANDS
from harvester.config import config_search_path, load_settings

BIN = Path(sys.executable).parent  # the venv's bin: `harvester` lives there


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in `cwd` with a clean environment: HOME and XDG_CONFIG_HOME under it."""
    environ = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(cwd / "home"),
        "XDG_CONFIG_HOME": str(cwd / "xdg"),
        **(env or {}),
    }
    return subprocess.run(
        [*HARVESTER, *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False
    )


def write(path: Path, concurrency: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[workers]\nconcurrency = {concurrency}\n")
    return path


def concurrency_seen(cwd: Path, *args: str, env: dict[str, str] | None = None) -> int:
    done = run(cwd, *args, "config", env=env)
    assert done.returncode == 0, done.stderr
    body = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))
    return int(tomllib.loads(body)["workers"]["concurrency"])


def test_the_config_is_found_in_the_documented_order(tmp_path: Path) -> None:
    assert concurrency_seen(tmp_path) == 8  # nothing anywhere: the built-in default
    write(tmp_path / "xdg" / "altmetric-harvester" / "harvester.toml", 2)
    assert concurrency_seen(tmp_path) == 2
    write(tmp_path / "harvester.toml", 3)  # the working directory's comes first
    assert concurrency_seen(tmp_path) == 3
    named = write(tmp_path / "named.toml", 4)
    assert concurrency_seen(tmp_path, env={"HARVESTER_CONFIG": str(named)}) == 4
    flagged = write(tmp_path / "flagged.toml", 5)
    assert (
        concurrency_seen(tmp_path, "--config", str(flagged), env={"HARVESTER_CONFIG": str(named)})
        == 5
    )
    missing = run(tmp_path, "config", env={"HARVESTER_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.returncode == 1
    assert "nope.toml does not exist" in missing.stderr and "HARVESTER_CONFIG" in missing.stderr
    # The system's file is the last place looked.
    assert config_search_path({"XDG_CONFIG_HOME": "/x"}) == [
        Path("harvester.toml"),
        Path("/x/altmetric-harvester/harvester.toml"),
        Path("/etc/altmetric-harvester/harvester.toml"),
    ]


def test_the_store_comes_from_db_then_harvester_db_then_the_config(tmp_path: Path) -> None:
    from_env, from_flag = tmp_path / "env.db", tmp_path / "flag.db"
    queue(from_env, dois(3, "10.5150/env."))
    queue(from_flag, dois(5, "10.5150/flag."))
    (tmp_path / "harvester.toml").write_text(f'[store]\npath = "{tmp_path / "config.db"}"\n')
    env = {"HARVESTER_DB": str(from_env)}
    status = run(tmp_path, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["store"] == str(from_env) and report["total"] == 3
    assert report["config"] == "harvester.toml"
    flagged = json.loads(run(tmp_path, "--db", str(from_flag), "status", "--json", env=env).stdout)
    assert flagged["store"] == str(from_flag) and flagged["total"] == 5
    text = run(tmp_path, "status", env=env).stdout
    assert f"store  {from_env}" in text and "config harvester.toml" in text
    shown = run(tmp_path, "config", env=env).stdout
    assert f"# store: {from_env} (from $HARVESTER_DB)" in shown
    assert "# config: harvester.toml" in shown


def test_config_prints_the_settings_in_effect_as_toml_that_loads_back(tmp_path: Path) -> None:
    (tmp_path / "harvester.toml").write_text(
        '[rate]\nrequests_per_s = "auto"\n[schedule]\ndiscover_every = "1d"\n'
        '[api]\nendpoint = "counts"\n'
    )
    done = run(tmp_path, "config")
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "saved.toml"
    saved.write_text(done.stdout)
    assert (
        load_settings(saved, environ={}).rate
        == load_settings(tmp_path / "harvester.toml", environ={}).rate
    )
    again = load_settings(saved, environ={})
    assert again.api.endpoint == "counts" and again.schedule.discover_every == "1d"
    assert again.rate.requests_per_s is None


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_commands_and_choices_through_the_printed_script(tmp_path: Path) -> None:
    script = run(tmp_path, "completion", "bash")
    assert script.returncode == 0, script.stderr
    (tmp_path / "completion.bash").write_text(script.stdout)
    probe = """
source ./completion.bash
complete_line() {
    COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<< "$1"
    [[ "$1" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    _python_argcomplete harvester "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\\n' "${COMPREPLY[@]}"
}
echo "== disc"; complete_line "harvester disc"
echo "== timeframe"; complete_line "harvester discover --timeframe "
echo "== shells"; complete_line "harvester completion "
"""
    environ = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(shutil.which("bash")), "-c", probe],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    sections = dict(part.split("\n", 1) for part in done.stdout.split("== ")[1:])
    assert sections["disc"].split() == ["discover"]
    assert sections["timeframe"].split() == [
        "at", "1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "3m", "6m", "1y",
    ]  # fmt: skip
    shells = [word for word in sections["shells"].split() if not word.startswith("-")]
    assert shells == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_ask_harvester_itself(tmp_path: Path, shell: str) -> None:
    done = run(tmp_path, "completion", shell)
    assert done.returncode == 0 and "harvester" in done.stdout
    assert "_ARGCOMPLETE" in done.stdout  # the script calls back into the program
    assert run(tmp_path, "completion", "powershell").returncode == 2


def test_the_man_page_documents_every_command_exit_code_and_file(tmp_path: Path) -> None:
    done = run(tmp_path, "man")
    assert done.returncode == 0, done.stderr
    page = done.stdout
    assert page.startswith(".TH HARVESTER")
    for name in COMMANDS:
        assert name.replace("-", "\\-") in page, name
    assert ".SH EXIT STATUS" in page.upper() and "HARVESTER_CONFIG" in page
    if groff := shutil.which("groff"):
        rendered = subprocess.run(
            [groff, "-man", "-Tutf8"], input=page, capture_output=True, text=True, check=True
        ).stdout
        assert "discover" in rendered and "HARVESTER_DB" in rendered


def test_help_shows_examples_and_exit_codes(tmp_path: Path) -> None:
    top = run(tmp_path, "--help").stdout
    assert "examples:" in top and "exit codes:" in top and "$HARVESTER_DB" in top
    for name in ("enqueue", "discover", "run", "query"):
        text = run(tmp_path, name, "--help").stdout
        assert f"harvester {name}" in text.split("examples:")[1], name
        assert "exit codes:" in text
    # Each command's own codes (issue 24): only those that call the API speak of a key.
    for name, codes in (("discover", "0123"), ("run", "01234"), ("check", "0123")):
        listed = run(tmp_path, name, "--help").stdout.split("exit codes:")[1]
        numbers = [line.split()[0] for line in listed.splitlines() if line[2:3].isdigit()]
        assert numbers == list(codes), name
