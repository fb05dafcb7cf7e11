"""`simulate`: the bundled simulator served on loopback until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shlex
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiohttp
from helpers import HARVESTER, KEY, cli_env, harvester, rows, start_harvester

from harvester.sim.server import Simulator, SimulatorSettings


@contextlib.asynccontextmanager
async def simulate(*options: str) -> AsyncIterator[str]:
    """`harvester simulate --port 0 --key k OPTIONS` while it serves: its base URL."""
    process = await start_harvester(
        "simulate", "--port", "0", "--key", "k", *options,
        stdout=asyncio.subprocess.PIPE, stderr=None,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        yield line.split(" on ")[1].split()[0]
    finally:
        process.terminate()
        await process.wait()


async def test_simulate_serves_on_loopback_until_stopped() -> None:
    async with simulate() as base_url, aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=k") as response:
            assert response.status in (200, 404)
        async with session.get(f"{base_url}/fetch/doi/10.1000/x?key=bad") as response:
            assert response.status == 403


async def test_simulate_can_enforce_a_rate_limit() -> None:
    statuses, retry_after, hourly = [], [], []
    async with simulate("--rate-limit", "1", "--retry-after") as base_url:
        async with aiohttp.ClientSession() as session:
            for n in range(3):
                async with session.get(f"{base_url}/fetch/doi/10.1000/r{n}?key=k") as response:
                    statuses.append(response.status)
                    retry_after.append(response.headers.get("Retry-After"))
                    hourly.append(response.headers.get("X-HourlyRateLimit-Remaining"))
        assert statuses[0] in (200, 404) and statuses[1:] == [429, 429]
        assert retry_after[1:] == ["1", "1"]
        assert all(value is not None for value in hourly)


async def test_sigterm_stops_the_simulator_at_once() -> None:
    process = await start_harvester(
        "simulate", "--port", "0", "--key", "k",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readline(), timeout=30)  # serving
    process.terminate()
    _, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == -15
    assert "Traceback" not in err.decode()


# -- issue 24: the lines it prints work, attention grows, a dump to try `import` ----------------


def read_until(stream: IO[bytes], end: bytes, timeout_s: float) -> list[str]:
    """What a pipe says up to and including the line holding `end` (a failure if that
    takes longer than `timeout_s`), as lines."""
    said, deadline = b"", time.monotonic() + timeout_s
    while end not in said:
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"{end!r} not said in time: {said!r}"
        chunk = os.read(stream.fileno(), 4096)
        assert chunk, f"ended before {end!r}: {said!r}"
        said += chunk
    return said.decode().splitlines()


def test_the_lines_simulate_prints_point_a_harvester_at_it(tmp_path: Path) -> None:
    """Its start-up says which config lines and key to use; written as printed, they
    harvest from it; a refresh then finds the scores risen (README's query 3)."""
    process = subprocess.Popen(
        [*HARVESTER, "simulate", "--port", "0"], stdout=subprocess.PIPE, env=cli_env()
    )
    try:
        assert process.stdout is not None
        said = read_until(process.stdout, b"Ctrl-C stops the simulator.", 30)
        assert said[-1] == "Ctrl-C stops the simulator.", said
        toml = said[said.index("[api]") : said.index("[api]") + 2]
        (tmp_path / "harvester.toml").write_text("\n".join(toml) + "\n")
        [export] = [line for line in said if line.startswith("export ")]
        name, _, value = export.removeprefix("export ").partition("=")
        env = {name: shlex.split(value)[0]}
        ids = "".join(f"10.1000/try.{n}\n" for n in range(6))
        for step in (("enqueue",), ("run", "--drain"), ("refresh", "--older-than", "0s")):
            done = harvester(*step, stdin=ids, env=env, cwd=tmp_path)
            assert done.returncode == 0, (step, done.stderr)
        done = harvester("run", "--drain", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    risen = rows(
        tmp_path / "altmetric.db",
        """SELECT count(*) FROM latest_outputs AS o JOIN outputs AS first ON first.response_id =
           (SELECT min(response_id) FROM outputs WHERE job_id = o.job_id)
           WHERE o.response_id != first.response_id AND o.score > first.score""",
    )[0][0]
    assert risen == rows(tmp_path / "altmetric.db", "SELECT count(*) FROM latest_outputs")[0][0] > 0


async def test_attention_grows_with_each_answer_unless_steady() -> None:
    grows = SimulatorSettings(key=KEY, attention_grows=True)
    async with Simulator(grows) as simulator, aiohttp.ClientSession() as session:
        scores = []
        for call in ("fetch/doi", "doi", "fetch/doi"):  # fetch and counts count alike
            url = f"{simulator.base_url}/{call}/10.1000/grows.1?key={KEY}"
            async with session.get(url) as response:
                scores.append((await response.json())["score"])
        assert scores[0] < scores[1] < scores[2]
    async with (
        Simulator(SimulatorSettings(key=KEY)) as simulator,
        aiohttp.ClientSession() as session,
    ):
        url = f"{simulator.base_url}/fetch/doi/10.1000/grows.1?key={KEY}"
        bodies = []
        for _ in range(2):
            async with session.get(url) as response:
                bodies.append(await response.read())
        assert bodies[0] == bodies[1]


def test_make_dump_writes_a_dump_that_import_takes(tmp_path: Path) -> None:
    dump = tmp_path / "try.tar.gz"
    made = harvester("simulate", "--make-dump", str(dump), "--records", "120")
    assert made.returncode == 0, made.stderr
    assert (
        "wrote a dump of 120 records" in made.stdout and f"harvester import {dump}" in made.stdout
    )
    db = tmp_path / "dumped.db"
    imported = harvester("--db", str(db), "import", str(dump))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "imported 120, already present 0, rejected 0"
    assert imported.stderr.count(f"created a new store at {db}") == 1
    assert rows(db, "SELECT count(*) FROM latest_outputs")[0][0] == 120
    again = harvester("simulate", "--make-dump", str(dump))
    assert again.returncode == 1 and "exists already" in again.stderr
    assert (
        harvester(
            "simulate", "--make-dump", str(tmp_path / "x.tar.gz"), "--records", "0"
        ).returncode
        == 1
    )
    assert not list(tmp_path.glob("*x.tar.gz*"))  # nothing written, not even a partial file
