"""Running the `harvester` command as users do: a real subprocess, its exit code and
its output. Shared by the tests of the CLI's behaviour."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

KEY = "cli-key-4c3b2a"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a real key, plus `extra`."""
    environment = {k: v for k, v in os.environ.items() if k != "ALTMETRIC_API_KEY"}
    environment.update(extra or {})
    return environment


def harvester(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )


async def harvester_async(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop that serves the simulator."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        *args,
        env=cli_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def config_for(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    """A config that harvests the simulator at `base_url` fast."""
    path = tmp_path / "h.toml"
    path.write_text(f"""
[api]
base_url = "{base_url}"
[rate]
requests_per_s = 500
burst = 20
[workers]
concurrency = 8
{extra}
""")
    return path
