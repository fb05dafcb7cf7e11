"""CPU per tweet ID charged to the ledger, with 2,000,000 IDs already in the window.

    .venv/bin/python bench/ledger.py [--ledger 2000000] [--scale 1.0]
    .venv/bin/python bench/ledger.py --smoke   # 20,000 IDs, a few records each (CI)

Fills a store's ledger with N tweet IDs charged across a 30-day window (one
`tweet_charges` row per charge, sizes from the simulator's mix), then records answers
through `Store.record` as the daemon does (prune, charge, commit), in pairs: the same
outcomes once carrying their tweet IDs and once carrying none. The CPU difference per
ID charged is the ledger's cost; a tenth of each answer's IDs are charged already
(re-fetches). Issue 12's target: at most 1 us per ID. Also reported: the one-time load
of the in-memory index and the store bytes per charged ID.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from harvester.identifiers import Identifier
from harvester.model import ClaimedJob, JobOutcome, StoredResponse, iso_utc
from harvester.sim import universe
from harvester.store import Store
from harvester.store.charged import ids_to_blob

WINDOW_S = 30 * 86_400.0
LEDGER = 2_000_000
SMOKE_LEDGER = 20_000
TARGET_US = 1.0
LEDGER_OBJECTS = ("tweet_charges", "tweet_charges_charged")  # table and index, for dbstat
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


@dataclass(frozen=True)
class Scenario:
    name: str
    size: int  # tweets per answer (0: the simulator's mix)
    per_record: int  # answers per `record` transaction
    records: int  # at --scale 1: about 250,000 IDs each, so merges are included


SCENARIOS = (
    # The daemon commits the answers that wait, up to a few hundred at full speed.
    Scenario("the simulator's mix, 256 answers a record", 0, 256, 20),
    Scenario("the simulator's mix, 1 answer a record", 0, 1, 5000),
    Scenario("50 tweets, 1 answer a record", 50, 1, 5000),
    Scenario("500 tweets, 1 answer a record", 500, 1, 500),
    Scenario("4,000 tweets, 1 answer a record", 4000, 1, 64),
)


def store_calls(store: Store) -> SimpleNamespace:
    """Every use this bench makes of the Store, named once here (the Store is being
    split into rooms: a renamed method is updated on this line alone)."""
    return SimpleNamespace(
        transaction=store.transaction,
        ledger_count=store.ledger.count,
        add_jobs=store.jobs.add,
        claim=store.jobs.claim,
        record=store.record,
        conn=store.conn,
    )


def fill_ledger(store: Store, count: int, rng: random.Random) -> list[int]:
    """`count` random IDs in charges spread over the window, oldest first; a sample of
    them, for answers that carry some already charged."""
    now_s = time.time()
    sizes = [size for size in mix_sizes(2000) if size] or [50]
    charges: list[list[int]] = []
    filled = 0
    while filled < count:
        size = min(rng.choice(sizes), count - filled)
        charges.append(sorted(rng.getrandbits(62) for _ in range(size)))
        filled += size
    times_s = sorted(now_s - rng.random() * WINDOW_S for _ in charges)
    rows = (
        (at_s, len(ids), ids_to_blob(np.array(ids, dtype=np.int64)))
        for at_s, ids in zip(times_s, charges, strict=True)
    )
    with store_calls(store).transaction() as conn:
        conn.executemany(
            "INSERT INTO tweet_charges (charged_at_s, id_count, tweet_ids) VALUES (?, ?, ?)", rows
        )
    recent = [tweet_id for ids in charges[-2000:] for tweet_id in ids]
    return rng.sample(recent, min(10_000, len(recent)))


def ledger_bytes(store: Store) -> int:
    marks = ", ".join("?" for _ in LEDGER_OBJECTS)
    sql = f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})"
    return int(store_calls(store).conn.execute(sql, LEDGER_OBJECTS).fetchone()[0])


def mix_sizes(count: int) -> list[int]:
    """Tweets per answer across the simulator's universe (its realistic, heavy-tailed mix)."""
    counts: list[int] = []
    n = 0
    while len(counts) < count:
        output = universe.output_for("doi", f"10.9998/mix.{n}")
        n += 1
        if output is not None:
            counts.append(len(output["posts"].get("twitter", ())))
    return counts


