"""Tweet-ledger bookkeeping per response with millions of tweet IDs already charged.

    .venv/bin/python bench/ledger.py [--ledger 2000000] [--responses 400]
    .venv/bin/python bench/ledger.py --smoke   # 20,000 IDs, 40 responses (CI)

Fills a store's ledger with N tweet IDs charged across a 30-day window, then times
what the daemon does per stored response: reading the tweet IDs from the body, and
(on the store's thread) pruning aged-out charges and charging the new IDs, in the
same transaction as the response. Responses carry 0, 50, 500 or 4,000 tweets, like
the simulator's mix; some IDs are already charged (re-fetches).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from harvester.harvest.client import tweet_ids
from harvester.identifiers import Identifier
from harvester.model import JobOutcome, StoredResponse, iso_utc
from harvester.sim import universe
from harvester.store import Store

WINDOW_S = 30 * 86_400.0
LEDGER, RESPONSES = 2_000_000, 400
SMOKE_LEDGER, SMOKE_RESPONSES = 20_000, 40
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"


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


def fill_ledger(store: Store, count: int, rng: random.Random) -> None:
    now_s = time.time()
    rows = ((rng.getrandbits(62), now_s - rng.random() * WINDOW_S) for _ in range(count))
    with store_calls(store).transaction() as conn:
        conn.executemany("INSERT OR IGNORE INTO tweet_ledger VALUES (?, ?)", rows)


def body_with_tweets(ids: list[int]) -> bytes:
    tweets = [{"citation_ids": [1], "author": {"tweeter_id": "1"}, "tweet_id": str(i)} for i in ids]
    return json.dumps({"altmetric_id": 1, "posts": {"twitter": tweets}}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=int, help=f"tweet IDs charged (default {LEDGER:,})")
    parser.add_argument("--responses", type=int, help=f"per measure (default {RESPONSES})")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny run for CI: {SMOKE_LEDGER:,} IDs, {SMOKE_RESPONSES} responses by default",
    )
    args = parser.parse_args()
    if args.ledger is None:
        args.ledger = SMOKE_LEDGER if args.smoke else LEDGER
    if args.responses is None:
        args.responses = SMOKE_RESPONSES if args.smoke else RESPONSES
    if args.smoke:
        print(SMOKE_NOTE)
    rng = random.Random(1)
    with (
        tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp,
        Store(Path(tmp) / "ledger.db") as store,
    ):
        calls = store_calls(store)
        started = time.perf_counter()
        fill_ledger(store, args.ledger, rng)
        print(
            f"ledger filled with {calls.ledger_count(WINDOW_S):,} tweet IDs "
            f"in {time.perf_counter() - started:.1f} s"
        )
        calls.add_jobs(Identifier("doi", f"10.1000/l.{n}") for n in range(args.responses * 2))
        known = [
            row[0] for row in calls.conn.execute("SELECT tweet_id FROM tweet_ledger LIMIT 10000")
        ]
        by_size: dict[int, list[float]] = {0: [], 50: [], 500: [], 4000: []}
        mix_sizes = universe_tweet_counts(args.responses)
        mix_ms: list[float] = []
        parse_us: list[float] = []
        jobs = calls.claim(args.responses * 2, lease_s=600)
        for n, job in enumerate(jobs[: args.responses]):
            size = list(by_size)[n % 4]
            ids = [rng.getrandbits(62) for _ in range(size - size // 10)]
            ids += rng.sample(known, size // 10)  # a tenth already charged
            body = body_with_tweets(ids)
            t0 = time.perf_counter()
            parsed = tweet_ids(body)
            parse_us.append((time.perf_counter() - t0) * 1e6)
            response = StoredResponse(200, body, "{}", "full", iso_utc(time.time()), parsed)
            outcome = JobOutcome(job.id, job.lease_token, "done", True, response=response)
            t0 = time.perf_counter()
            calls.record([outcome], ledger_window_s=WINDOW_S)
            by_size[size].append((time.perf_counter() - t0) * 1e3)
        for job, size in zip(jobs[args.responses :], mix_sizes, strict=False):
            ids = [rng.getrandbits(62) for _ in range(size - size // 10)]
            ids += rng.sample(known, size // 10)
            body = body_with_tweets(ids)
            response = StoredResponse(
                200, body, "{}", "full", iso_utc(time.time()), tweet_ids(body)
            )
            outcome = JobOutcome(job.id, job.lease_token, "done", True, response=response)
            t0 = time.perf_counter()
            calls.record([outcome], ledger_window_s=WINDOW_S)
            mix_ms.append((time.perf_counter() - t0) * 1e3)
        print(
            f"per response, ledger of {args.ledger:,}: record (prune + charge + response "
            "row + commit), median / p95 ms:"
        )
        for size, times in by_size.items():
            times.sort()
            print(
                f"  {size:>5} tweets: {statistics.median(times):6.2f} / "
                f"{times[int(len(times) * 0.95)]:6.2f} ms"
            )
        print(
            f"  the simulator's mix of outputs (mean {statistics.mean(mix_sizes):.0f} tweets):"
            f" mean {statistics.mean(mix_ms):.2f} ms, median {statistics.median(mix_ms):.2f} ms"
            f" per response"
        )
        print(f"  reading tweet IDs from the body: median {statistics.median(parse_us):.0f} us")


def universe_tweet_counts(count: int) -> list[int]:
    """Tweets per answer across the simulator's universe (its realistic, heavy-tailed mix)."""
    counts: list[int] = []
    n = 0
    while len(counts) < count:
        output = universe.output_for("doi", f"10.9998/mix.{n}")
        n += 1
        if output is not None:
            counts.append(len(output["posts"].get("twitter", ())))
    return counts


if __name__ == "__main__":
    main()
