"""Storage benchmark: the store's bytes on disk against the raw JSON, and the speed of
`derive --rebuild` (issue 12's storage targets). Prints figures; asserts none.

    .venv/bin/python bench/storage.py [--count 25000] [--heavy-count 2000]
    .venv/bin/python bench/storage.py --smoke   # 200 and 20 answers, in seconds (CI)

Two mixes of distinct simulator answers:
- the simulator's mix: consecutive DOIs as the universe answers them (1% of outputs
  carry thousands of tweets, 10% hundreds, most a few);
- a tweet-heavy mix: the same stream, keeping only the outputs with >= 100 tweets.

Each mix goes into a fresh store through `Store.record`, as the daemon stores it: 64
claimed jobs a batch, each answer with the tweet IDs the daemon reads from it
(`client.read_body`), so the tweet ledger is charged as in a real harvest. Then, each
beside its target: the whole file (derived tables, ledger and indexes included) and the
bodies, as shares of the raw JSON bytes; every table on disk with its indexes, from
SQLite's dbstat (whatever tables the schema has); and `harvester derive --rebuild` on
the store, through the command line's entry point in this process (all of the
command's work, not the interpreter's start-up), in answers/s. Nothing here leaves
the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harvester.cli import main as harvester_main
from harvester.harvest.client import read_body
from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.sim import universe
from harvester.store import Store

BATCH = 64  # outcomes per `record`, as the daemon's batches at concurrency 64
WINDOW_S = 30 * 86_400  # quota.window_s's default, as the daemon passes it
# 25,000: a rebuild this large reads answers in worker processes, as one of a real
# store does (the command's own choice); 10,000 would time the one-process path.
COUNT, SMOKE_COUNT = 25_000, 200
HEAVY_COUNT, SMOKE_HEAVY_COUNT = 2_000, 20
HEAVY_MIN_TWEETS = 100
FILE_TARGET, BODIES_TARGET, DERIVE_TARGET = 0.6, 0.2, 5_000  # issue 12
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


@dataclass
class Answer:
    identifier: Identifier
    body: bytes
    tweets: int


@dataclass
class Command:
    stdout: str
    wall_s: float
    cpu_s: float


def simulator_answers(min_tweets: int) -> Iterator[Answer]:
    """Distinct known outputs, rendered as the API answers them, in the universe's
    order; only those with at least `min_tweets` tweets."""
    n = 0
    while True:
        identifier = Identifier("doi", f"10.9000/storage.{n}")
        n += 1
        output = universe.output_for(identifier.id_type, identifier.value)
        if output is None:
            continue
        tweets = len(output.get("posts", {}).get("twitter", ()))
        if tweets >= min_tweets:
            yield Answer(identifier, universe.render(output), tweets)


def take(answers: Iterator[Answer], count: int) -> list[Answer]:
    return [answer for answer, _ in zip(answers, range(count), strict=False)]


def store_all(store: Store, answers: list[Answer]) -> tuple[float, float]:
    """Record every answer, BATCH claimed jobs at a time; (seconds, CPU seconds) spent
    in `record` (which runs on one thread, as on the daemon's store thread)."""
    store.jobs.add([answer.identifier for answer in answers])
    by_identifier = {answer.identifier: answer.body for answer in answers}
    wall_s = cpu_s = 0.0
    while claimed := store.jobs.claim(BATCH, lease_s=600):
        outcomes = []
        for job in claimed:
            body = by_identifier[Identifier(job.id_type, job.identifier)]
            response = StoredResponse(
                200, body, "{}", "full", iso_utc(time.time()), tweet_ids=read_body(body)[1]
            )
            outcomes.append(JobOutcome(job.id, job.lease_token, "done", True, response=response))
        started_s, started_cpu_s = time.perf_counter(), time.process_time()
        store.record(outcomes, WINDOW_S)
        wall_s += time.perf_counter() - started_s
        cpu_s += time.process_time() - started_cpu_s
    return wall_s, cpu_s


def bytes_per_table(path: Path) -> tuple[dict[str, tuple[int, int, int]], int]:
    """({table: (its bytes, its own B-tree's bytes, how many indexes)}, free bytes),
    from dbstat: every B-tree on disk, each index counted with its table."""
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
        tables: dict[str, list[int]] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)  # sqlite_schema owns itself
            entry = tables.setdefault(table, [0, 0, 0])
            entry[0] += size
            if name == table:
                entry[1] += size
            else:
                entry[2] += 1
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
    finally:
        conn.close()
    ordered = sorted(tables.items(), key=lambda item: -item[1][0])
    return {name: (total, own, indexes) for name, (total, own, indexes) in ordered}, free


