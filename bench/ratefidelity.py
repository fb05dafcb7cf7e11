"""Rate fidelity: does the harvester use the whole rate the server allows, and no more?

    .venv/bin/python bench/ratefidelity.py                 # the whole matrix, 70 s a cell
    .venv/bin/python bench/ratefidelity.py --rates 10 --server-bursts 1 --multiples 10
    .venv/bin/python bench/ratefidelity.py --only hourly,auto
    .venv/bin/python bench/ratefidelity.py --smoke         # two cells of 3 s (CI)

The simulator runs in this process with 200 ms latency and one of the API's limits;
`harvester run` runs as a subprocess, configured at some multiple of the server's rate
(or "auto"), and is stopped after `--seconds`. Figures count from `--settle` seconds
after the first answer to the end, so a cell shows the rate held, not the first
seconds of learning. One line per cell:

- bucket cells: the server allows R requests/s (token bucket, burst 1 or 5), with or
  without Retry-After; the harvester is configured at R, 2R or 10R with burst 1, 2 or
  10. Achieved rate ÷ R, and refusals as a share of requests.
- `hourly`: an hourly allowance with part of the hour already spent (the UTC hour, as
  the real API's); the harvester is configured at 10 times the pace the rest of the hour
  allows. The share of what remained that the achieved pace would use by the
  boundary, and refusals.
- `auto`: `rate.requests_per_s = "auto"`, against the same hourly allowance, and
  against a bucket at 10/s whose headers say an hour's worth.

`--harvester-path DIR` runs the harvester from another checkout (PYTHONPATH), to
measure an older version against the same simulator. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.sim.server import Simulator, SimulatorSettings

KEY = "fidelity-key"
LATENCY_S = 0.2
SECONDS, SETTLE_S = 70.0, 10.0
SMOKE_SECONDS, SMOKE_SETTLE_S = 3.0, 1.0
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"
CLIENT_BURST = {1: 1, 2: 2, 10: 10}  # the harvester's burst at each multiple of R


@dataclass(frozen=True)
class Cell:
    """One benchmark: a server limit and the harvester's configuration against it."""

    name: str
    server: SimulatorSettings
    requests_per_s: float | None  # the harvester's; None for "auto"
    burst: int
    allowed_per_s: float  # what the server allows over the measured span


@dataclass(frozen=True)
class Figures:
    passed: int
    refused: int
    span_s: float


def server(**limits: Any) -> SimulatorSettings:
    """The simulator of every cell (200 ms latency, 200 pre-rendered answers) with
    `limits`."""
    return SimulatorSettings(
        key=KEY, latency_s=LATENCY_S, record_sent=False, body_pool=200, **limits
    )


def bucket_cell(
    rate: float, server_burst: int, multiple: int, retry_after: bool, burst: int | None = None
) -> Cell:
    settings = server(
        rate_limit_per_s=rate,
        rate_limit_burst=server_burst,
        send_retry_after=retry_after,
        bucket_headers=False,  # refusals alone teach the rate here
    )
    name = (
        f"bucket R={rate:g}/s burst {server_burst}, {'with' if retry_after else 'no'} "
        f"Retry-After; harvester {multiple}R burst {burst or CLIENT_BURST[multiple]}"
    )
    return Cell(name, settings, rate * multiple, burst or CLIENT_BURST[multiple], rate)


def hourly_cell(pace: float, *, auto: bool) -> Cell:
    """An hourly allowance that leaves `pace` requests/s for the rest of this hour."""
    left_s = 3600 - time.time() % 3600
    limit = 1_000_000
    remaining = int(pace * left_s)
    settings = server(hourly_limit=limit, hourly_used=limit - remaining, send_retry_after=True)
    configured = None if auto else pace * 10
    name = (
        f"hourly allowance, {remaining:,} of {limit:,} left for {left_s:,.0f} s "
        f"({pace:g}/s); harvester {'auto' if auto else '10x that pace'}"
    )
    return Cell(name, settings, configured, 10 if not auto else 1, pace)


def auto_bucket_cell(rate: float) -> Cell:
    settings = server(rate_limit_per_s=rate, rate_limit_burst=1)
    name = f"bucket R={rate:g}/s burst 1 with an hour's worth in its headers; harvester auto"
    return Cell(name, settings, None, 1, rate)


async def run_cell(
    cell: Cell, seconds: float, settle_s: float, harvester_path: str | None, log: str | None
) -> Figures:
    async with Simulator(cell.server) as simulator:
        gate = simulator.rate_limit
        assert gate is not None
        with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
            db, config = Path(tmp) / "f.db", Path(tmp) / "f.toml"
            rate = '"auto"' if cell.requests_per_s is None else f"{cell.requests_per_s:g}"
            config.write_text(
                f'[api]\nbase_url = "{simulator.base_url}"\n'
                f"[rate]\nrequests_per_s = {rate}\nburst = {cell.burst}\n"
                "[workers]\nconcurrency = 32\n"
                f'[log]\nlevel = "{"debug" if log else "info"}"\n'
            )
            env = {**os.environ, "ALTMETRIC_API_KEY": KEY}
            if harvester_path:  # `python -m` puts the working directory first: go there
                env["PYTHONPATH"] = harvester_path
            jobs = int(max(cell.allowed_per_s, 10) * seconds * 1.5) + 200
            log_file = Path(log).open("a") if log else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
            await enqueue(db, jobs, env, cwd=harvester_path)
            run = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harvester",
                "--config",
                str(config),
                "--db",
                str(db),
                "run",
                env=env,
                cwd=harvester_path,
                stderr=log_file,
            )
            try:
                return await measure(gate, seconds, settle_s)
            finally:
                run.send_signal(signal.SIGTERM)
                await run.wait()


