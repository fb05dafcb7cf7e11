"""The daemon as a service: ready, watchdog, reload and stop on systemd's notify
socket; the heartbeat and the metrics; the shipped unit's own command line; the
workers following a reload; an upgrade that extends systemd's start timeout.

The daemon runs as a real subprocess against the simulator on loopback, with
`$NOTIFY_SOCKET` pointing at a unix datagram socket the test binds, as systemd would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from helpers import (
    KEY,
    ROOT,
    NotifyListener,
    build_pre_compression_store,
    cli_env,
    daemon_config,
    dois,
    free_port,
    harvester_async,
    has,
    queue,
    start_harvester,
)

from harvester.config import Secret, load_settings
from harvester.service.daemon import run_daemon
from harvester.sim.server import FetchRequest, Simulator, SimulatorSettings, text_response
from harvester.store import Store

UNIT = ROOT / "systemd" / "altmetric-harvester.service"


def service_config(
    path: Path, base_url: str, *, rate: float, metrics_port: int, concurrency: int = 4
) -> None:
    daemon_config(
        path,
        base_url,
        rate=rate,
        workers={"concurrency": concurrency, "lease_s": 10, "drain_deadline_s": 4},
        metrics={"address": f"127.0.0.1:{metrics_port}"},
    )


async def echo_key_in_errors(request: web.Request, fetch: FetchRequest) -> web.Response | None:
    """Some answers are 500s that repeat the request, key and all, as real servers do."""
    if fetch.identifier.endswith("7"):
        return text_response(500, f"upstream error in GET {request.path_qs}")
    return None


@pytest.fixture
async def echoing_simulator() -> AsyncIterator[Simulator]:
    """A simulator with faults, some of them 500s that echo the request, key and all."""
    settings = SimulatorSettings(
        key=KEY,
        latency_s=0.01,
        record_sent=False,
        fault_rate=0.1,
        fault_kinds=("500", "503", "reset", "invalid_json"),
    )
    async with Simulator(settings) as sim:
        sim.gates.append(echo_key_in_errors)
        yield sim


async def daemon_status(db: Path) -> dict:
    code, out, err = await harvester_async("--db", str(db), "status", "--json")
    assert code == 0, err
    assert KEY not in out + err
    return json.loads(out)["daemon"]


async def wait_for_daemon(db: Path, wanted: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 20
    while True:
        daemon = await daemon_status(db)
        if wanted(daemon) or time.monotonic() > deadline:
            return daemon
        await asyncio.sleep(0.3)


async def test_a_service_run_from_ready_through_reload_to_stop(
    echoing_simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    db, config, log_path = tmp_path / "s.db", tmp_path / "h.toml", tmp_path / "daemon.log"
    queue(db, dois(5000, "10.4242/svc."))
    metrics_port = free_port()
    service_config(config, echoing_simulator.base_url, rate=40, metrics_port=metrics_port)
    with log_path.open("wb") as log_file:
        daemon = await start_harvester(
            *("--config", str(config), "--db", str(db), "run"),
            env={
                "ALTMETRIC_API_KEY": KEY,
                "NOTIFY_SOCKET": str(listener.path),
                "WATCHDOG_USEC": "600000",
            },
            stderr=log_file,
        )
    try:
        ready = await listener.wait_for(has("READY", "1"))
        # The watchdog is pinged at half of WATCHDOG_USEC: 0.3 s, so several in 1.5 s.
        first_ping = await listener.wait_for(has("WATCHDOG", "1"), after=ready)
        await asyncio.sleep(1.5)
        pings = [m for m in listener.messages[first_ping:] if m.get("WATCHDOG") == "1"]
        assert len(pings) >= 3
        status_line = listener.messages[await listener.wait_for(has("STATUS"), after=ready)][
            "STATUS"
        ]
        assert "pending" in status_line and "quota mode full" in status_line

        live = await wait_for_daemon(db, lambda d: d["running"])
        assert live["running"] and live["pid"] == daemon.pid
        assert live["requests_per_s"] == 40 and live["concurrency"] == 4

        code, _, err = await harvester_async(
            "--config", str(config), "--db", str(db), "run", env={"ALTMETRIC_API_KEY": KEY}
        )
        assert code == 1 and "already running" in err

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as answer,
        ):
            metrics = await answer.text()
        assert answer.status == 200
        assert 'harvester_jobs{state="pending"}' in metrics
        assert "harvester_rate_requests_per_second 40" in metrics
        assert KEY not in metrics

        # SIGHUP with a new rate and concurrency: applied in flight, the heartbeat shows it.
        service_config(
            config, echoing_simulator.base_url, rate=7.5, metrics_port=metrics_port, concurrency=2
        )
        reload_at = len(listener.messages)
        daemon.send_signal(signal.SIGHUP)
        reloading = await listener.wait_for(has("RELOADING", "1"), after=reload_at)
        assert "MONOTONIC_USEC" in listener.messages[reloading]
        await listener.wait_for(has("READY", "1"), after=reloading)
        live = await wait_for_daemon(db, lambda d: d["requests_per_s"] == 7.5)
        assert live["requests_per_s"] == 7.5 and live["pid"] == daemon.pid
        assert live["concurrency"] == 2

        # A broken config is refused; the daemon keeps the settings it has.
        config.write_text("[rate]\nrequests_per_s = -3\n")
        daemon.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert daemon.returncode is None
        live = await daemon_status(db)
        assert live["running"] and live["requests_per_s"] == 7.5

        stop_at = len(listener.messages)
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.wait_for(daemon.wait(), timeout=30) == 0
        assert time.monotonic() - started < 4 + 2  # the drain deadline, and some
        await listener.wait_for(has("STOPPING", "1"), after=stop_at)
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    assert not (await daemon_status(db))["running"]
    text = log_path.read_text()
    assert KEY not in text
    events = [json.loads(line) for line in text.splitlines()]  # JSON lines, every one
    names = {event["event"] for event in events}
    assert {"harvest.start", "harvest.reloaded", "harvest.reload_refused", "harvest.stop"} <= names
    assert "harvest.fetch_failed" in names or "harvest.retry" in names
    reloaded = next(event for event in events if event["event"] == "harvest.reloaded")
    assert reloaded["changed"] == {"rate.requests_per_s": 7.5, "workers.concurrency": 2}
    assert reloaded["needs_restart"] == []
    with Store(db, read_only=True) as store:
        errors = [row[0] for row in store.conn.execute("SELECT last_error FROM jobs")]
        states = store.jobs.counts_by_state()
    assert any(error and "key=***" in error for error in errors)
    assert not any(error and KEY in error for error in errors)
    assert states["in_progress"] == 0 and states["pending"] > 0


# -- the unit's own command line, with systemd's environment ------------------------------


def unit_command(state_dir: Path, config: Path) -> list[str]:
    """ExecStart of the shipped unit, pointed at this checkout and a test's files."""
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    argv = line.removeprefix("ExecStart=").replace("%S", str(state_dir)).split()
    argv[argv.index("--config") + 1] = str(config)
    return [str(Path(sys.executable).parent / "harvester"), *argv[1:]]


