"""`harvester import` end to end: records/s, peak RSS and the store's size (issues 14, 22).

    .venv/bin/python bench/importdump.py [--count 200000] [--layout mixed] [--compression gzip]
    .venv/bin/python bench/importdump.py --against /tmp/before [--rounds 3]
    .venv/bin/python bench/importdump.py --smoke     # 2,000 records (CI)

Writes a simulated dump (`harvester.sim.dump`: the universe's mix of sizes, both file
layouts, the dump's quirks) to a temporary directory, as a .tar.gz or (`--compression
zstd`) a .tar.zst with frame checksums, then runs `harvester import` on it in a fresh
store as a subprocess, and again on the same store (a second import adds nothing).
Prints records/s over the whole run (Python start-up included), how long the first
pass that proves the file sound took (issue 22), the peak RSS from the kernel's
accounting of that process alone, and the store file against the JSON it holds.

`--against TREE` compares with another checkout of the project (say `git worktree add
/tmp/before HEAD~1`, or `git archive` of it unpacked): first imports into fresh stores,
alternating between that tree and this one for `--rounds` rounds (which goes first
swaps each round), then each side's range of records/s. Nothing here leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import zstandard
from harvest import measured_run

from harvester.sim.dump import DumpSummary, write_dump

COUNT, SMOKE_COUNT = 200_000, 2_000
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"
THIS_TREE = Path(__file__).resolve().parent.parent


def main(count: int, layout: str, compression: str, against: Path | None, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        dump = _write(Path(tmp), count, layout, compression)
        print(
            f"dump: {dump.records:,} records in {dump.members:,} files ({layout}), "
            f"{dump.path.stat().st_size / 1e6:,.1f} MB as {compression}",
            flush=True,
        )
        if against is not None:
            _compare(dump, Path(tmp), against, rounds)
            return
        db = Path(tmp) / "import.db"
        for attempt in ("first import", "second import"):
            _import(THIS_TREE, dump, db, attempt)
        raw = _raw_bytes(db)
        size = sum(
            os.path.getsize(f"{db}{suffix}")
            for suffix in ("", "-wal")
            if os.path.exists(f"{db}{suffix}")
        )
        print(
            f"store file {size / 1e6:,.1f} MB = {size / raw:.3f} of the {raw / 1e6:,.1f} MB of JSON"
        )


def _write(directory: Path, count: int, layout: str, compression: str) -> DumpSummary:
    """The dump, as .tar.gz, or a .tar compressed to .tar.zst (level 3, frame checksums)."""
    if compression == "gzip":
        return write_dump(directory / "dump.tar.gz", count, layout=layout, seed=1)  # type: ignore[arg-type]
    tar = write_dump(directory / "dump.tar", count, layout=layout, seed=1, gzip=False)  # type: ignore[arg-type]
    target = directory / "dump.tar.zst"
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with tar.path.open("rb") as source, target.open("wb") as sink:
        compressor.copy_stream(source, sink)
    tar.path.unlink()
    return DumpSummary(
        target, tar.records, tar.members, tar.rejects, None, tar.records, target.stat().st_size
    )


def _import(tree: Path, dump: DumpSummary, db: Path, what: str) -> float:
    """One `harvester import` from the checkout at `tree`; prints and returns records/s."""
    command = [
        "env",  # execs Python in its place: the usage measured is the import's own
        f"PYTHONPATH={tree}",
        sys.executable,
        "-P",  # not the working directory's harvester: the tree's
        "-m",
        "harvester",
        "--db",
        str(db),
        "import",
        str(dump.path),
    ]
    log, usage, wall_s = measured_run(command, f"harvester import ({what})")
    cpu_s = usage.ru_utime + usage.ru_stime
    peak_mb = usage.ru_maxrss / 1024
    verified_s = _verified_s(log)
    proving = "" if verified_s is None else f", of which {verified_s:.1f} s proving the file"
    rate = dump.records / wall_s
    print(
        f"{what}: {rate:,.0f} records/s ({wall_s:.1f} s wall{proving}, {cpu_s:.1f} s CPU, "
        f"peak RSS {peak_mb:,.0f} MB)",
        flush=True,
    )
    return rate


def _verified_s(log: str) -> float | None:
    """The seconds the `import.verified` event reports, if this import has a first pass."""
    for line in log.splitlines():
        if '"import.verified"' in line:
            return float(json.loads(line)["seconds"])
    return None


def _compare(dump: DumpSummary, directory: Path, against: Path, rounds: int) -> None:
    rates: dict[str, list[float]] = {"against": [], "this": []}
    trees = {"against": against.resolve(), "this": THIS_TREE}
    for round_number in range(rounds):
        order = ["against", "this"] if round_number % 2 == 0 else ["this", "against"]
        for side in order:
            db = directory / f"{side}-{round_number}.db"
            what = f"round {round_number + 1}, {side} ({trees[side]})"
            rates[side].append(_import(trees[side], dump, db, what))
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    for side, found in rates.items():
        print(
            f"{side}: {min(found):,.0f}-{max(found):,.0f} records/s "
            f"(median {sorted(found)[len(found) // 2]:,.0f}, {len(found)} runs)"
        )
    change = sorted(rates["this"])[rounds // 2] / sorted(rates["against"])[rounds // 2] - 1
    print(f"this tree against the other, median to median: {change:+.1%}")


def _raw_bytes(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT sum(size_bytes) FROM responses").fetchone()[0] or 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"records (default {COUNT:,})")
    parser.add_argument("--layout", default="mixed", choices=("ndjson", "per_file", "mixed"))
    parser.add_argument("--compression", default="gzip", choices=("gzip", "zstd"))
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="with --against (default 3)")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_COUNT:,} records, for CI")
    arguments = parser.parse_args()
    if arguments.smoke:
        print(SMOKE_NOTE, flush=True)
    started = time.perf_counter()
    main(
        arguments.count or (SMOKE_COUNT if arguments.smoke else COUNT),
        arguments.layout,
        arguments.compression,
        arguments.against,
        max(1, arguments.rounds),
    )
    print(f"({time.perf_counter() - started:.0f} s in all)", file=sys.stderr)
