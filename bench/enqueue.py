"""Enqueue benchmark: `harvester enqueue` of 1,000,000 identifiers into a fresh store.

    .venv/bin/python bench/enqueue.py [--count N]
    .venv/bin/python bench/enqueue.py --smoke   # 2,000 lines in a second or two (CI)

Runs the real CLI as a subprocess on a generated file (mixed DOIs, PubMed IDs and
arXiv IDs, 1% duplicates) and prints wall time, CPU time (this shared machine's wall
times drift with its load; CPU much less), lines per second, peak RSS and the store's
size. A second enqueue of the same file measures the all-duplicates path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COUNT, SMOKE_COUNT = 1_000_000, 2_000
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def write_identifiers(path: Path, count: int) -> None:
    with path.open("w") as out:
        for n in range(count):
            if n % 100 == 99:
                out.write(f"10.{1000 + (n - 3) % 9000}/bench.{n - 3}\n")  # a duplicate
            elif n % 10 == 7:
                out.write(f"pmid:{10_000_000 + n}\n")
            elif n % 10 == 8:
                out.write(f"arxiv:{1001 + n // 100_000:04d}.{n % 100_000:05d}\n")
            else:
                out.write(f"10.{1000 + n % 9000}/bench.{n}\n")


def timed_enqueue(db: Path, source: Path) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one `harvester enqueue`, from the
    kernel's accounting of that process alone (wait4), and what it printed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "harvester", "--db", str(db), "enqueue", str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    summary = process.stdout.read().strip()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"harvester enqueue failed (exit {os.waitstatus_to_exitcode(status)})")
    cpu_s = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - started, cpu_s, usage.ru_maxrss / 1024, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"lines (default {COUNT:,})")
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_COUNT:,} lines by default"
    )
    args = parser.parse_args()
    count = args.count if args.count is not None else SMOKE_COUNT if args.smoke else COUNT
    if args.smoke:
        print(SMOKE_NOTE, flush=True)
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        source, db = Path(tmp) / "ids.txt", Path(tmp) / "bench.db"
        write_identifiers(source, count)
        for label in ("fresh store", "all queued already"):
            wall_s, cpu_s, rss_mb, summary = timed_enqueue(db, source)
            print(
                f"enqueue {count:,} lines ({label}): {wall_s:.2f} s (CPU {cpu_s:.2f} s), "
                f"{count / wall_s:,.0f} lines/s, peak RSS {rss_mb:.0f} MB -> {summary}"
            )
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6
        print(f"store on disk: {size_mb:.0f} MB ({size_mb * 1e6 / count:.0f} bytes per job)")


if __name__ == "__main__":
    main()
