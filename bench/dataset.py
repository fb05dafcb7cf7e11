"""The store as a Parquet dataset (issue 26): a full `export --dataset` of a store of
over a million mention rows (peak RSS, mention rows a second), an incremental one after
1% of the outputs were refreshed (its time against the full one's), and DuckDB's "top
20 journals by mentions in the last month" over the dataset against the same question
to the SQLite store, in the same run. Prints figures; asserts none.

    .venv/bin/python bench/dataset.py [--outputs 17000] [--rounds 3]
    .venv/bin/python bench/dataset.py --smoke   # 300 outputs, one round, in seconds (CI)

The store: N distinct simulator answers (~62 mentions each: 17,000 give ~1.06M mention
rows) stored through `Store.record` as the daemon stores them, derived, then made to
look harvested over twelve months (response ids in twelve runs, a month apart) with
2,000 journals (the simulator knows six). Each export is `python -m harvester.dataset`
(the daemon's child, no config), timed from outside (wall clock) and from inside (its
own seconds, without the interpreter's start-up); its peak RSS is the kernel's
high-water mark (VmHWM) read while it runs. Each round: a full
export into a fresh directory; 1% of the outputs refreshed (a new snapshot each, this
month, through `Store.record`); the incremental export; then the query, SQLite and
DuckDB alternating, each the best of five.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
from storage import simulator_answers, store_all, take  # the store fill of bench/storage.py

from harvester.harvest.client import read_body
from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.store import Store

OUTPUTS, SMOKE_OUTPUTS = 17_000, 300
ROUNDS, SMOKE_ROUNDS = 3, 1
MONTHS = 12
JOURNALS = 2_000
REFRESHED = 0.01
QUERY_REPEATS = 5
RSS_TARGET_MB, ROWS_TARGET, SHARE_TARGET, SPEEDUP_TARGET = 300, 300_000, 0.05, 10  # issue 26
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"

SQLITE_QUERY = """
SELECT o.journal, count(*) AS mentions
FROM latest_outputs AS o JOIN mentions AS m ON m.job_id = o.job_id
WHERE o.fetched_at >= '{month}'
GROUP BY o.journal ORDER BY mentions DESC, o.journal LIMIT 20"""

DUCKDB_QUERY = """
SELECT o.journal, count(*) AS mentions
FROM read_parquet('{dir}/mentions/**/*.parquet', hive_partitioning = true) AS m
JOIN (SELECT * FROM read_parquet('{dir}/latest_outputs/**/*.parquet', hive_partitioning = true)
      AS t ANTI JOIN read_parquet('{dir}/superseded/*.parquet') AS s
      ON t.response_id = s.response_id) AS o
  ON o.response_id = m.response_id