async def enqueue(db: Path, jobs: int, env: dict[str, str], cwd: str | None) -> None:
    lines = "".join(f"10.{1000 + n % 9000}/fidelity.{n}\n" for n in range(jobs))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        "--db",
        str(db),
        "enqueue",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    await process.communicate(lines.encode())
    if process.returncode != 0:
        raise SystemExit("harvester enqueue failed")


async def measure(gate: object, seconds: float, settle_s: float) -> Figures:
    """Counts from `settle_s` after the first request reached the server to `seconds`."""
    started_s = time.monotonic()
    while not (gate.passed or gate.refusals):  # type: ignore[attr-defined]
        if time.monotonic() - started_s > 30:
            raise SystemExit("the harvester sent nothing in 30 s")
        await asyncio.sleep(0.01)
    first_s = time.monotonic()
    await asyncio.sleep(settle_s)
    passed0, refused0 = gate.passed, gate.refusals  # type: ignore[attr-defined]
    await asyncio.sleep(seconds - settle_s)
    return Figures(
        gate.passed - passed0,  # type: ignore[attr-defined]
        gate.refusals - refused0,  # type: ignore[attr-defined]
        time.monotonic() - first_s - settle_s,
    )


def report(cell: Cell, figures: Figures, *, hourly: bool) -> str:
    achieved = figures.passed / figures.span_s
    sent = figures.passed + figures.refused
    refused = figures.refused / sent if sent else 0.0
    share = "of the pace left" if hourly else "of R"
    return (
        f"{cell.name}: achieved {achieved:.2f}/s = {achieved / cell.allowed_per_s:.3f} "
        f"{share}; refusals {figures.refused} = {refused:.2%} of {sent:,} requests"
    )


def cells(arguments: argparse.Namespace) -> list[tuple[Callable[[], Cell], bool]]:
    """The chosen cells, each made when its turn comes (an hourly cell reads the clock)."""
    chosen: list[tuple[Callable[[], Cell], bool]] = []
    only = set(arguments.only.split(",")) if arguments.only else {"bucket", "hourly", "auto"}
    if "bucket" in only:
        for rate in arguments.rates:
            for burst in arguments.server_bursts:
                for retry_after in arguments.retry_after:
                    for multiple in arguments.multiples:
                        cell = bucket_cell(
                            rate, burst, multiple, retry_after, arguments.client_burst
                        )
                        chosen.append((lambda cell=cell: cell, False))
    if "hourly" in only:
        chosen.append((lambda: hourly_cell(20, auto=False), True))
    if "auto" in only:
        chosen.append((lambda: hourly_cell(20, auto=True), True))
        chosen.append((lambda: auto_bucket_cell(10), False))
    return chosen


async def main(arguments: argparse.Namespace) -> None:
    print(
        f"rate fidelity: simulator latency {LATENCY_S * 1000:.0f} ms, concurrency 32, "
        f"{arguments.seconds:g} s a cell, figures from {arguments.settle:g} s on",
        flush=True,
    )
    for make, hourly in cells(arguments):
        left_s = 3600 - time.time() % 3600
        if hourly and left_s < arguments.seconds + 30:
            print(f"(waiting {left_s:.0f} s for the next UTC hour)", flush=True)
            await asyncio.sleep(left_s + 1)
        cell = make()
        figures = await run_cell(
            cell, arguments.seconds, arguments.settle, arguments.path, arguments.log
        )
        print(report(cell, figures, hourly=hourly), flush=True)


def numbers(kind: type) -> object:
    return lambda text: [kind(part) for part in text.split(",") if part]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=numbers(float), default=[10.0, 50.0])
    parser.add_argument("--server-bursts", type=numbers(int), default=[1, 5])
    parser.add_argument("--multiples", type=numbers(int), default=[1, 2, 10])
    parser.add_argument(
        "--retry-after",
        type=lambda text: {"no": [False], "yes": [True], "both": [False, True]}[text],
        default=[False, True],
        help="no, yes or both (default)",
    )
    parser.add_argument("--only", default="", help="bucket, hourly, auto (comma-separated)")
    parser.add_argument("--seconds", type=float, help=f"a cell's length (default {SECONDS:g})")
    parser.add_argument("--settle", type=float, help=f"not counted (default {SETTLE_S:g})")
    parser.add_argument("--harvester-path", dest="path", help="PYTHONPATH for the harvester")
    parser.add_argument(
        "--client-burst", type=int, help="the harvester's burst (default: 1, 2, 10 by multiple)"
    )
    parser.add_argument("--log", help="append the harvester's log lines to this file")
    parser.add_argument("--smoke", action="store_true", help="two short cells, for CI")
    arguments = parser.parse_args()
    if arguments.smoke:
        print(SMOKE_NOTE, flush=True)
        arguments.rates, arguments.server_bursts, arguments.multiples = [50.0], [1], [2]
        arguments.retry_after, arguments.only = [True], "bucket,hourly"
    arguments.seconds = arguments.seconds or (SMOKE_SECONDS if arguments.smoke else SECONDS)
    if arguments.settle is None:
        arguments.settle = SMOKE_SETTLE_S if arguments.smoke else SETTLE_S
    asyncio.run(main(arguments))