def answers(
    scenario: Scenario, rng: random.Random, known: list[int], mix: list[int]
) -> Iterator[tuple[int, ...]]:
    """Each answer's tweet IDs: new ones, and a tenth already charged."""
    while True:
        size = scenario.size or rng.choice(mix)
        fresh = [rng.getrandbits(62) for _ in range(size - size // 10)]
        yield (*fresh, *rng.sample(known, size // 10))


class Recorder:
    """Records outcomes for fresh jobs, timing the CPU of each `record`."""

    def __init__(self, store: Store) -> None:
        self._calls = store_calls(store)
        self._serial = 0

    def record(self, tweets: list[tuple[int, ...]]) -> tuple[float, int]:
        """CPU seconds of one `record` of an answer per entry; IDs it charged."""
        outcomes = [
            self._outcome(job, ids)
            for job, ids in zip(self._jobs(len(tweets)), tweets, strict=True)
        ]
        started = time.process_time()
        result = self._calls.record(outcomes, ledger_window_s=WINDOW_S)
        return time.process_time() - started, result.charged

    def _jobs(self, count: int) -> list[ClaimedJob]:
        self._serial += 1
        self._calls.add_jobs(
            Identifier("doi", f"10.1000/l.{self._serial}.{n}") for n in range(count)
        )
        jobs: list[ClaimedJob] = self._calls.claim(count, lease_s=600)
        return jobs

    @staticmethod
    def _outcome(job: ClaimedJob, tweet_ids: tuple[int, ...]) -> JobOutcome:
        response = StoredResponse(200, b"{}", "{}", "full", iso_utc(time.time()), tweet_ids)
        return JobOutcome(job.id, job.lease_token, "done", True, response=response)


def measure(
    recorder: Recorder, scenario: Scenario, records: int, tweets: Iterator[tuple[int, ...]]
) -> str:
    """The CPU per ID charged: records with tweets minus the same records without."""
    with_s = without_s = 0.0
    charged = 0
    for _ in range(records):
        batch = [next(tweets) for _ in range(scenario.per_record)]
        cpu_s, count = recorder.record(batch)
        with_s, charged = with_s + cpu_s, charged + count
        without_s += recorder.record([() for _ in batch])[0]
    per_id_us = (with_s - without_s) / max(charged, 1) * 1e6
    return (
        f"  {scenario.name:<42} {per_id_us:5.2f} us per ID charged"
        f" (target <= {TARGET_US:g}; {charged:,} IDs in {records:,} records)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=int, help=f"tweet IDs charged (default {LEDGER:,})")
    parser.add_argument("--scale", type=float, default=1.0, help="records per scenario, times")
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for CI: {SMOKE_LEDGER:,} IDs"
    )
    args = parser.parse_args()
    ledger = args.ledger or (SMOKE_LEDGER if args.smoke else LEDGER)
    scale = 0.01 if args.smoke else args.scale
    if args.smoke:
        print(SMOKE_NOTE)
    rng = random.Random(1)
    with (
        tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp,
        Store(Path(tmp) / "ledger.db", derive=False) as store,
    ):
        started = time.perf_counter()
        known = fill_ledger(store, ledger, rng)
        used = store_calls(store).ledger_count(WINDOW_S)
        print(f"ledger filled with {used:,} tweet IDs in {time.perf_counter() - started:.1f} s")
        print(f"  store bytes per charged ID (table and index): {ledger_bytes(store) / used:.1f}")
        recorder = Recorder(store)
        cpu_s, _ = recorder.record([tuple(known[:50])])
        print(f"  first charge (loads the in-memory index): {cpu_s:.2f} s of CPU")
        mix = mix_sizes(2000)
        print(f"CPU per tweet ID charged, {used:,} IDs in the window:")
        for scenario in SCENARIOS:
            records = max(2, round(scenario.records * scale))
            print(measure(recorder, scenario, records, answers(scenario, rng, known, mix)))


if __name__ == "__main__":
    main()