WHERE m.fetched_month >= '{month}' AND o.fetched_month >= '{month}'
GROUP BY o.journal ORDER BY mentions DESC, o.journal LIMIT 20"""


@dataclass
class Export:
    wall_s: float  # the process, start-up included
    inside_s: float  # the export's own seconds (its summary)
    peak_mb: float
    rows: dict[str, int]


def build(path: Path, outputs: int) -> tuple[int, str]:
    """The store; (its mention rows, the last month)."""
    with Store(path) as store:
        store_all(store, take(simulator_answers(0), outputs))
    with sqlite3.connect(path) as conn:
        spread(conn)
        mentions = conn.execute("SELECT count(*) FROM mentions").fetchone()[0]
        month = conn.execute("SELECT max(substr(fetched_at, 1, 7)) FROM outputs").fetchone()[0]
    conn.close()
    return int(mentions), str(month)


def spread(conn: sqlite3.Connection) -> None:
    """Twelve months of harvest, oldest first, and 2,000 journals."""
    last = conn.execute("SELECT max(id) FROM responses").fetchone()[0]
    share = -(-last // MONTHS)
    now_s = time.time()
    for month in range(MONTHS):
        back_s = (MONTHS - 1 - month) * 31 * 86_400
        ids = (month * share + 1, (month + 1) * share)
        when = iso_utc(now_s - back_s)
        conn.execute("UPDATE responses SET fetched_at = ? WHERE id BETWEEN ? AND ?", (when, *ids))
        conn.execute(
            "UPDATE outputs SET fetched_at = ? WHERE response_id BETWEEN ? AND ?", (when, *ids)
        )
    conn.execute(f"UPDATE outputs SET journal = 'J' || (job_id * 7919 % {JOURNALS})")


def refresh(path: Path, round_number: int) -> int:
    """A new snapshot, fetched now, of 1% of the outputs (a different 1% each round)."""
    with Store(path) as store:
        last = store.conn.execute("SELECT max(id) FROM responses").fetchone()[0]
        every = round(1 / REFRESHED)
        job_ids = [
            job_id
            for (job_id,) in store.conn.execute(
                "SELECT id FROM jobs WHERE state = 'done' AND id % ? = ?", (every, round_number)
            )
        ]
        store.jobs.requeue_done(job_ids)
        answers = {
            Identifier(id_type, value): store.bodies.of_response(response_id)
            for id_type, value, response_id in store.conn.execute(
                "SELECT j.id_type, j.identifier, max(r.id) FROM jobs AS j"
                " JOIN responses AS r ON r.job_id = j.id WHERE j.state = 'pending' GROUP BY j.id"
            )
        }
        while claimed := store.jobs.claim(64, lease_s=600):
            outcomes = []
            for job in claimed:
                body = answers[Identifier(job.id_type, job.identifier)]
                response = StoredResponse(
                    200, body, "{}", "full", iso_utc(time.time()), tweet_ids=read_body(body)[1]
                )
                outcomes.append(
                    JobOutcome(job.id, job.lease_token, "done", True, response=response)
                )
            store.record(outcomes, 30 * 86_400)
    with sqlite3.connect(path) as conn:  # the new snapshots' journals, as before
        conn.execute(
            f"UPDATE outputs SET journal = 'J' || (job_id * 7919 % {JOURNALS})"
            " WHERE response_id > ?",
            (last,),
        )
    conn.close()
    return len(job_ids)


def export(store: Path, directory: Path) -> Export:
    """`python -m harvester.dataset STORE DIR` as a process of its own."""
    started_s = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "harvester.dataset", str(store), str(directory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = PeakWatcher(process.pid)
    out, _ = process.communicate()
    peak.join()
    if process.returncode != 0:
        raise SystemExit(f"the export failed (exit {process.returncode})")
    summary = json.loads(out)
    wall_s = time.perf_counter() - started_s
    return Export(wall_s, summary["seconds"], peak.peak_kb / 1024, summary["rows"])


class PeakWatcher(threading.Thread):
    """The kernel's high-water mark of a process's RSS (VmHWM), read every 20 ms until
    it exits: the last reading is its peak but for its last 20 ms. (wait4's ru_maxrss
    would also count this process's RSS at the fork, which Linux carries over.)"""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.status = Path(f"/proc/{pid}/status")
        self.peak_kb = 0
        self.start()

    def run(self) -> None:
        while True:
            try:
                text = self.status.read_text()
            except OSError:
                return
            found = [line.split()[1] for line in text.splitlines() if line.startswith("VmHWM:")]
            if not found:  # a zombie: its memory is gone
                return
            self.peak_kb = max(self.peak_kb, int(found[0]))
            time.sleep(0.02)


def best_of(run: object, repeats: int = QUERY_REPEATS) -> tuple[float, list[tuple[object, ...]]]:
    assert callable(run)
    times, result = [], []
    for _ in range(repeats):
        started_s = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started_s)
    return min(times), result


