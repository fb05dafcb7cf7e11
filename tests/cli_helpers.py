"""Running the `harvester` command as users do: a real subprocess, its exit code and
its output. Shared by the tests of the CLI's behaviour."""

from __future__ import annotations

import asyncio
import os
import pty
import select
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


class Terminal:
    """The CLI with stdin, stdout and stderr on a pseudo-terminal, as a person runs it
    (subprocesses in tests never have a terminal otherwise)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._controller, terminal = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harvester", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=cli_env({"COLUMNS": "120", **(env or {})}),
            close_fds=True,
        )
        os.close(terminal)
        self.output = bytearray()

    def type(self, text: str) -> None:
        os.write(self._controller, text.encode())

    def read_until(self, expected: str, timeout_s: float = 60) -> str:
        """Everything shown so far, once `expected` is among it."""
        while expected.encode() not in self.output:
            if not self._read_some(timeout_s):
                raise AssertionError(f"{expected!r} never shown in {self.text()!r}")
        return self.text()

    def finish(self, timeout_s: float = 60) -> tuple[int, str]:
        """Read to the end; the exit code and everything shown."""
        try:
            while self._read_some(timeout_s):
                pass
        finally:
            os.close(self._controller)
        return self.process.wait(timeout=timeout_s), self.text()

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def _read_some(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self._controller], [], [], timeout_s)
        if not ready:
            raise TimeoutError(self.text())
        try:
            chunk = os.read(self._controller, 65536)
        except OSError:  # EIO: the child closed its end
            return False
        self.output += chunk
        return bool(chunk)


def run_on_a_terminal(*args: str, timeout_s: float = 60) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal to the end: its exit code and what it showed."""
    return Terminal(*args).finish(timeout_s)
