"""The harvester's CPU per stored response as a ratio of the naive reference's (issue 12).

    .venv/bin/python bench/ratio.py                # 10,000 identifiers, 3 rounds
    .venv/bin/python bench/ratio.py --count 20000 --rounds 5
    .venv/bin/python bench/ratio.py --smoke        # 200 identifiers, 1 round (CI)

One simulator in its own process (pre-rendered body pool, no latency, no rate limit)
answers both contenders, which harvest the same identifiers into fresh stores:

- naive: bench/naive.py (aiohttp with a semaphore, sqlite3, one row per answer,
  a commit every 100 rows), concurrency 64;
- harvester: `harvester run --drain` after `harvester enqueue`, with a config like
  bench/harvest.py's cpu benchmark (rate 1,000,000/s, concurrency 64), store.derive
  on, and again off.

Each run is a subprocess whose CPU (user + sys) comes from the kernel's accounting of
that process alone (wait4). Each contender's start-up CPU is measured in every round by
the same command with nothing to do (an empty identifier file; an empty store) and
subtracted. The contenders alternate within a round, and the order rotates from round
to round, so that this shared machine's drift falls on all of them alike. The ratio
harvester/naive is taken within each round and reported as a range over the rounds.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harvest import KEY, SimulatorProcess, measured, write_config  # bench/harvest.py's set-up

from harvester.store import Store

HARVESTER = [sys.executable, "-m", "harvester"]
NAIVE = [sys.executable, str(Path(__file__).with_name("naive.py"))]
CONCURRENCY = 64
BODY_POOL = 2000  # as bench/harvest.py: the simulator's CPU stays off the contenders' core
COUNT = 10_000
ROUNDS = 3
SMOKE_COUNT = 200
SMOKE_BODY_POOL = 200
SMOKE_NOTE = "smoke run: tiny sizes through the same code path; these figures mean nothing"
TARGET = 0.7  # issue 12: harvester CPU per stored response <= 0.7x the naive script's
CONTENDERS = ("naive", "harvester derive on", "harvester derive off")


@dataclass
class Run:
    answers: int
    not_found: int
    cpu_s: float
    wall_s: float


def run_naive(directory: Path, base_url: str, ids: Path) -> Run:
    db = directory / "naive.db"
    db.unlink(missing_ok=True)
    command = [*NAIVE, "--base-url", base_url, "--key", KEY, "--ids", str(ids), "--db", str(db)]
    _, cpu_s, wall_s = measured([*command, "--concurrency", str(CONCURRENCY)], "naive.py")
    with sqlite3.connect(db) as connection:
        answers, not_found = connection.execute(
            "SELECT count(*), coalesce(sum(status = 404), 0) FROM responses"
        ).fetchone()
    connection.close()
    return Run(answers, not_found, cpu_s, wall_s)


def run_harvester(directory: Path, base_url: str, ids: Path, derive: bool) -> Run:
    db = directory / "harvester.db"
    for leftover in directory.glob("harvester.db*"):
        leftover.unlink()
    lines = ids.read_text()
    if lines:
        subprocess.run(
            [*HARVESTER, "--db", str(db), "enqueue"],
            input=lines,
            text=True,
            check=True,
            capture_output=True,
        )
    else:  # `enqueue` of nothing leaves no store, and `run` refuses a missing one
        with Store(db):
            pass
    config = write_config(
        directory, base_url, CONCURRENCY, derive=derive, name=f"derive-{str(derive).lower()}.toml"
    )
    command = [*HARVESTER, "--config", str(config), "--db", str(db), "run", "--drain"]
    log, cpu_s, wall_s = measured(command, "harvester run")
    stop = next(json.loads(line) for line in log.splitlines() if '"harvest.stop"' in line)
    not_found = stop.get("not_found", 0)
    return Run(stop.get("done", 0) + not_found, not_found, cpu_s, wall_s)


def run_contender(name: str, directory: Path, base_url: str, ids: Path) -> Run:
    if name == "naive":
        return run_naive(directory, base_url, ids)
    return run_harvester(directory, base_url, ids, derive=name.endswith(" on"))


def span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f}-{high:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help=f"identifiers (default {COUNT:,})")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {ROUNDS})")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny run for CI: {SMOKE_COUNT} identifiers, 1 round",
    )
    args = parser.parse_args()
    count = args.count or (SMOKE_COUNT if args.smoke else COUNT)
    rounds = args.rounds or (1 if args.smoke else ROUNDS)
    if args.smoke:
        print(SMOKE_NOTE)
    print(
        f"ratio: {count:,} identifiers, {rounds} round(s), concurrency {CONCURRENCY}, "
        "no latency, no rate limit; CPU per stored response, start-up subtracted",
        flush=True,
    )

    per_answer_us: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory(prefix="harvester-ratio-") as tmp:
        directory = Path(tmp)
        ids = directory / "ids.txt"
        ids.write_text("".join(f"10.{1000 + n % 9000}/r.{n}\n" for n in range(count)))
        empty = directory / "empty.txt"
        empty.write_text("")
        simulator = SimulatorProcess(0, SMOKE_BODY_POOL if args.smoke else BODY_POOL)
        try:
            for round_number in range(rounds):
                shift = round_number % len(CONTENDERS)
                order = CONTENDERS[shift:] + CONTENDERS[:shift]
                not_found: dict[str, int] = {}
                for name in order:
                    startup = run_contender(name, directory, simulator.base_url, empty)
                    run = run_contender(name, directory, simulator.base_url, ids)
                    if run.answers != count:
                        raise SystemExit(f"{name} stored {run.answers} answers of {count}")
                    not_found[name] = run.not_found
                    us = (run.cpu_s - startup.cpu_s) / run.answers * 1e6
                    per_answer_us[name].append(us)
                    print(
                        f"round {round_number + 1} {name:<20} {run.answers:,} answers "
                        f"({run.not_found:,} 404): CPU {run.cpu_s:.2f} s - start-up "
                        f"{startup.cpu_s:.2f} s -> {us:,.0f} us per stored response; "
                        f"wall {run.wall_s:.1f} s",
                        flush=True,
                    )
                if len(set(not_found.values())) != 1:
                    raise SystemExit(f"the contenders disagree on the 404s: {not_found}")
        finally:
            simulator.close()

    print(f"CPU per stored response over {rounds} round(s), us:")
    for name in CONTENDERS:
        print(f"  {name:<20} {span(per_answer_us[name])}")
    naive = per_answer_us["naive"]
    for name in CONTENDERS[1:]:
        ratios = [mine / base for mine, base in zip(per_answer_us[name], naive, strict=True)]
        print(
            f"ratio {name} / naive, per round: {span(ratios, 2)} "
            f"(target <= {TARGET}; rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
