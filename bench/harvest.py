"""Harvest benchmarks against the bundled simulator on loopback. Prints figures.

    .venv/bin/python bench/harvest.py throughput   # run --drain, concurrency 64, 50 ms latency
    .venv/bin/python bench/harvest.py cpu          # harvester CPU per stored response
    .venv/bin/python bench/harvest.py memory       # peak RSS of a 100,000-output harvest
    .venv/bin/python bench/harvest.py all
    .venv/bin/python bench/harvest.py cpu --no-derive   # store.derive = false
    .venv/bin/python bench/harvest.py --smoke      # all three at 200 outputs each (CI)
    .venv/bin/python bench/harvest.py throughput --against /tmp/before --rounds 4

`--against TREE` runs the throughput benchmark alternately with another checkout of the
project (say `git worktree add /tmp/before HEAD~3`) and this one, the order swapped each
round, and prints each side's range and the ratio within each round: on a shared,
noisy machine only such ratios compare.

The simulator runs in its own process, so on a two-core machine it has one core and
the harvester the other; CPU time and peak RSS come from the kernel's accounting of
the harvester process alone (wait4). Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harvester.store import Store

KEY = "bench-key"
HARVESTER = [sys.executable, "-m", "harvester"]
DERIVE = True  # store.derive for the harvester under test (--no-derive sets False)
# The simulator answers from 2,000 pre-rendered outputs (the universe's own mix of
# sizes, 5% of identifiers still 404), so its CPU stays off the harvester's core.
BODY_POOL = 2000
# Outputs per benchmark: full size, and --smoke (the same code path in seconds, for CI).
COUNTS = {"throughput": 5000, "cpu": 10_000, "memory": 100_000}
SMOKE_COUNT = 200
SMOKE_BODY_POOL = 200  # renders in a tenth of the time
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


@dataclass
class RunFigures:
    outputs: int
    wall_s: float
    pipeline_s: float
    cpu_s: float
    peak_rss_mb: float


class SimulatorProcess:
    """`harvester simulate` in a child process on a free loopback port."""

    def __init__(self, latency_ms: float, body_pool: int | None = None) -> None:
        self.process = subprocess.Popen(
            [
                *HARVESTER,
                "simulate",
                "--port",
                "0",
                "--key",
                KEY,
                "--latency-ms",
                str(latency_ms),
                "--body-pool",
                str(BODY_POOL if body_pool is None else body_pool),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.base_url = line.split(" on ")[1].split()[0]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def write_config(
    directory: Path, base_url: str, concurrency: int, *, derive: bool, name: str = "bench.toml"
) -> Path:
    """The config every harvest benchmark runs with (bench/ratio.py and bench/memory.py
    too): no rate limit to speak of, a burst as large as the concurrency."""
    config = directory / name
    config.write_text(f"""
[api]
base_url = "{base_url}"
timeout_s = 30
[rate]
requests_per_s = 1000000
burst = {concurrency}
[workers]
concurrency = {concurrency}
[store]
derive = {str(derive).lower()}
[log]
level = "info"
""")
    return config


def create_empty_store(db: Path) -> None:
    """A store with no jobs, for the start-up baseline: `harvester enqueue` of nothing
    leaves no store behind, and `run` refuses a store that does not exist."""
    with Store(db):
        pass  # the schema, by the store's own migrations


def harvester_command(tree: Path | None = None) -> list[str]:
    """`python -m harvester` of this checkout, or of another one (`--against`)."""
    if tree is None:
        return HARVESTER
    return ["env", f"PYTHONPATH={tree}", sys.executable, "-P", "-m", "harvester"]


def enqueue(db: Path, count: int, prefix: str, tree: Path | None = None) -> None:
    if count == 0:
        create_empty_store(db)
        return
    lines = "".join(f"10.{1000 + n % 9000}/{prefix}.{n}\n" for n in range(count))
    subprocess.run(
        [*harvester_command(tree), "--db", str(db), "enqueue"],
        input=lines,
        text=True,
        check=True,
        capture_output=True,
    )


def measured_run(command: list[str], what: str) -> tuple[str, os.struct_rusage, float]:
    """Run one command; its stderr, its resource usage (this process alone), wall."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**os.environ, "ALTMETRIC_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    log = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{what} failed:\n{log[-2000:]}")
    return log, usage, wall_s


def measured(command: list[str], what: str) -> tuple[str, float, float]:
    """Run one command; its stderr, CPU seconds (user + sys, this process alone), wall."""
    log, usage, wall_s = measured_run(command, what)
    return log, usage.ru_utime + usage.ru_stime, wall_s


def run_drain(config: Path, db: Path, tree: Path | None = None) -> RunFigures:
    """Run `harvester run --drain` and account for that one process."""
    command = [
        *harvester_command(tree), "--config", str(config), "--db", str(db), "run", "--drain"
    ]  # fmt: skip
    log, usage, wall_s = measured_run(command, "harvester run")
    stop = next(json.loads(line) for line in log.splitlines() if '"harvest.stop"' in line)
    outputs = stop.get("done", 0) + stop.get("not_found", 0)
    return RunFigures(
        outputs, wall_s, stop["elapsed_s"], usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    )


