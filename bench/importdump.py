"""`harvester import` end to end: records/s, peak RSS and the store's size (issue 14).

    .venv/bin/python bench/importdump.py [--count 200000] [--layout mixed]
    .venv/bin/python bench/importdump.py --smoke     # 2,000 records (CI)

Writes a simulated dump (`harvester.sim.dump`: the universe's mix of sizes, both file
layouts, the dump's quirks) to a temporary directory, then runs `harvester import` on
it in a fresh store as a subprocess, and again on the same store (a second import adds
nothing). Prints records/s over the whole run (Python start-up included), the peak
RSS from the kernel's accounting of that process alone, and the store file against the
JSON it holds. Nothing here leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from harvest import HARVESTER, measured_run

from harvester.sim.dump import write_dump

COUNT, SMOKE_COUNT = 200_000, 2_000
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def main(count: int, layout: str) -> None:
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        dump = write_dump(Path(tmp) / "dump.tar.gz", count, layout=layout, seed=1)  # type: ignore[arg-type]
        db = Path(tmp) / "import.db"
        print(
            f"dump: {dump.records:,} records in {dump.members:,} files ({layout}), "
            f"{dump.size_bytes / 1e6:,.1f} MB compressed",
            flush=True,
        )
        for attempt in ("first import", "second import"):
            command = [*HARVESTER, "--db", str(db), "import", str(dump.path)]
            _, usage, wall_s = measured_run(command, f"harvester import ({attempt})")
            cpu_s = usage.ru_utime + usage.ru_stime
            peak_mb = usage.ru_maxrss / 1024
            print(
                f"{attempt}: {dump.records / wall_s:,.0f} records/s "
                f"({wall_s:.1f} s wall, {cpu_s:.1f} s CPU, peak RSS {peak_mb:,.0f} MB)",
                flush=True,
            )
        raw = _raw_bytes(db)
        size = sum(
            os.path.getsize(f"{db}{suffix}")
            for suffix in ("", "-wal")
            if os.path.exists(f"{db}{suffix}")
        )
        print(
            f"store file {size / 1e6:,.1f} MB = {size / raw:.3f} of the {raw / 1e6:,.1f} MB of JSON"
        )


def _raw_bytes(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT sum(size_bytes) FROM responses").fetchone()[0] or 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"records (default {COUNT:,})")
    parser.add_argument("--layout", default="mixed", choices=("ndjson", "per_file", "mixed"))
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_COUNT:,} records, for CI")
    arguments = parser.parse_args()
    if arguments.smoke:
        print(SMOKE_NOTE, flush=True)
    started = time.perf_counter()
    main(arguments.count or (SMOKE_COUNT if arguments.smoke else COUNT), arguments.layout)
    print(f"({time.perf_counter() - started:.0f} s in all)", file=sys.stderr)