def query_both(store: Path, directory: Path, month: str) -> tuple[float, float]:
    """(SQLite seconds, DuckDB seconds), the best of five each; the answers must agree."""
    with Store(store, read_only=True) as opened:
        sqlite_s, expected = best_of(
            lambda: opened.conn.execute(SQLITE_QUERY.format(month=month)).fetchall()
        )
    with duckdb.connect() as con:
        sql = DUCKDB_QUERY.format(dir=directory, month=month)
        duckdb_s, found = best_of(lambda: [tuple(row) for row in con.sql(sql).fetchall()])
    if [tuple(row) for row in expected] != found:
        raise SystemExit(f"DuckDB and SQLite disagree:\n{expected}\n{found}")
    return sqlite_s, duckdb_s


def span(values: list[float], unit: str = "", digits: int = 2) -> str:
    low, high = min(values), max(values)
    if f"{low:,.{digits}f}" == f"{high:,.{digits}f}":
        return f"{low:,.{digits}f}{unit}"
    return f"{low:,.{digits}f}-{high:,.{digits}f}{unit}"


# long: one run, printed as it goes, reads best as a whole
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, help=f"outputs (default {OUTPUTS:,})")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {ROUNDS})")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    outputs = args.outputs or (SMOKE_OUTPUTS if args.smoke else OUTPUTS)
    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else ROUNDS)
    if args.smoke:
        print(SMOKE_NOTE)
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        store = Path(tmp) / "store.db"
        started_s = time.perf_counter()
        mentions, month = build(store, outputs)
        built_s = time.perf_counter() - started_s
        print(
            f"store: {outputs:,} outputs, {mentions:,} mention rows, {MONTHS} months,"
            f" {store.stat().st_size / 1e6:,.0f} MB (built in {built_s:.0f} s)"
        )
        fulls: list[Export] = []
        increments: list[Export] = []
        shares: list[float] = []
        speedups: list[float] = []
        for number in range(rounds):
            directory = Path(tmp) / "dataset"
            shutil.rmtree(directory, ignore_errors=True)
            full = export(store, directory)
            fulls.append(full)
            size_mb = sum(p.stat().st_size for p in directory.rglob("*.parquet")) / 1e6
            refreshed = refresh(store, number)
            increment = export(store, directory)
            increments.append(increment)
            shares.append(increment.wall_s / full.wall_s)
            sqlite_s, duckdb_s = query_both(store, directory, month)
            speedups.append(sqlite_s / duckdb_s)
            print(
                f"round {number + 1}: full {full.wall_s:.2f} s ({full.inside_s:.2f} s inside),"
                f" {full.peak_mb:.0f} MB peak, {full.rows['mentions'] / full.wall_s:,.0f} mention"
                f" rows/s, {size_mb:,.0f} MB of Parquet; after refreshing {refreshed:,} outputs:"
                f" incremental {increment.wall_s:.2f} s ({increment.inside_s:.2f} s inside,"
                f" {increment.rows['mentions']:,} mention rows); query: SQLite"
                f" {sqlite_s * 1000:.0f} ms, DuckDB {duckdb_s * 1000:.1f} ms",
                flush=True,
            )
        print()
        walls = [full.wall_s for full in fulls]
        insides = [full.inside_s for full in fulls]
        print(
            f"full export:        {span(walls, ' s')} wall, {span(insides, ' s')}"
            f" inside; peak RSS {span([f.peak_mb for f in fulls], ' MB', 0)}"
            f" (target <= {RSS_TARGET_MB} MB)"
        )
        print(
            f"mention rows/s:     {span([mentions / w for w in walls], '', 0)} wall,"
            f" {span([mentions / f.inside_s for f in fulls], '', 0)} inside"
            f" (target >= {ROWS_TARGET:,})"
        )
        print(
            f"incremental / full: {span(shares, '', 3)} wall,"
            f" {span([i.inside_s / s for i, s in zip(increments, insides, strict=True)], '', 3)}"
            f" inside (target <= {SHARE_TARGET})"
        )
        print(f"DuckDB speed-up:    {span(speedups, 'x', 0)} (target >= {SPEEDUP_TARGET}x)")
        own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"this process's peak RSS: {own_mb:.0f} MB (building the store, the queries)")


if __name__ == "__main__":
    main()
