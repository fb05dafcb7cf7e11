"""latest_outputs at scale: the view most questions start from, over N outputs.

    .venv/bin/python bench/latest.py [--outputs 1000000] [--snapshots 2]
    .venv/bin/python bench/latest.py --smoke   # 5,000 outputs (CI)

Fills `outputs` with N outputs of S snapshots each (2,000 journals, random scores;
other derived tables empty, foreign keys off for the fill only) and times three
queries through a read-only store: a count, the top 20 of one journal, and a
GROUP BY over every journal.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from harvester.store import Store

QUERIES = (
    "SELECT count(*) FROM latest_outputs",
    "SELECT doi, title, score FROM latest_outputs WHERE journal = 'J7'"
    " ORDER BY score DESC LIMIT 20",
    "SELECT journal, count(*), avg(score) FROM latest_outputs GROUP BY journal",
)
OUTPUTS, SMOKE_OUTPUTS = 1_000_000, 5_000
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def store_calls(store: Store) -> SimpleNamespace:
    """Every use this bench makes of the Store, named once here (the Store is being
    split into rooms: a renamed attribute is updated on this line alone)."""
    return SimpleNamespace(conn=store.conn)


def fill(path: Path, outputs: int, snapshots: int) -> None:
    with Store(path):
        pass  # the schema, by the store's own migrations
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO outputs (response_id, job_id, altmetric_id, identifiers, journal,"
            " score, fetched_at, mode, is_latest) VALUES (?, ?, ?, '{}', ?, ?, 'x', 'full', ?)",
            (
                (
                    r,
                    (r - 1) % outputs + 1,
                    r,
                    f"J{r % 2000}",
                    rng.random() * 100,
                    r > outputs * (snapshots - 1),  # each output's last snapshot
                )
                for r in range(1, outputs * snapshots + 1)
            ),
        )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, help=f"outputs (default {OUTPUTS:,})")
    parser.add_argument("--snapshots", type=int, default=2)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny run for CI: {SMOKE_OUTPUTS:,} outputs by default",
    )
    args = parser.parse_args()
    if args.outputs is None:
        args.outputs = SMOKE_OUTPUTS if args.smoke else OUTPUTS
    if args.smoke:
        print(SMOKE_NOTE)
    with tempfile.TemporaryDirectory(prefix="bench-latest-") as tmp:
        path = Path(tmp) / "store.db"
        fill(path, args.outputs, args.snapshots)
        print(f"latest_outputs: {args.outputs:,} outputs x {args.snapshots} snapshots")
        with Store(path, read_only=True) as store:
            conn = store_calls(store).conn
            for sql in QUERIES:
                started = time.perf_counter()
                rows = conn.execute(sql).fetchall()
                print(f"  {time.perf_counter() - started:6.2f} s  {len(rows):>5} rows  {sql}")


if __name__ == "__main__":
    main()
