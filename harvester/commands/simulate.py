"""`harvester simulate`: the bundled API simulator, served on loopback until Ctrl-C.

It answers the fetch, counts and citations calls, with the flags that make it a bad day's
API (latency, rate limits, faults) and the size of each citations timeframe's listing.
`--make-dump PATH` writes a small dump of simulated outputs instead (`harvester.sim.dump`,
with the real dump's layouts and quirks), for trying `harvester import`."""

from __future__ import annotations

import asyncio
import math
import os
from contextlib import suppress
from pathlib import Path

from harvester.errors import CommandError, counted
from harvester.model import ExitCode

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_DUMP_RECORDS = 1_000_000


def cmd_make_dump(path: Path, records: int) -> ExitCode:
    """`harvester simulate --make-dump PATH [--records N]`: a `.tar.gz` dump of N
    simulated records (both file layouts, the real dump's quirks), written aside and
    renamed into place; an existing PATH is never written over."""
    from harvester.sim.dump import write_dump

    if not 1 <= records <= MAX_DUMP_RECORDS:
        raise CommandError(f"--records must be between 1 and {MAX_DUMP_RECORDS:,}")
    if path.exists():
        raise CommandError(f"{path} exists already; name a new file for the dump")
    if not path.resolve().parent.is_dir():
        raise CommandError(f"cannot write {path}: no directory {path.parent}")
    partial = path.with_name(f".{path.name}.partial")
    try:
        summary = write_dump(partial, records, layout="mixed")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    print(
        f"wrote a dump of {counted(summary.records, 'record')} in "
        f"{counted(summary.members, 'file')} to {path} "
        f"({summary.size_bytes / 1e6:,.1f} MB); try it: harvester import {path}"
    )
    return ExitCode.OK


def cmd_simulate(
    host: str,
    port: int,
    *,
    key: str,
    latency_ms: float,
    body_pool: int,
    rate_limit: float | None,
    rate_limit_burst: int,
    rate_limit_status: int,
    hourly_limit: int | None = None,
    daily_limit: int | None = None,
    retry_after: bool,
    fault_rate: float,
    citations_per_timeframe: int = 250,
    attention_grows: bool = True,
) -> ExitCode:
    """`harvester simulate [--host H] [--port N] ...`: exit 1 for a bad flag value."""
    from harvester.sim.listing import MAX_LISTING
    from harvester.sim.server import SimulatorSettings, serve

    if not 0 <= port <= 65535:
        raise CommandError("--port must be between 0 (any free port) and 65535")
    if not key:
        raise CommandError("--key must not be empty: clients must send some key")
    if not math.isfinite(latency_ms):
        raise CommandError("--latency-ms must be a number of milliseconds")
    if rate_limit_burst < 1:
        raise CommandError("--rate-limit-burst must be at least 1")
    if host not in LOOPBACK_HOSTS:
        raise CommandError("the simulator serves loopback only (--host 127.0.0.1 or ::1)")
    if body_pool < 0 or latency_ms < 0:
        raise CommandError("--body-pool and --latency-ms must not be negative")
    if not 0 <= fault_rate <= 1:
        raise CommandError("--fault-rate must be between 0 and 1")
    if rate_limit is not None and not 0 < rate_limit < math.inf:
        raise CommandError("--rate-limit must be more than 0 requests a second")
    for flag, limit in (("--hourly-limit", hourly_limit), ("--daily-limit", daily_limit)):
        if limit is not None and limit < 1:
            raise CommandError(f"{flag} must be at least 1 request")
    if not 0 <= citations_per_timeframe <= MAX_LISTING:
        raise CommandError(f"--citations-per-timeframe must be between 0 and {MAX_LISTING}")
    settings = SimulatorSettings(
        key=key,
        latency_s=latency_ms / 1000,
        record_sent=False,
        body_pool=body_pool,
        rate_limit_per_s=rate_limit,
        rate_limit_burst=rate_limit_burst,
        rate_limit_status=rate_limit_status,
        hourly_limit=hourly_limit,
        daily_limit=daily_limit,
        send_retry_after=retry_after,
        fault_rate=fault_rate,
        citations_per_timeframe=citations_per_timeframe,
        attention_grows=attention_grows,
    )
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port))
    return ExitCode.OK
