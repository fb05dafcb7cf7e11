"""Fast to start, and help per command (issue 24): what `harvester` imports for
`--version`, `--help`, a completion's TAB and `status`, what a TAB offers where a
fixed list of choices cannot say (identifier types, the store's tables, states, config
files) through the script `harvester completion bash` prints, run by a real bash, and
the man page and each command's help saying each thing once.

The times themselves are `bench/startup.py`'s (against `python -c pass`, in the same
run); here, the modules whose import made every command slow must stay unloaded, which
holds on any machine however busy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env, harvester

from harvester.cli import COMMANDS

BIN = Path(sys.executable).parent
# What made every command slow: pandas and numpy through sqlite-utils, aiohttp.
HEAVY = ("pandas", "numpy", "pyarrow", "sqlite_utils", "aiohttp")
# What `--version` may not even look at: the config, the logs, the store.
NOT_FOR_VERSION = (*HEAVY, "structlog", "zstandard", "harvester.config", "harvester.store.core")

# Run the console script's two lines; at exit, however it exits (argcomplete ends a
# TAB with os._exit, past atexit), write the modules loaded to the file $MODULES_SEEN.
PROBE = """
import atexit, json, os, sys
def seen():
    with open(os.environ["MODULES_SEEN"], "w") as file:
        file.write(json.dumps(sorted(sys.modules)))
atexit.register(seen)
real_exit = os._exit
os._exit = lambda code: (seen(), real_exit(code))
from harvester.cli import main
sys.exit(main())
"""


def modules_loaded(*args: str, env: dict[str, str] | None = None, seen: Path) -> set[str]:
    """The modules `harvester ARGS` imported, as that process saw them at its exit."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=cli_env({**(env or {}), "MODULES_SEEN": str(seen)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert seen.exists(), done.stderr
    return set(json.loads(seen.read_text()))


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} | modules


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("status", "--help")], ids=str)
def test_version_and_help_import_nothing_heavy(args: tuple[str, ...], tmp_path: Path) -> None:
    loaded = top_level(modules_loaded(*args, seen=tmp_path / "seen.json"))
    assert not loaded & set(NOT_FOR_VERSION), sorted(loaded & set(NOT_FOR_VERSION))


def test_a_completion_tab_imports_nothing_heavy(tmp_path: Path) -> None:
    answer = tmp_path / "answer"
    line = "harvester sta"
    loaded = top_level(
        modules_loaded(
            env={
                "_ARGCOMPLETE": "1",
                "_ARGCOMPLETE_SHELL": "bash",
                "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
                "COMP_LINE": line,
                "COMP_POINT": str(len(line)),
            },
            seen=tmp_path / "seen.json",
        )
    )
    assert answer.read_text().split() == ["status"]
    assert not loaded & set(NOT_FOR_VERSION), sorted(loaded & set(NOT_FOR_VERSION))


def test_status_reads_a_store_without_pandas_numpy_or_the_http_client(tmp_path: Path) -> None:
    db = tmp_path / "small.db"
    assert harvester("--db", str(db), "enqueue", stdin="10.1000/a\n10.1000/b\n").returncode == 0
    for args in (("status",), ("status", "--json"), ("query", "SELECT count(*) FROM jobs")):
        loaded = top_level(modules_loaded("--db", str(db), *args, seen=tmp_path / "seen.json"))
        assert not loaded & set(HEAVY), (args, sorted(loaded & set(HEAVY)))


# -- what a TAB offers, through the script bash runs ------------------------------------------


def tab(tmp_path: Path, *lines: str, env: dict[str, str] | None = None) -> dict[str, list[str]]:
    """What bash's completion offers for each line, through `harvester completion bash`."""
    script = harvester("completion", "bash")
    (tmp_path / "completion.bash").write_text(script.stdout)
    asks = "".join(f'echo "== {line}"; complete_line "{line}"\n' for line in lines)
    probe = f"""
source ./completion.bash
complete_line() {{
    COMP_LINE="$1"; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< "$1"
    [[ "$1" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    _python_argcomplete harvester "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    printf '%s\\n' "${{COMPREPLY[@]}}"
}}
{asks}"""
    environ = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(tmp_path), **(env or {})}
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
    return {
        line: [w for w in said.split() if not w.startswith("-")] for line, said in sections.items()
    }


def test_tab_offers_identifier_types_tables_states_and_config_files(tmp_path: Path) -> None:
    db = tmp_path / "tabs.db"
    assert harvester("--db", str(db), "enqueue", stdin="10.1000/a\n").returncode == 0
    (tmp_path / "mine.toml").write_text("[workers]\nconcurrency = 2\n")
    (tmp_path / "notes.txt").write_text("not a config\n")
    offered = tab(
        tmp_path,
        "harvester show ",
        "harvester show pm",
        "harvester enqueue --type ar",
        f"harvester --db {db} export --format csv --table ",
        "harvester export --format csv --table out",
        "harvester retry --state ",
        "harvester status --config ",
        env={"HARVESTER_DB": str(db)},
    )
    assert {"doi", "pmid", "arxiv", "isbn", "handle", "arxiv_id"} <= set(offered["harvester show "])
    assert "tabs.db" not in offered["harvester show "]  # not file names
    assert offered["harvester show pm"] == ["pmid"]
    assert offered["harvester enqueue --type ar"] == ["arxiv", "arxiv_id"]
    tables = offered[f"harvester --db {db} export --format csv --table "]
    assert {"jobs", "outputs", "mentions", "outputs_wide", "latest_outputs"} <= set(tables)
    assert not {"_sqlite_migrations", "tabs.db"} & set(tables)
    # Without --db: $HARVESTER_DB names the store, as it does for the command.
    assert offered["harvester export --format csv --table out"] == ["outputs", "outputs_wide"]
    assert sorted(offered["harvester retry --state "]) == ["done", "failed", "not_found"]
    assert "mine.toml" in offered["harvester status --config "]
    assert "notes.txt" not in offered["harvester status --config "]


# -- help per command, the man page once ------------------------------------------------------


def test_each_command_lists_its_own_exit_codes_and_no_others() -> None:
    completion = harvester("completion", "--help").stdout
    assert "run --drain" not in completion and "3  " not in completion
    assert "4  " not in harvester("status", "--help").stdout
    assert "3  the API rejected the key" in harvester("discover", "--help").stdout
    run = harvester("run", "--help").stdout.split("exit codes:")[1]
    assert "4  --drain: the queue drained, but jobs failed during this run" in run
    for name in COMMANDS:  # every command has its own block
        assert "exit codes:\n  0  " in harvester(name, "--help").stdout, name


def test_help_sentences_end_once() -> None:
    check = harvester("check", "--help").stdout
    assert "configured call?" in check and "?." not in check
    for name in COMMANDS:
        description = harvester(name, "--help").stdout.split("\n\n")[1]
        assert not description.endswith(("?.", "..")), name


def test_the_man_page_says_each_thing_once() -> None:
    page = harvester("man").stdout
    for once in (".SH EXAMPLES", ".SH EXIT STATUS", ".SH FILES", "harvester demo   "):
        assert page.count(once) == 1, once
    for never_twice in ("a usage error", "$XDG_CONFIG_HOME/altmetric", "what got attention today"):
        assert page.count(never_twice) == 1, never_twice
    assert "exit codes:" not in page and ".SH COMMENTS" not in page
