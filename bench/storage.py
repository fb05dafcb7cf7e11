"""Storage benchmark: bytes on disk per response against the raw JSON, and derive speed.

    .venv/bin/python bench/storage.py [--count 10000]

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

from harvester.identifiers import Identifier
from harvester.sim import universe
from harvester.store.core import JobOutcome, Store, StoredResponse, iso_utc
from harvester.store.derived import clear_all, derive_missing
from harvester.store.snapshot import snapshot_of

BATCH = 64


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
    store.add_jobs([identifier for identifier, _ in items])
    bodies = dict(items)
    spent_s = 0.0
    while claimed := store.claim(BATCH, lease_s=600):
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
        store.record(outcomes)
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
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    items = answers(args.count)
    raw_bytes = sum(len(body) for _, body in items)
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        path = Path(tmp) / "store.db"
        with Store(path) as store:
            record_s = store_all(store, items)
            store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            compressed = store.conn.execute("SELECT sum(length(data)) FROM bodies").fetchone()[0]
            trained = store.conn.execute("SELECT count(*) FROM zstd_dictionaries").fetchone()[0]
        sizes = table_bytes(path)
        file_bytes = path.stat().st_size

        with Store(path) as store:
            clear_all(store)
            started = time.perf_counter()
            derived, skipped = derive_missing(store)
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
