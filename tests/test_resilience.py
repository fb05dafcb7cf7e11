"""Weeks of running in minutes: faults, server rate limits, kills and stops."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import (
    KEY,
    dois,
    drain,
    harvester_async,
    queue,
    rows,
    start_harvester,
    stored_responses,
    write_config,
)

from harvester.config import ApiSettings, RateSettings, Settings, StoreSettings, WorkerSettings
from harvester.sim import universe
from harvester.sim.gates import FAULT_KINDS
from harvester.sim.server import Simulator, SimulatorSettings


def assert_each_job_stored_once_and_right(db_path: Path, expected_jobs: int) -> None:
    """Every job final and right for the universe, one response each, checksums true."""
    jobs = rows(db_path, "SELECT id_type, identifier, state FROM jobs")
    assert len(jobs) == expected_jobs
    for id_type, identifier, state in jobs:
        assert state == ("done" if universe.is_known(id_type, identifier) else "not_found")
    assert rows(db_path, "SELECT count(*), count(DISTINCT job_id) FROM responses") == [
        (expected_jobs, expected_jobs)
    ]
    for *_, status, sha256, body in stored_responses(db_path):
        assert sha256 == hashlib.sha256(body).hexdigest()
        if status == 200:
            assert isinstance(json.loads(body), dict)


async def test_a_fault_storm_ends_with_every_job_right(db_path: Path) -> None:
    sim_settings = SimulatorSettings(key=KEY, fault_rate=0.2, slow_s=1.5, seed=7)
    async with Simulator(sim_settings) as simulator:
        queue(db_path, dois(300, "10.7777/storm."))
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=0.5),
            rate=RateSettings(requests_per_s=1000, burst=20),
            workers=WorkerSettings(
                concurrency=24, max_attempts=10, backoff_base_s=0.02, backoff_max_s=0.2, lease_s=5
            ),
            store=StoreSettings(path=db_path),
        )
        report = await drain(settings)
        assert simulator.faults is not None
        injected = simulator.faults.injected
    assert report.exit_code == 0
    assert set(injected) == set(FAULT_KINDS) and min(injected.values()) >= 3
    assert sum(injected.values()) >= 0.15 * 300
    assert_each_job_stored_once_and_right(db_path, 300)


async def test_a_server_rate_limit_costs_a_handful_of_refusals_then_none(db_path: Path) -> None:
    sim_settings = SimulatorSettings(key=KEY, rate_limit_per_s=20, rate_limit_burst=2)
    async with Simulator(sim_settings) as simulator:
        queue(db_path, dois(120, "10.7777/limited."))
        settings = Settings(  # configured at twice what the server allows
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            rate=RateSettings(requests_per_s=40, burst=1),
            workers=WorkerSettings(concurrency=4),
            store=StoreSettings(path=db_path),
        )
        started = time.monotonic()
        await drain(settings)
        elapsed_s = time.monotonic() - started
        gate = simulator.rate_limit
        assert gate is not None
    assert 1 <= gate.refusals <= 8
    assert gate.passed == 120
    assert_each_job_stored_once_and_right(db_path, 120)
    assert rows(db_path, "SELECT max(attempts) FROM jobs") == [(1,)]  # refusals cost none
    assert elapsed_s < 20


async def drain_as_a_process(config: Path, db_path: Path) -> None:
    daemon = await start_harvester(
        *("--config", str(config), "--db", str(db_path), "run", "--drain"),
        env={"ALTMETRIC_API_KEY": KEY},
    )
    _, err = await daemon.communicate()
    assert daemon.returncode == 0, err


async def test_the_learned_rate_survives_a_restart(db_path: Path, tmp_path: Path) -> None:
    """Configured at ten times what the server allows: the first run learns it through
    refusals; the next run starts from it and is hardly refused at all."""
    sim_settings = SimulatorSettings(
        key=KEY, rate_limit_per_s=20, rate_limit_burst=1, bucket_headers=False
    )
    async with Simulator(sim_settings) as simulator:
        config = write_config(
            tmp_path / "h.toml",
            simulator.base_url,
            api={"timeout_s": 5},
            rate={"requests_per_s": 200, "burst": 5},
            workers={"concurrency": 8},
        )
        queue(db_path, dois(120, "10.7777/learn."))
        await drain_as_a_process(config, db_path)
        gate = simulator.rate_limit
        assert gate is not None
        refused_first = gate.refusals
        code, out, err = await harvester_async(
            "--config", str(config), "--db", str(db_path), "status", "--json"
        )
        assert code == 0, err
        rate = json.loads(out)["rate"]
        queue(db_path, dois(80, "10.7777/again."))
        await drain_as_a_process(config, db_path)
        refused_second = gate.refusals - refused_first
    assert refused_first >= 3
    assert rate["configured_per_s"] == 200 and rate["configured_burst"] == 5
    assert 5 <= rate["learned_per_s"] <= 21 and rate["learned_burst"] == 1
    assert rate["allowed_per_s"] is None  # no daemon runs now
    assert refused_second <= 1  # a stray of timing at most: it started where it left off
    assert_each_job_stored_once_and_right(db_path, 200)


async def test_the_rest_of_the_hour_is_spread_over_it(db_path: Path, tmp_path: Path) -> None:
    """An hourly allowance leaving 20 requests a second for the rest of the UTC hour:
    configured at 200/s, the harvester goes at about 20/s and is never refused."""
    left_s = 3600 - time.time() % 3600
    if left_s < 30:
        await asyncio.sleep(left_s + 1)
        left_s = 3600.0
    limit = 1_000_000
    sim_settings = SimulatorSettings(
        key=KEY, hourly_limit=limit, hourly_used=limit - int(20 * left_s)
    )
    async with Simulator(sim_settings) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            rate=RateSettings(requests_per_s=200, burst=5),
            workers=WorkerSettings(concurrency=8),
            store=StoreSettings(path=db_path),
        )
        queue(db_path, dois(70, "10.7777/paced."))
        started = time.monotonic()
        await drain(settings)
        elapsed_s = time.monotonic() - started
        gate = simulator.rate_limit
        assert gate is not None
    assert gate.refusals == 0
    assert gate.passed == 70
    assert elapsed_s >= 2.0  # at 200/s the 70 would take a third of a second
    assert_each_job_stored_once_and_right(db_path, 70)


@pytest.fixture
async def slow_simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(key=KEY, latency_s=0.2, record_sent=False)) as sim:
        yield sim


def config_file(tmp_path: Path, base_url: str, drain_deadline_s: float = 10) -> Path:
    return write_config(
        tmp_path / "h.toml",
        base_url,
        api={"timeout_s": 5},
        rate={"requests_per_s": 200, "burst": 5},
        workers={"concurrency": 8, "drain_deadline_s": drain_deadline_s},
    )


async def start_daemon(config: Path, db_path: Path) -> asyncio.subprocess.Process:
    return await start_harvester(
        *("--config", str(config), "--db", str(db_path), "run", "--drain"),
        env={"ALTMETRIC_API_KEY": KEY},
    )


async def wait_for_responses(db_path: Path, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rows(db_path, "SELECT count(*) FROM responses")[0][0] >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} responses after {timeout_s}s")


async def test_sigkill_then_restart_stores_every_job_exactly_once(
    slow_simulator: Simulator, tmp_path: Path, db_path: Path
) -> None:
    queue(db_path, dois(200, "10.7777/kill."))
    config = config_file(tmp_path, slow_simulator.base_url)
    first = await start_daemon(config, db_path)
    await wait_for_responses(db_path, 40)
    first.kill()
    assert await first.wait() == -signal.SIGKILL
    left = dict(rows(db_path, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert left.get("in_progress", 0) > 0  # it died holding claims
    second = await start_daemon(config, db_path)
    _, err = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    assert '"recovered_leases": ' in err.decode()
    assert_each_job_stored_once_and_right(db_path, 200)


async def test_sigterm_drains_within_the_deadline_and_exits_0(
    slow_simulator: Simulator, tmp_path: Path, db_path: Path
) -> None:
    queue(db_path, dois(300, "10.7777/term."))
    config = config_file(tmp_path, slow_simulator.base_url, drain_deadline_s=3)
    daemon = await start_daemon(config, db_path)
    await wait_for_responses(db_path, 20)
    daemon.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = await asyncio.wait_for(daemon.communicate(), timeout=30)
    assert daemon.returncode == 0, err.decode()[-2000:]
    assert time.monotonic() - started < 3 + 2
    states = dict(rows(db_path, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert "in_progress" not in states
    assert states["pending"] > 0  # it stopped early, leaving the rest queued
    stored = rows(db_path, "SELECT count(*), count(DISTINCT job_id) FROM responses")[0]
    assert stored[0] == stored[1] == states.get("done", 0) + states.get("not_found", 0)


async def test_a_second_sigint_stops_at_once(tmp_path: Path, db_path: Path) -> None:
    async with Simulator(SimulatorSettings(key=KEY, latency_s=4.0, record_sent=False)) as sim:
        queue(db_path, dois(50, "10.7777/int."))
        config = config_file(tmp_path, sim.base_url, drain_deadline_s=30)
        daemon = await start_daemon(config, db_path)
        assert daemon.stderr is not None
        await daemon.stderr.readline()  # harvest.start: it is running
        await asyncio.sleep(0.5)  # requests in flight, 4 s from answering
        daemon.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        daemon.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(daemon.communicate(), timeout=30)
        assert time.monotonic() - started < 2.5
    assert daemon.returncode == 0, err.decode()[-2000:]
    assert rows(db_path, "SELECT state, count(*) FROM jobs GROUP BY state") == [("pending", 50)]
    assert rows(db_path, "SELECT sum(attempts) FROM jobs") == [(0,)]
