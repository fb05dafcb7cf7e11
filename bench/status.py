"""Status benchmark: what a live status costs on a store the size of the universe.

    .venv/bin/python bench/status.py [--jobs 8100000]
    .venv/bin/python bench/status.py --smoke   # 2,000 jobs (CI)

Builds a store of N jobs (90% done with a response each, the rest pending, failed or
with retry errors), then times, as the daemon and an operator would meet them:
- `harvester status --json` as a subprocess (Python start-up included);
- the daemon's periodic work: a job count by state (once a minute) and the heartbeat
  commit (every 5 s);
- `status` while another connection holds the write lock, to show a reader never
  waits for the writer (WAL).
Bodies are small (every response shares one): every figure here reads indexes, not
bodies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from harvester.model import iso_utc
from harvester.store import Store

HARVESTER = [sys.executable, "-m", "harvester"]
BATCH = 200_000
BODY = b"{}"
JOBS, SMOKE_JOBS = 1_000_000, 2_000
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


def store_calls(store: Store) -> SimpleNamespace:
    """Every use this bench makes of the Store, named once here (the Store is being
    split into rooms: a renamed method is updated on this line alone)."""
    return SimpleNamespace(
        counts_by_state=store.jobs.counts_by_state,
        save_states=store.state.save,
        conn=store.conn,
    )


def build_store(path: Path, jobs: int) -> None:
    with Store(path):
        pass  # the schema, by the store's own migrations
    conn = sqlite3.connect(path)
    now_s = time.time()
    with conn:  # the one body every response points at
        conn.execute(
            "INSERT INTO bodies (id, sha256, size_bytes, codec, data)"
            " VALUES (1, ?, ?, 'identity', ?)",
            (hashlib.sha256(BODY).hexdigest(), len(BODY), BODY),
        )
    for start in range(0, jobs, BATCH):
        job_rows, response_rows = [], []
        for n in range(start, min(start + BATCH, jobs)):
            state, error = "done", None
            if n % 10 == 9:
                state = ("pending", "pending", "failed", "not_found")[n // 10 % 4]
                error = f"HTTP {500 + n % 4}" if state != "not_found" else None
            stamp = iso_utc(now_s - (jobs - n) * 0.001)
            identifier = f"10.{1000 + n % 9000}/s.{n}"
            job_rows.append((n + 1, "doi", identifier, state, stamp, error, stamp, stamp))
            if state in ("done", "not_found"):
                response_rows.append((n + 1, 200 if state == "done" else 404, stamp))
        with conn:
            conn.executemany(
                """INSERT INTO jobs (id, id_type, identifier, state, next_attempt_at,
                   last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                job_rows,
            )
            conn.executemany(
                """INSERT INTO responses (job_id, http_status, sha256, size_bytes,
                   request_params, fetched_at, body_id) VALUES (?, ?, 'x', 2, '{}', ?, 1)""",
                response_rows,
            )
    conn.close()


def timed(action: object, repeats: int = 5) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def status_subprocess(db: Path) -> dict:
    result = subprocess.run(
        [*HARVESTER, "--db", str(db), "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"status failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help=f"jobs in the store (default {JOBS:,})")
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_JOBS:,} jobs by default"
    )
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = SMOKE_JOBS if args.smoke else JOBS
    if args.smoke:
        print(SMOKE_NOTE, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        db = Path(tmp) / "store.db"
        started = time.perf_counter()
        build_store(db, args.jobs)
        size_mb = os.path.getsize(db) / 1e6
        print(f"store: {args.jobs:,} jobs built in {time.perf_counter() - started:.1f} s")
        print(f"  {size_mb:,.0f} MB on disk")

        status_s = timed(lambda: status_subprocess(db), repeats=3)
        print(f"harvester status --json (subprocess, start-up included): {status_s:.2f} s")

        with Store(db) as store:
            calls = store_calls(store)
            count_s = timed(calls.counts_by_state)
            heartbeat = json.dumps(
                {
                    "pid": os.getpid(),
                    "state": "running",
                    "started_at": iso_utc(time.time()),
                    "heartbeat_at_s": time.time(),
                    "requests_per_s": 1.0,
                    "achieved_per_s": 0.98,
                    "quota_mode": "full",
                    "concurrency": 8,
                }
            )
            commit_s = timed(lambda: calls.save_states({"heartbeat": heartbeat}), repeats=50)
            print(f"daemon: job count by state {count_s * 1000:.0f} ms (once a minute);")
            print(f"  heartbeat commit {commit_s * 1000:.2f} ms (every 5 s)")

            calls.conn.execute("BEGIN IMMEDIATE")  # a writer holding the lock
            calls.conn.execute("UPDATE jobs SET priority = 1 WHERE id = 1")
            blocked_s = timed(lambda: status_subprocess(db), repeats=3)
            calls.conn.execute("ROLLBACK")
        print(f"status while a writer holds the write lock: {blocked_s:.2f} s")


if __name__ == "__main__":
    main()
