"""Write a simulated Altmetric JSON dump, and time reading it back (issue 14).

    .venv/bin/python bench/dumpgen.py PATH [--count 200000] [--layout mixed] [--read]
    .venv/bin/python bench/dumpgen.py --read-only PATH   # time reading an existing dump
    .venv/bin/python bench/dumpgen.py --smoke            # 2,000 records in a temp dir (CI)

Writing uses harvester.sim.dump.write_dump (the universe's mix of sizes, both file
layouts, the dump's quirks); reading times harvester.dump.verify_dump (the first pass
that proves the file sound), then runs harvester.dump.iter_records over the file and
reports records/s and MB/s of the compressed input and of the JSON it held. The reader
is a stage of `harvester import`, whose target is 5,000 records/s end to end: it must
be far faster than that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from harvester.dump import DumpRecord, Rejected, Truncated, iter_records, verify_dump
from harvester.sim.dump import write_dump

COUNT = 200_000
SMOKE_COUNT = 2_000
READER_TARGET = 50_000  # records/s: ten times the import's end-to-end target
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def write(path: Path, count: int, layout: str, seed: int) -> None:
    started = time.perf_counter()
    summary = write_dump(path, count, layout=layout, seed=seed)  # type: ignore[arg-type]
    elapsed_s = time.perf_counter() - started
    print(
        f"wrote {summary.records:,} records in {summary.members:,} files ({layout}) to {path}: "
        f"{summary.size_bytes / 1e6:,.1f} MB in {elapsed_s:.1f} s "
        f"({summary.records / elapsed_s:,.0f} records/s)"
    )


def verify(path: Path) -> None:
    """Prove the whole dump sound, as `harvester import` does first; print how long it took."""
    started = time.perf_counter()
    verified = verify_dump(path)
    elapsed_s = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6 if path.is_file() else float("nan")
    print(
        f"verified ({verified.compression or 'no compression'}) in {elapsed_s:.2f} s: "
        f"{size_mb / elapsed_s:,.1f} MB/s of the file"
        + "".join(f"; {caveat}" for caveat in verified.caveats)
    )


def read(path: Path) -> float:
    """Read the whole dump; print and return records/s."""
    records = rejected = json_bytes = 0
    truncated = None
    started, started_cpu = time.perf_counter(), time.process_time()
    for item in iter_records(path):
        if isinstance(item, DumpRecord):
            records += 1
            json_bytes += len(item.body)
        elif isinstance(item, Rejected):
            rejected += 1
        elif isinstance(item, Truncated):
            truncated = item.reason
    elapsed_s = time.perf_counter() - started
    cpu_us = (time.process_time() - started_cpu) / max(records, 1) * 1e6
    rate = records / elapsed_s
    size_mb = path.stat().st_size / 1e6 if path.is_file() else float("nan")
    print(
        f"read {records:,} records ({rejected} rejected) in {elapsed_s:.2f} s: "
        f"{rate:,.0f} records/s, {size_mb / elapsed_s:,.1f} MB/s compressed, "
        f"{json_bytes / 1e6 / elapsed_s:,.0f} MB/s of JSON "
        f"(mean record {json_bytes / max(records, 1) / 1e3:.1f} KB); {cpu_us:.0f} us CPU a record"
        + (f"; truncated: {truncated}" if truncated else "")
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="the .tar.gz to write (or read)")
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--layout", choices=("ndjson", "per_file", "mixed"), default="mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--read", action="store_true", help="then time reading it back")
    parser.add_argument("--read-only", action="store_true", help="only time reading PATH")
    parser.add_argument("--smoke", action="store_true", help="tiny, in a temporary directory")
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "dump.tar.gz"
            write(path, SMOKE_COUNT, args.layout, args.seed)
            verify(path)
            read(path)
        print(SMOKE_NOTE)
        return 0
    if args.path is None:
        parser.error("give the dump's PATH (or --smoke)")
    if not args.read_only:
        write(args.path, args.count, args.layout, args.seed)
    if args.read or args.read_only:
        verify(args.path)
        rate = read(args.path)
        verdict = "meets" if rate >= READER_TARGET else "misses"
        print(f"{verdict} the reader's target of {READER_TARGET:,} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