def cpu_with_children_s() -> float:
    """CPU seconds of this process and of its ended children (derive's workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rebuild_derived(path: Path) -> Command:
    """`harvester derive --rebuild` on the store, through the command line's own entry
    point in this process: the command's whole work (opening the store, checking every
    body, emptying and refilling the derived tables), without the interpreter's
    start-up, which would swamp a small run."""
    output = io.StringIO()
    started_s, started_cpu_s = time.perf_counter(), cpu_with_children_s()
    with contextlib.redirect_stdout(output):
        code = harvester_main(["--db", str(path), "derive", "--rebuild"])
    wall_s, cpu_s = time.perf_counter() - started_s, cpu_with_children_s() - started_cpu_s
    if code != 0:
        raise SystemExit(f"harvester derive --rebuild failed (exit {code}): {output.getvalue()}")
    return Command(output.getvalue(), wall_s, cpu_s)


def ratio_line(label: str, size: int, count: int, raw: int, target: float | None) -> str:
    beside = f"   (target <= {target})" if target is not None else ""
    return f"  {label:<20}{size / count:9,.0f} B/response = {size / raw:.3f} of raw{beside}"


def measure_mix(title: str, answers: list[Answer], path: Path) -> None:
    count, raw = len(answers), sum(len(answer.body) for answer in answers)
    tweets = sum(answer.tweets for answer in answers)
    with Store(path) as store:
        record_s, record_cpu_s = store_all(store, answers)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        compressed = store.conn.execute("SELECT sum(length(data)) FROM bodies").fetchone()[0]
    tables, free = bytes_per_table(path)
    print(
        f"storage, {title}: {count:,} distinct answers, {raw / count:,.0f} B of raw JSON "
        f"and {tweets / count:,.0f} tweets each"
    )
    print(ratio_line("whole file", path.stat().st_size, count, raw, FILE_TARGET))
    print(ratio_line("compressed bodies", compressed, count, raw, BODIES_TARGET))
    print(ratio_line("bodies on disk", tables.get("bodies", (0, 0, 0))[0], count, raw, None))
    print("  per table on disk, its indexes included (dbstat):")
    for name, (total, own, indexes) in tables.items():
        print(
            f"    {name:<22}{total / count:9,.0f} B/response = {total / raw:.3f} of raw"
            f"  (table {own / count:,.0f} + {indexes} index{'es' * (indexes != 1)} "
            f"{(total - own) / count:,.0f})"
        )
    if free:
        print(f"    {'(free pages)':<22}{free / count:9,.0f} B/response")
    print(
        f"  record (store, compress, derive, charge): {record_s / count * 1e6:,.0f} us/response"
        f" (CPU {record_cpu_s / count * 1e6:,.0f} us)"
    )
    rebuild = rebuild_derived(path)
    print(
        f"  derive --rebuild: {rebuild.stdout.split(';')[0].strip()} in {rebuild.wall_s:.2f} s"
        f" (CPU {rebuild.cpu_s:.2f} s, workers included) = {count / rebuild.wall_s:,.0f} answers/s "
        f"(target >= {DERIVE_TARGET:,}), {tweets / rebuild.wall_s:,.0f} tweets/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"the simulator's mix (default {COUNT:,})")
    parser.add_argument(
        "--heavy-count", type=int, help=f"the tweet-heavy mix (default {HEAVY_COUNT:,})"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny run for CI: {SMOKE_COUNT} and {SMOKE_HEAVY_COUNT} answers",
    )
    args = parser.parse_args()
    count = args.count or (SMOKE_COUNT if args.smoke else COUNT)
    heavy_count = args.heavy_count or (SMOKE_HEAVY_COUNT if args.smoke else HEAVY_COUNT)
    if args.smoke:
        print(SMOKE_NOTE)
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        directory = Path(tmp)
        heavy = f"a tweet-heavy mix (>= {HEAVY_MIN_TWEETS} tweets)"
        mixes = (
            ("mix", "the simulator's mix", count, 0),
            ("heavy", heavy, heavy_count, HEAVY_MIN_TWEETS),
        )
        for name, title, size, least in mixes:
            # One mix in memory at a time (the heavy one is ~140 MB of JSON).
            measure_mix(title, take(simulator_answers(least), size), directory / f"{name}.db")


if __name__ == "__main__":
    main()
