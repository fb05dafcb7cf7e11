"""`harvester demo`: the whole harvest against the bundled simulator, no key needed.

It starts the simulator in-process on a free loopback port with a throwaway key,
queues a sample of identifiers into a fresh store, harvests them with the real
daemon and prints the status. The store is kept so the user can look inside.

The daemon is the service's: the CLI hands `run_daemon` in, so commands never import
the service (they are siblings, and meet only in the CLI).
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Protocol

from harvester.commands.status import collect_status, render_status
from harvester.config import (
    ApiSettings,
    QuotaSettings,
    RateSettings,
    Secret,
    Settings,
    StoreSettings,
    WorkerSettings,
)
from harvester.errors import CommandError
from harvester.harvest.report import HarvestReport
from harvester.identifiers import Identifier, normalise
from harvester.logs import configure_logging, register_secret
from harvester.model import ExitCode
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store

MAX_COUNT = 100_000


class DaemonRunner(Protocol):
    """`service.daemon.run_daemon`, as the demo calls it."""

    def __call__(
        self, settings: Settings, key: Secret, *, drain: bool
    ) -> Awaitable[HarvestReport]: ...


def cmd_demo(store_path: Path | None, count: int, run_daemon: DaemonRunner) -> ExitCode:
    """`harvester demo [--count N]`; `store_path` is --db (default: a new temporary
    directory)."""
    if count < 1 or count > MAX_COUNT:
        raise CommandError(f"--count must be between 1 and {MAX_COUNT}")
    return asyncio.run(run_demo(store_path, count, run_daemon))


def sample_identifiers(count: int) -> Iterator[Identifier]:
    """A deterministic mix of identifier types, mostly DOIs as in real lists."""
    for n in range(count):
        kind = n % 10
        if kind == 7:
            yield normalise("pmid", str(20_000_000 + n))
        elif kind == 8:
            yield normalise("arxiv", f"{2101 + n % 12:04d}.{n:05d}")
        elif kind == 9:
            yield normalise("isbn", _isbn13(978_000_000_000 + n))
        else:
            yield normalise("doi", f"10.{1000 + n % 97}/demo.{n}")


def _isbn13(first12: int) -> str:
    digits = str(first12)
    total = sum((3 if position % 2 else 1) * int(char) for position, char in enumerate(digits))
    return digits + str((10 - total % 10) % 10)


# Small enough that a few hundred outputs walk down the quota ladder.
DEMO_TWEET_QUOTA = 15_000


def demo_settings(base_url: str, store_path: Path) -> Settings:
    return Settings(
        quota=QuotaSettings(limit=DEMO_TWEET_QUOTA, window_s=86_400),
        api=ApiSettings(base_url=base_url, timeout_s=10.0),
        rate=RateSettings(requests_per_s=250.0, burst=25),
        workers=WorkerSettings(concurrency=16, max_attempts=3, backoff_base_s=0.2),
        store=StoreSettings(path=store_path),
    )


async def run_demo(store_path: Path | None, count: int, run_daemon: DaemonRunner) -> ExitCode:
    configure_logging("warning")
    if store_path is None:
        store_path = Path(tempfile.mkdtemp(prefix="harvester-demo-")) / "demo.db"
    elif store_path.exists():
        print(f"harvester demo: {store_path} exists; the demo needs a fresh store")
        return ExitCode.FAILURE
    key = secrets.token_urlsafe(18)
    register_secret(key)
    with Store(store_path) as store:
        store.jobs.add(sample_identifiers(count))
    simulator_settings = SimulatorSettings(
        key=key,
        latency_s=0.02,
        record_sent=False,
        tweet_quota=DEMO_TWEET_QUOTA,
        tweet_quota_window_s=86_400,
    )
    async with Simulator(simulator_settings) as simulator:
        print(
            f"simulator on {simulator.base_url} (tweet quota {DEMO_TWEET_QUOTA:,} a day); "
            f"harvesting {count:,} identifiers into {store_path}"
        )
        settings = demo_settings(simulator.base_url, store_path)
        report = await run_daemon(settings, Secret(key), drain=True)
    with Store(store_path, read_only=True) as store:
        print(render_status(collect_status(store, settings.quota, settings.rate)))
    modes = ", ".join(f"{mode} {count:,}" for mode, count in sorted(report.modes.items()))
    print(f"responses by quota mode: {modes}")
    print(f"\nharvested in {report.elapsed_s:.1f}s. Look inside:")
    for command in look_inside_commands(store_path):
        print(f"  {command}")
    return report.exit_code


def look_inside_commands(store_path: Path) -> list[str]:
    """Commands that run as printed: this very program (the venv's `harvester` may not
    be on PATH), the store's path quoted for the shell, and the sqlite3 shell only if
    it is installed."""
    program = shlex.quote(sys.argv[0]) if Path(sys.argv[0]).name == "harvester" else None
    harvester = program or f"{shlex.quote(sys.executable)} -m harvester"
    store = shlex.quote(str(store_path))
    commands = [
        f"{harvester} --db {store} show doi 10.1000/demo.0",
        f'{harvester} --db {store} query "SELECT journal, count(*) AS outputs,'
        ' round(avg(score), 1) AS mean_score FROM latest_outputs GROUP BY journal"',
        f"{harvester} --db {store} export --format csv --table mentions | head",
    ]
    if shutil.which("sqlite3"):
        commands.append(f"sqlite3 {store} 'SELECT state, count(*) FROM jobs GROUP BY state'")
    return commands
