"""Only the commands that say they create a store create one (issue 24): `enqueue`,
`import` and `discover`, each saying so once on stderr when it does, and removing a
store it made that ends with no job; every other command that works on a store refuses
a missing one before any request, and `--help` says which create one.

Each runs the real CLI as a process, against the simulator on loopback where a command
asks the API, and looks at the files it leaves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import KEY, harvester, harvester_async, write_config

from harvester.cli import COMMANDS
from harvester.sim.server import Simulator, SimulatorSettings

CREATED = "created a new store at"


def config(tmp_path: Path, base_url: str) -> Path:
    return write_config(
        tmp_path / "h.toml",
        base_url,
        rate={"requests_per_s": 50, "burst": 2},
        workers={"backoff_base_s": 0.05, "backoff_max_s": 0.1, "max_attempts": 2},
    )


def store_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if ".db" in path.name)


async def test_discover_on_a_mistyped_store_says_it_created_one(tmp_path: Path) -> None:
    db = tmp_path / "mistyped.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=30)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1d",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
        assert code == 0, err
        assert err.count(CREATED) == 1 and f"{CREATED} {db}" in err
        assert db.exists()
        # Run again on the store it made: nothing is created, nothing said of it.
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1w",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
        assert code == 0 and CREATED not in err


async def test_discover_refused_leaves_no_store_behind(tmp_path: Path) -> None:
    db = tmp_path / "refused.db"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "discover", "--timeframe", "1d",
            env={"ALTMETRIC_API_KEY": "not-the-key"},
        )  # fmt: skip
    assert code == 3, err
    assert CREATED not in err and store_files(tmp_path) == []


def test_enqueue_says_once_that_it_created_the_store(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    first = harvester("--db", str(db), "enqueue", stdin="10.1000/a\n")
    assert first.returncode == 0 and first.stderr.count(CREATED) == 1, first.stderr
    again = harvester("--db", str(db), "enqueue", stdin="10.1000/b\n")
    assert again.returncode == 0 and CREATED not in again.stderr
    rejected = harvester("--db", str(tmp_path / "none.db"), "enqueue", stdin="nonsense\n")
    assert rejected.returncode == 1 and CREATED not in rejected.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ("run", "--drain"),
        ("status",),
        ("refresh", "--older-than", "1d"),
        ("retry",),
        ("backfill", "--twitter"),
        ("derive",),
        ("verify",),
        ("export", "--format", "csv", "--table", "jobs"),
        ("query", "SELECT 1"),
        ("show", "doi", "10.1000/a"),
    ],
    ids=" ".join,
)
async def test_every_other_command_refuses_a_missing_store_before_any_request(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    db = tmp_path / "mistyped.db"
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        cfg = config(tmp_path, sim.base_url)
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), *command, env={"ALTMETRIC_API_KEY": KEY}
        )
        assert sim.sent == []
    assert code == 1 and f"no store at {db}" in err, err
    assert "`enqueue`, `import` or `discover` creates one" in err
    assert store_files(tmp_path) == []


def test_help_says_which_commands_create_a_store() -> None:
    creating = {
        name
        for name in COMMANDS
        if "Creates the store if there is none" in harvester(name, "--help").stdout
    }
    assert creating == {"enqueue", "import", "discover"}