async def test_the_units_command_line_takes_the_key_from_a_credential(
    echoing_simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    config, credentials = tmp_path / "h.toml", tmp_path / "credentials"
    service_config(config, echoing_simulator.base_url, rate=50, metrics_port=free_port())
    credentials.mkdir()
    (credentials / "altmetric-api-key").write_text(KEY + "\n")
    (tmp_path / "altmetric-harvester").mkdir()  # systemd makes the StateDirectory
    db = tmp_path / "altmetric-harvester" / "altmetric.db"
    queue(db, dois(2000, "10.4242/unit."))
    daemon = await asyncio.create_subprocess_exec(
        *unit_command(tmp_path, config),
        env=cli_env(
            {
                "CREDENTIALS_DIRECTORY": str(credentials),
                "NOTIFY_SOCKET": str(listener.path),
                "WATCHDOG_USEC": "60000000",
            }
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await listener.wait_for(has("READY", "1"))
        await listener.wait_for(lambda message: "done" in message.get("STATUS", ""))
        await wait_for_daemon(db, lambda d: d["running"])
        daemon.send_signal(signal.SIGTERM)  # the unit's KillSignal
        _, err = await asyncio.wait_for(daemon.communicate(), timeout=30)
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
    assert daemon.returncode == 0, err.decode()[-2000:]
    await listener.wait_for(has("STOPPING", "1"))
    assert KEY not in err.decode()
    with Store(db, read_only=True) as store:
        assert store.responses.count() > 0


# -- reload in process: concurrency follows the new settings -------------------------------


def has_heartbeat(db: Path) -> bool:
    if not db.exists():
        return False
    with Store(db, read_only=True) as store:
        return store.state.load("heartbeat") is not None


async def wait_for_heartbeat(db: Path) -> None:
    deadline = time.monotonic() + 20
    while not has_heartbeat(db):
        assert time.monotonic() < deadline, "no heartbeat"
        await asyncio.sleep(0.05)


async def test_a_reload_shrinks_and_grows_the_workers_without_losing_a_job(
    tmp_path: Path,
) -> None:
    in_flight = 0
    samples: list[tuple[float, int]] = []  # (when, requests in flight at the server)

    async def count_in_flight(_request: web.Request, _fetch: FetchRequest) -> None:
        nonlocal in_flight
        in_flight += 1
        samples.append((time.monotonic(), in_flight))
        await asyncio.sleep(0.05)
        in_flight -= 1

    def peak(from_s: float, to_s: float) -> int:
        return max(count for when, count in samples if from_s <= when < to_s)

    db = tmp_path / "s.db"
    queue(db, dois(400, "10.4242/grow."))
    async with Simulator(SimulatorSettings(key=KEY, record_sent=False)) as sim:
        sim.gates.append(count_in_flight)
        config, port = tmp_path / "h.toml", free_port()
        service_config(config, sim.base_url, rate=1000, metrics_port=port, concurrency=8)
        settings = load_settings(config, db_override=db)
        run = asyncio.create_task(
            run_daemon(
                settings,
                Secret(KEY),
                drain=True,
                show_progress=False,
                reload_settings=lambda: load_settings(config, db_override=db),
            )
        )
        reloaded_at: list[float] = []
        await wait_for_heartbeat(db)  # the SIGHUP handler is in place from here on
        for concurrency in (2, 6):
            await asyncio.sleep(0.8)
            assert not run.done()  # else SIGHUP would reach pytest's default handler
            service_config(
                config, sim.base_url, rate=1000, metrics_port=port, concurrency=concurrency
            )
            reloaded_at.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGHUP)
        report = await asyncio.wait_for(run, timeout=60)
    assert report.exit_code == 0
    shrunk_s, grown_s = reloaded_at
    settle_s = 0.4  # the busy workers above the new count finish their job
    assert peak(0, shrunk_s) >= 7
    assert peak(shrunk_s + settle_s, grown_s) == 2  # never more than the new count
    assert peak(grown_s + settle_s, grown_s + 0.8) >= 5
    with Store(db, read_only=True) as store:
        assert store.jobs.counts_by_state()["pending"] == 0
        assert store.responses.count() == 400


# -- an upgrade at start ---------------------------------------------------------------------


async def test_an_upgrade_at_start_extends_systemds_start_timeout(
    echoing_simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    db, config = tmp_path / "old.db", tmp_path / "h.toml"
    build_pre_compression_store(db, [b'{"altmetric_id": 1}', b"Not Found"])
    service_config(config, echoing_simulator.base_url, rate=50, metrics_port=free_port())
    daemon = await start_harvester(
        *("--config", str(config), "--db", str(db), "run"),
        env={"ALTMETRIC_API_KEY": KEY, "NOTIFY_SOCKET": str(listener.path)},
    )
    try:
        extend = await listener.wait_for(has("EXTEND_TIMEOUT_USEC"))
        assert int(listener.messages[extend]["EXTEND_TIMEOUT_USEC"]) >= 3600 * 1_000_000
        assert "upgrading" in listener.messages[extend]["STATUS"]
        await listener.wait_for(has("READY", "1"), after=extend)
        daemon.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(daemon.communicate(), timeout=30)
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
    assert daemon.returncode == 0
    assert '"event": "store.upgrading"' in err.decode()
    with Store(db, read_only=True) as store:  # upgraded: a reader may open it now
        assert store.bodies.of_response(1) == b'{"altmetric_id": 1}'
