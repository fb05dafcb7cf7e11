"""`[schedule]`: a running daemon discovers and refreshes by itself, inside its one rate
budget; `status` and the heartbeat show the next runs; a restart does not run them
early; a reload changes them. The daemon is a real process, stopped by real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from helpers import KEY, dois, harvester_async, queue, rows, start_harvester, write_config

from harvester.sim.server import Simulator, SimulatorSettings

ENV = {"ALTMETRIC_API_KEY": KEY}


def schedule_config(path: Path, base_url: str, **schedule: object) -> Path:
    return write_config(
        path,
        base_url,
        rate={"requests_per_s": 200, "burst": 5},
        workers={"concurrency": 4},
        schedule={"discover_timeframe": "1d", **schedule},
    )


async def status(cfg: Path, db: Path) -> dict[str, Any]:
    code, out, err = await harvester_async(
        "--config", str(cfg), "--db", str(db), "status", "--json"
    )
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


async def until(check: Any, timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, IndexError):  # the store may not exist yet
            if check():
                return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def stop(daemon: asyncio.subprocess.Process) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), timeout=30) == 0


def heartbeat_schedule(db: Path) -> dict[str, Any]:
    value = rows(db, "SELECT value FROM daemon_state WHERE key = 'heartbeat'")[0][0]
    schedule: dict[str, Any] = json.loads(value)["schedule"]
    return schedule


def citation_pages(sim: Simulator) -> int:
    return sum(1 for record in sim.sent if record.endpoint == "citations")


async def test_the_daemon_discovers_and_refreshes_on_its_own(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=150)) as sim:
        cfg = schedule_config(
            tmp_path / "h.toml",
            sim.base_url,
            discover_every="3s",
            refresh_every="2s",
            refresh_older_than="1s",
        )
        daemon = await start_harvester("--config", str(cfg), "--db", str(db), "run", env=ENV)
        try:
            # The discovery queues 150 outputs; the workers fetch each one (mentions);
            # the refresh requeues them once their answer is a second old, and they are
            # fetched again: each output ends with two fetch answers at least.
            await until(
                lambda: (
                    rows(
                        db,
                        "SELECT count(*) FROM (SELECT job_id FROM responses"
                        " WHERE endpoint = 'fetch' GROUP BY job_id HAVING count(*) >= 2)",
                    )
                    == [(150,)]
                )
            )
            await until(lambda: citation_pages(sim) >= 4)  # two discoveries of 2 pages
            report = await status(cfg, db)
            # `status` run without the daemon's config still shows what the daemon runs,
            # once a heartbeat (every 5 s) has been written since the schedule was loaded.
            await until(lambda: "discover" in heartbeat_schedule(db))
            code, out, err = await harvester_async("--db", str(db), "status", "--json")
            assert code == 0, err
            assert set(json.loads(out)["schedule"]) == {"discover", "refresh"}
        finally:
            await stop(daemon)
    assert rows(db, "SELECT count(*) FROM jobs") == [(150,)]  # each output queued once
    schedule = report["schedule"]
    assert set(schedule) == {"discover", "refresh"}
    assert schedule["discover"]["every"] == "3s" and schedule["discover"]["every_s"] == 3
    assert schedule["discover"]["last"]["stored"] == 150
    assert schedule["refresh"]["last"]["requeued"] >= 0
    for task in schedule.values():
        assert task["next_at"] > task["last_at"]
    heartbeat = json.loads(rows(db, "SELECT value FROM daemon_state WHERE key = 'heartbeat'")[0][0])
    assert set(heartbeat["schedule"]) == {"discover", "refresh"}


async def test_a_restart_waits_out_the_period_and_a_reload_changes_it(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=40)) as sim:
        cfg = schedule_config(tmp_path / "h.toml", sim.base_url, discover_every="1h")
        args = ("--config", str(cfg), "--db", str(db), "run")
        daemon = await start_harvester(*args, env=ENV)
        try:
            await until(lambda: rows(db, "SELECT count(*) FROM jobs") == [(40,)])
            await until(lambda: "schedule" in dict(rows(db, "SELECT key, value FROM daemon_state")))
        finally:
            await stop(daemon)
        pages = citation_pages(sim)
        assert pages == 1

        daemon = await start_harvester(*args, env=ENV)
        try:
            await asyncio.sleep(2.0)
            assert citation_pages(sim) == pages  # ran an hour ago at most: not again yet
            report = await status(cfg, db)
            next_at = report["schedule"]["discover"]["next_at"]
            last_at = report["schedule"]["discover"]["last_at"]
            assert 3590 <= _seconds_between(last_at, next_at) <= 3600
            # A reload to a period already over: the discovery runs at once.
            schedule_config(tmp_path / "h.toml", sim.base_url, discover_every="1s")
            daemon.send_signal(signal.SIGHUP)
            await until(lambda: citation_pages(sim) > pages)
        finally:
            await stop(daemon)
    report = await status(cfg, db)
    assert report["schedule"]["discover"]["every"] == "1s"
    assert report["daemon"]["running"] is False


async def test_a_drain_runs_no_schedule(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=40)) as sim:
        cfg = schedule_config(tmp_path / "h.toml", sim.base_url, discover_every="1s")
        queue(db, dois(5, "10.5150/drained."))
        code, _, err = await harvester_async(
            "--config", str(cfg), "--db", str(db), "run", "--drain", env=ENV
        )
        assert code == 0, err
    assert citation_pages(sim) == 0
    assert rows(db, "SELECT count(*) FROM responses") == [(5,)]


def test_schedule_settings_are_checked() -> None:
    from harvester.config import settings_from_mapping
    from harvester.errors import ConfigError

    cases = {
        "schedule.discover_every: 'daily' is not an age": {"discover_every": "daily"},
        "schedule.refresh_every needs schedule.refresh_older_than": {"refresh_every": "1d"},
        "schedule.discover_timeframe must be one of": {"discover_timeframe": "2y"},
        "schedule.discover_order_by must be one of": {"discover_order_by": "hot"},
        "schedule.refresh_older_than must be longer than 0": {
            "refresh_every": "1d",
            "refresh_older_than": "0s",
        },
    }
    for message, schedule in cases.items():
        try:
            settings_from_mapping({"schedule": schedule})
        except ConfigError as error:
            assert message in str(error), (message, str(error))
        else:
            raise AssertionError(f"accepted {schedule}")


def _seconds_between(first: str, second: str) -> float:
    from harvester.model import parse_iso

    return parse_iso(second) - parse_iso(first)


async def test_a_discovery_and_the_harvest_share_the_rate_without_starving(
    tmp_path: Path,
) -> None:
    """At 40 requests a second for everything: the discovery's five pages go out among
    the workers' fetches, neither waiting for the other to finish."""
    db = tmp_path / "s.db"
    queue(db, dois(400, "10.5150/busy."))
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=500)) as sim:
        cfg = write_config(
            tmp_path / "h.toml",
            sim.base_url,
            rate={"requests_per_s": 40, "burst": 1},
            workers={"concurrency": 8},
            schedule={"discover_every": "1h", "discover_timeframe": "1w"},
        )
        daemon = await start_harvester("--config", str(cfg), "--db", str(db), "run", env=ENV)
        try:
            await until(lambda: citation_pages(sim) == 5)
            kinds = [record.endpoint for record in sim.sent]
        finally:
            await stop(daemon)
    pages_at = [n for n, kind in enumerate(kinds) if kind == "citations"]
    fetches_between = kinds[pages_at[0] : pages_at[-1]].count("fetch")
    assert fetches_between >= 8  # the harvest went on while the discovery paged
    assert pages_at[-1] < 250  # the discovery was done long before the 400 fetches
