"""Storage benchmark: bytes on disk per response against the raw JSON, and derive speed.

    .venv/bin/python bench/storage.py [--count 10000]
    .venv/bin/python bench/storage.py --smoke   # 200 answers (CI)

Stores N distinct simulator answers (the universe's own mix: 1% of outputs carry
thousands of tweets) through the store's `record`, as the daemon does in batches of
64, then prints:
- raw JSON bytes, the compressed bodies' bytes and the pages the bodies table takes
  on disk (SQLite's dbstat), each per response and as a share of the raw bytes;
- the whole file on disk, derived tables and indexes included, per table;
- derive throughput: `derive --rebuild` over all N answers (responses/s), and the
  share of it that is parsing the JSON.
Nothing here leaves the process.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.sim import universe
from harvester.store import Store
from harvester.store.derived import clear_all, derive_missing
from harvester.store.snapshot import snapshot_of

BATCH = 64
COUNT, SMOKE_COUNT = 10_000, 200
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def store_calls(store: Store) -> SimpleNamespace:
    """Every use this bench makes of the Store, named once here (the Store is being
    split into rooms: a renamed method is updated on this line alone)."""
    return SimpleNamespace(
        add_jobs=store.jobs.add,
        claim=store.jobs.claim,
        record=store.record,
        conn=store.conn,
        clear_derived=lambda: clear_all(store.conn),
        derive_missing=lambda: derive_missing(store.conn, store.bodies),
    )


def answers(count: int) -> list[tuple[Identifier, bytes]]:
    """N distinct known outputs, rendered as the API would answer them."""
    found: list[tuple[Identifier, bytes]] = []
    n = 0
    while len(found) < count:
        identifier = Identifier("doi", f"10.9000/storage.{n}")
        output = universe.output_for(identifier.id_type, identifier.value)
        if output is not None:
            found.append((identifier, universe.render(output)))
        n += 1
    return found


def store_all(store: Store, items: list[tuple[Identifier, bytes]]) -> float:
    """Record every answer, BATCH at a time; seconds spent in `record`."""
    calls = store_calls(store)
    calls.add_jobs([identifier for identifier, _ in items])
    bodies = dict(items)
    spent_s = 0.0
    while claimed := calls.claim(BATCH, lease_s=600):
        outcomes = [
            JobOutcome(
                job.id,
                job.lease_token,
                "done",
                True,
                response=StoredResponse(
                    200,
                    bodies[Identifier(job.id_type, job.identifier)],
                    "{}",
                    "full",
                    iso_utc(time.time()),
                ),
            )
            for job in claimed
        ]
        started = time.perf_counter()
        calls.record(outcomes)
        spent_s += time.perf_counter() - started
    return spent_s


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes on disk per table and index (dbstat), largest first."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"distinct answers (default {COUNT:,})")
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_COUNT} answers by default"
    )
    args = parser.parse_args()
    if args.count is None:
        args.count = SMOKE_COUNT if args.smoke else COUNT
    if args.smoke:
        print(SMOKE_NOTE)
    items = answers(args.count)
    raw_bytes = sum(len(body) for _, body in items)
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        path = Path(tmp) / "store.db"
        with Store(path) as store:
            record_s = store_all(store, items)
            conn = store_calls(store).conn
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            compressed = conn.execute("SELECT sum(length(data)) FROM bodies").fetchone()[0]
            trained = conn.execute("SELECT count(*) FROM zstd_dictionaries").fetchone()[0]
        sizes = table_bytes(path)
        file_bytes = path.stat().st_size

        with Store(path) as store:
            calls = store_calls(store)
            calls.clear_derived()
            started = time.perf_counter()
            derived, skipped = calls.derive_missing()
            derive_s = time.perf_counter() - started
        started = time.perf_counter()
        for _, body in items:
            snapshot_of(body)
        parse_s = time.perf_counter() - started

    count = len(items)
    bodies_disk = sizes.get("bodies", 0)
    print(f"storage: {count:,} distinct simulator answers, {raw_bytes / count:,.0f} B raw each")
    for label, size in (
        ("compressed bodies", compressed),
        ("bodies on disk", bodies_disk),
        ("whole file", file_bytes),
    ):
        print(f"  {label:<19}{size / count:8,.0f} B/response = {size / raw_bytes:.3f} of raw")
    print(f"  (dictionary trained: {'yes' if trained else 'no'})")
    for name, size in list(sizes.items())[:8]:
        print(f"    {name:<24}{size / count:8,.0f} B/response")
    print(f"record (store + compress + derive): {record_s / count * 1e6:,.0f} us per response")
    print(
        f"derive --rebuild: {derived:,} answers in {derive_s:.2f} s = "
        f"{derived / derive_s:,.0f} responses/s ({skipped} skipped); "
        f"JSON reading alone {count / parse_s:,.0f}/s"
    )


if __name__ == "__main__":
    main()
