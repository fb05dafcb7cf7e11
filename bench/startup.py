"""Start-up benchmark: how long `harvester` takes to start, against Python itself.

    .venv/bin/python bench/startup.py [--rounds 15]
    .venv/bin/python bench/startup.py --against /tmp/before [--rounds 15]
    .venv/bin/python bench/startup.py --smoke     # 2 rounds (CI)

Times, as a person meets them, each as a process of its own, in one run and
alternating (round by round, the order rotating, so a busy machine weighs on every
case alike):
- `python -c pass`: the interpreter's own start, the floor;
- `harvester --version` and `harvester --help`;
- `harvester status` on a small store (200 jobs);
- a completion TAB, as bash's completion script asks it (argcomplete's protocol:
  `_ARGCOMPLETE=1`, `COMP_LINE`, the answer written to a file): `harvester sta<TAB>`,
  `harvester show <TAB>` (identifier types) and `harvester export --table <TAB>` (the
  store's tables).
Each case's wall seconds are printed as a range over the rounds with the median, and
the peak RSS of that process alone (the kernel's accounting, `wait4`). The issue's
bounds (issue 24): `--version` and `--help` 0.2 s, `status` 0.4 s, a TAB 0.25 s.

`--against TREE` runs another checkout of the project (say `git worktree add
/tmp/before HEAD`) in the same rounds, each case alternating between that tree and
this one, so both sides' ranges come from the same minutes of the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

THIS_TREE = Path(__file__).resolve().parent.parent
ROUNDS, SMOKE_ROUNDS = 15, 2
JOBS = 200
BOUNDS_S = {"--version": 0.2, "--help": 0.2, "status": 0.4, "TAB": 0.25}
SMOKE_NOTE = "smoke run: 2 rounds through the same code path; these figures mean nothing"
# The console script's own two lines (`.venv/bin/harvester`), run from a given tree.
ENTRY = "import sys; from harvester.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Case:
    """One thing a person starts: its label, its arguments, and for a TAB the line."""

    label: str
    args: tuple[str, ...] = ()
    comp_line: str | None = None  # a completion request for this command line
    python_only: bool = False  # `python -c pass`: no harvester at all


@dataclass
class Figures:
    wall_s: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)


def cases(db: Path) -> list[Case]:
    return [
        Case("python -c pass", python_only=True),
        Case("harvester --version", ("--version",)),
        Case("harvester --help", ("--help",)),
        Case("harvester status (200 jobs)", ("--db", str(db), "status")),
        Case("TAB: harvester sta", comp_line="harvester sta"),
        Case("TAB: harvester show ", comp_line="harvester show "),
        Case("TAB: harvester export --table ", comp_line=f"harvester --db {db} export --table "),
    ]


def command(tree: Path, case: Case) -> list[str]:
    if case.python_only:
        return [sys.executable, "-P", "-c", "pass"]
    return [sys.executable, "-P", "-c", ENTRY, *case.args]


def environment(tree: Path, case: Case, answer: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for name in ("HARVESTER_CONFIG", "HARVESTER_DB", "ALTMETRIC_API_KEY"):
        env.pop(name, None)
    if case.comp_line is not None:
        env.update(
            _ARGCOMPLETE="1",
            _ARGCOMPLETE_SHELL="bash",
            _ARGCOMPLETE_STDOUT_FILENAME=str(answer),
            COMP_LINE=case.comp_line,
            COMP_POINT=str(len(case.comp_line)),
            COMP_TYPE="9",
        )
    return env


def measure(tree: Path, case: Case, directory: Path) -> tuple[float, float, str]:
    """One process: its wall seconds, its peak RSS in MB, and what it answered."""
    answer = directory / "answer.txt"
    answer.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command(tree, case),
        env=environment(tree, case, answer),
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    process.stdout.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{case.label} ({tree}) exited {code}:\n{output.decode()[-2000:]}")
    said = answer.read_text() if answer.exists() else output.decode()
    return wall_s, usage.ru_maxrss / 1024, said


def build_store(directory: Path) -> Path:
    db = directory / "small.db"
    lines = "".join(f"10.1000/startup.{n}\n" for n in range(JOBS))
    subprocess.run(
        [sys.executable, "-P", "-c", ENTRY, "--db", str(db), "enqueue"],
        input=lines,
        text=True,
        env={**os.environ, "PYTHONPATH": str(THIS_TREE)},
        capture_output=True,
        check=True,
    )
    return db


def bound_of(label: str) -> float | None:
    for key, bound_s in BOUNDS_S.items():
        if key in label:
            return bound_s
    return None


def report(label: str, figures: Figures, floor_s: float) -> str:
    walls = figures.wall_s
    median_s = statistics.median(walls)
    bound_s = bound_of(label)
    bound = (
        ""
        if bound_s is None
        else f"; bound {bound_s:g} s: {'met' if median_s <= bound_s else 'MISSED'}"
    )
    return (
        f"  {label:<34} {min(walls):.3f}-{max(walls):.3f} s, median {median_s:.3f} s "
        f"(+{median_s - floor_s:.3f} s over python), peak RSS {max(figures.peak_mb):.0f} MB{bound}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help=f"rounds (default {ROUNDS})")
    parser.add_argument("--against", type=Path, metavar="TREE", help="another checkout to compare")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI: 2 rounds")
    args = parser.parse_args()
    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else ROUNDS)
    if args.smoke:
        print(SMOKE_NOTE, flush=True)
    trees = {"this": THIS_TREE}
    if args.against is not None:
        trees = {"against": args.against.resolve(), "this": THIS_TREE}
    with tempfile.TemporaryDirectory(prefix="harvester-bench-startup-") as tmp:
        directory = Path(tmp)
        db = build_store(directory)
        all_cases = cases(db)
        figures = {(side, case.label): Figures() for side in trees for case in all_cases}
        answers: dict[str, str] = {}
        for round_number in range(rounds):
            shift = round_number % len(all_cases)
            for case in all_cases[shift:] + all_cases[:shift]:
                sides = list(trees) if round_number % 2 == 0 else list(reversed(trees))
                for side in sides:
                    wall_s, peak_mb, said = measure(trees[side], case, directory)
                    figures[side, case.label].wall_s.append(wall_s)
                    figures[side, case.label].peak_mb.append(peak_mb)
                    if case.comp_line is not None and side == "this":
                        answers[case.label] = " ".join(said.replace("\v", " ").split())
        print(f"{rounds} rounds, {len(all_cases)} cases alternating, on {os.cpu_count()} cores")
        for side, tree in trees.items():
            floor_s = statistics.median(figures[side, all_cases[0].label].wall_s)
            print(f"{side} ({tree}):")
            for case in all_cases:
                print(report(case.label, figures[side, case.label], floor_s))
        for label, said in answers.items():
            print(f"  {label!r} offered: {said[:200]}")


if __name__ == "__main__":
    main()
