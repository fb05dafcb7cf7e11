"""Memory benchmark: the peak RSS of a 100,000-output harvest, and where it grows.

    .venv/bin/python bench/memory.py [--count 100000] [--no-derive]
    .venv/bin/python bench/memory.py --smoke   # 300 outputs in seconds (CI)

Harvests N outputs from the bundled simulator (its own process, pre-rendered body pool,
no latency, no rate limit, concurrency 64) with `harvester run --drain`, and samples
that process's memory from /proc every 0.2 s. Prints the peak RSS (the kernel's
accounting, wait4), the RSS of the same command with nothing to do (interpreter,
imports, store open), the RSS as the harvest reaches each quarter of its outputs
(flat, or growing with the store?), and at the largest sample how much was anonymous
memory (Python's heap, SQLite's page cache, numpy, and what malloc keeps after a free)
and how much mapped files (the interpreter's and libraries' code, the WAL index).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harvest import (  # the simulator set-up of bench/harvest.py
    KEY,
    SimulatorProcess,
    enqueue,
    write_config,
)

HARVESTER = [sys.executable, "-m", "harvester"]
CONCURRENCY = 64
COUNT, SMOKE_COUNT = 100_000, 300
BODY_POOL, SMOKE_BODY_POOL = 2000, 200
SAMPLE_EVERY_S = 0.2
TARGET_MB = 150  # issue 12: peak RSS of a 100,000-output harvest
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


@dataclass
class Sample:
    outputs: int
    rss_mb: float
    anon_mb: float
    file_mb: float
    shmem_mb: float


@dataclass
class Trace:
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)


def proc_memory_mb(pid: int) -> dict[str, float] | None:
    """VmRSS and its parts (RssAnon, RssFile, RssShmem) in MB, or None once gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0]) / 1024
    return fields if "VmRSS" in fields else None


def stored_outputs(db: Path) -> int:
    """Responses stored so far, read the way `status` reads (never blocks the writer)."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM responses").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def traced_drain(config: Path, db: Path) -> Trace:
    """`harvester run --drain`, its memory sampled until it exits; the peak and CPU
    from the kernel's accounting of that process alone (wait4)."""
    trace = Trace()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*HARVESTER, "--config", str(config), "--db", str(db), "run", "--drain"],
        env={**os.environ, "ALTMETRIC_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        memory = proc_memory_mb(process.pid)
        if memory is not None:
            trace.samples.append(
                Sample(
                    stored_outputs(db),
                    memory["VmRSS"],
                    memory.get("RssAnon", 0.0),
                    memory.get("RssFile", 0.0),
                    memory.get("RssShmem", 0.0),
                )
            )
        time.sleep(SAMPLE_EVERY_S)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    if process.returncode != 0:
        raise SystemExit(f"harvester run failed (exit {process.returncode})")
    trace.wall_s = time.perf_counter() - started
    trace.peak_rss_mb = usage.ru_maxrss / 1024
    trace.cpu_s = usage.ru_utime + usage.ru_stime
    return trace


def harvest(count: int, body_pool: int, derive: bool) -> Trace:
    with tempfile.TemporaryDirectory(prefix="harvester-memory-") as tmp:
        directory = Path(tmp)
        simulator = SimulatorProcess(0, body_pool)
        try:
            db = directory / "memory.db"
            enqueue(db, count, "m")
            return traced_drain(
                write_config(
                    directory, simulator.base_url, CONCURRENCY, derive=derive, name="memory.toml"
                ),
                db,
            )
        finally:
            simulator.close()


def report(count: int, idle: Trace, run: Trace) -> None:
    print(
        f"  peak RSS {run.peak_rss_mb:.0f} MB (target <= {TARGET_MB} MB); with nothing to "
        f"do {idle.peak_rss_mb:.0f} MB; {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s"
    )
    quarters = []
    for quarter in (1, 2, 3, 4):
        reached = [s for s in run.samples if s.outputs >= count * quarter // 4]
        if reached:
            quarters.append(f"{quarter * 25}%: {reached[0].rss_mb:.0f}")
    print(f"  RSS (MB) as the outputs stored reach  {', '.join(quarters) or 'too quick to see'}")
    if run.samples:
        top = max(run.samples, key=lambda sample: sample.rss_mb)
        print(
            f"  largest sample {top.rss_mb:.0f} MB at {top.outputs:,} outputs: anonymous "
            f"{top.anon_mb:.0f} MB, mapped files {top.file_mb:.0f} MB, shared {top.shmem_mb:.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"outputs (default {COUNT:,})")
    parser.add_argument(
        "--derive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill the derived tables while harvesting (store.derive; default: yes)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_COUNT} outputs"
    )
    args = parser.parse_args()
    count = args.count or (SMOKE_COUNT if args.smoke else COUNT)
    body_pool = SMOKE_BODY_POOL if args.smoke else BODY_POOL
    if args.smoke:
        print(SMOKE_NOTE)
    print(
        f"memory: {count:,}-output harvest, concurrency {CONCURRENCY}, no latency, "
        f"store.derive = {str(args.derive).lower()}",
        flush=True,
    )
    idle = harvest(0, body_pool, args.derive)
    report(count, idle, harvest(count, body_pool, args.derive))


if __name__ == "__main__":
    main()