def harvest(
    count: int, latency_ms: float, concurrency: int, tree: Path | None = None
) -> RunFigures:
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        directory = Path(tmp)
        simulator = SimulatorProcess(latency_ms)
        try:
            config = write_config(directory, simulator.base_url, concurrency, derive=DERIVE)
            db = directory / "bench.db"
            enqueue(db, count, "b", tree)
            return run_drain(config, db, tree)
        finally:
            simulator.close()


def baseline_cpu_s(concurrency: int) -> float:
    """CPU of a run that finds nothing to do: interpreter start, imports, store open."""
    return harvest(0, 0, concurrency).cpu_s


def bench_throughput(count: int, against: Path | None = None, rounds: int = 1) -> None:
    if against is not None:
        compare_throughput(count, against.resolve(), rounds)
        return
    figures = harvest(count, latency_ms=50, concurrency=64)
    bound = 64 / 0.050
    rate = figures.outputs / figures.pipeline_s
    print(f"throughput: {figures.outputs:,} outputs, concurrency 64, 50 ms latency")
    print(
        f"  pipeline {figures.pipeline_s:.2f} s -> {rate:,.0f} outputs/s = "
        f"{rate / bound:.3f} of the latency bound ({bound:,.0f}/s)"
    )
    print(
        f"  whole process incl. start-up {figures.wall_s:.2f} s -> "
        f"{figures.outputs / figures.wall_s:,.0f} outputs/s"
    )


def compare_throughput(count: int, against: Path, rounds: int) -> None:
    """The throughput benchmark alternately with `against` and this checkout."""
    bound = 64 / 0.050
    shares: dict[str, list[float]] = {"against": [], "this": []}
    for number in range(rounds):
        order = ["against", "this"] if number % 2 == 0 else ["this", "against"]
        for side in order:
            figures = harvest(count, 50, 64, against if side == "against" else None)
            shares[side].append(figures.outputs / figures.pipeline_s / bound)
        ratio = shares["this"][-1] / shares["against"][-1]
        print(
            f"round {number + 1}: against {shares['against'][-1]:.3f}, "
            f"this {shares['this'][-1]:.3f} of the latency bound; this/against {ratio:.3f}",
            flush=True,
        )
    ratios = [this / other for this, other in zip(shares["this"], shares["against"], strict=True)]
    print(f"throughput: {count:,} outputs, concurrency 64, 50 ms latency, {rounds} rounds")
    for side, found in shares.items():
        print(f"  {side}: {min(found):.3f}-{max(found):.3f} of the latency bound ({bound:,.0f}/s)")
    print(f"  this/against within a round: {min(ratios):.3f}-{max(ratios):.3f}")


def bench_cpu(count: int) -> None:
    baseline = baseline_cpu_s(64)
    figures = harvest(count, latency_ms=0, concurrency=64)
    per_response_us = (figures.cpu_s - baseline) / figures.outputs * 1e6
    print(f"cpu: {figures.outputs:,} outputs, no latency, no rate limit, concurrency 64")
    print(
        f"  harvester CPU {figures.cpu_s:.2f} s (start-up {baseline:.2f} s) -> "
        f"{per_response_us:,.0f} us per stored response; "
        f"{figures.outputs / figures.pipeline_s:,.0f} outputs/s"
    )


def bench_memory(count: int) -> None:
    figures = harvest(count, latency_ms=0, concurrency=64)
    print(
        f"memory: {figures.outputs:,}-output harvest, peak RSS {figures.peak_rss_mb:.0f} MB "
        f"({figures.pipeline_s:.1f} s, {figures.outputs / figures.pipeline_s:,.0f} outputs/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "which",
        nargs="?",
        choices=("throughput", "cpu", "memory", "all"),
        help="which benchmark (required, but `all` by default with --smoke)",
    )
    parser.add_argument("--count", type=int, help="outputs to harvest (default per benchmark)")
    parser.add_argument("--against", type=Path, help="throughput: another checkout to compare")
    parser.add_argument("--rounds", type=int, default=3, help="with --against (default 3)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny run for CI: {SMOKE_COUNT} outputs per benchmark by default",
    )
    parser.add_argument(
        "--derive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill the derived tables while harvesting (store.derive; default: yes)",
    )
    args = parser.parse_args()
    if args.which is None:
        if not args.smoke:
            parser.error("the following arguments are required: which")
        args.which = "all"

    def count(which: str) -> int:
        return args.count or (SMOKE_COUNT if args.smoke else COUNTS[which])

    global DERIVE, BODY_POOL
    DERIVE = args.derive
    if args.smoke:
        BODY_POOL = SMOKE_BODY_POOL
        print(SMOKE_NOTE)
    print(f"store.derive = {str(DERIVE).lower()}", flush=True)
    if args.which in ("throughput", "all"):
        bench_throughput(count("throughput"), args.against, args.rounds)
    if args.which in ("cpu", "all"):
        bench_cpu(count("cpu"))
    if args.which in ("memory", "all"):
        bench_memory(count("memory"))


if __name__ == "__main__":
    main()
