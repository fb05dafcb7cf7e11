"""The daemon as a service: sd_notify, reload, stop, the heartbeat and the metrics.

The daemon runs as a real subprocess against the simulator on loopback, with
`$NOTIFY_SOCKET` pointing at a unix datagram socket this test binds, as systemd would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import build_pre_compression_store

from harvester.cli import main
from harvester.config import Secret, load_settings
from harvester.errors import ConfigError
from harvester.harvest.quota import QuotaView
from harvester.harvest.report import LiveView
from harvester.identifiers import Identifier
from harvester.model import JobState, Outcome, QuotaMode
from harvester.service.daemon import run_daemon
from harvester.service.heartbeat import ServiceLoop
from harvester.service.notify import Notifier
from harvester.service.reload import applies_in_flight, changes, reloaded
from harvester.sim.server import FetchRequest, Simulator, SimulatorSettings, text_response
from harvester.store import Store
from harvester.store.aio import AsyncStore

KEY = "service-key-4242"
Message = dict[str, str]


class NotifyListener:
    """A stand-in for systemd's end of $NOTIFY_SOCKET: every datagram, parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.setblocking(False)
        self.messages: list[Message] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NotifyListener:
        """Read as systemd does, at once: a unix datagram queue holds only a few."""
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._socket, 65536)
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    async def wait_for(
        self, wanted: Callable[[Message], bool], timeout_s: float = 20, *, after: int = 0
    ) -> int:
        """Index of the first message from `after` on that is `wanted`, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index in range(after, len(self.messages)):
                if wanted(self.messages[index]):
                    return index
            await asyncio.sleep(0.02)
        raise AssertionError(f"no such message; got {self.messages[after:]}")

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths hold at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def listener(short_dir: Path) -> AsyncIterator[NotifyListener]:
    opened = NotifyListener(short_dir / "notify")
    async with opened:
        yield opened
    opened.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    path: Path, base_url: str, *, rate: float, metrics_port: int, concurrency: int = 4
) -> None:
    path.write_text(f"""
[api]
base_url = "{base_url}"
timeout_s = 2
[rate]
requests_per_s = {rate}
burst = 2
[workers]
concurrency = {concurrency}
backoff_base_s = 0.05
backoff_max_s = 0.2
lease_s = 10
drain_deadline_s = 4
[metrics]
address = "127.0.0.1:{metrics_port}"
""")


async def echo_key_in_errors(request: web.Request, fetch: FetchRequest) -> web.Response | None:
    """Some answers are 500s that repeat the request, key and all, as real servers do."""
    if fetch.identifier.endswith("7"):
        return text_response(500, f"upstream error in GET {request.path_qs}")
    return None


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
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


async def harvester(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def daemon_status(db: Path) -> dict:
    code, out, err = await harvester("--db", str(db), "status", "--json")
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


def has(key: str, value: str | None = None) -> Callable[[Message], bool]:
    return lambda message: key in message and (value is None or message[key] == value)


async def test_a_service_run_from_ready_through_reload_to_stop(
    simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    db, config, log_path = tmp_path / "s.db", tmp_path / "h.toml", tmp_path / "daemon.log"
    with Store(db) as store:
        store.jobs.add([Identifier("doi", f"10.4242/svc.{n}") for n in range(5000)])
    metrics_port = free_port()
    write_config(config, simulator.base_url, rate=40, metrics_port=metrics_port)
    with log_path.open("wb") as log_file:
        daemon = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "harvester", "--config", str(config), "--db", str(db)),
            "run",
            env={
                **os.environ,
                "ALTMETRIC_API_KEY": KEY,
                "NOTIFY_SOCKET": str(listener.path),
                "WATCHDOG_USEC": "600000",
            },
            stdout=asyncio.subprocess.DEVNULL,
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

        code, _, err = await harvester(
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
        write_config(config, simulator.base_url, rate=7.5, metrics_port=metrics_port, concurrency=2)
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


# -- the notify protocol, in process ------------------------------------------------------


async def test_the_notifier_speaks_to_a_real_socket(listener: NotifyListener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "2000000"})
    assert notifier.enabled and notifier.watchdog_interval_s == 2.0
    notifier.ready("starting up")
    notifier.status("line one\nline two")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()

    await listener.wait_for(has("STOPPING"))
    messages = listener.messages
    assert messages[0] == {"READY": "1", "STATUS": "starting up"}
    assert messages[1] == {"STATUS": "line one line two"}
    assert messages[2] == {"WATCHDOG": "1"}
    assert messages[3]["RELOADING"] == "1" and int(messages[3]["MONOTONIC_USEC"]) > 0
    assert messages[4] == {"STOPPING": "1"}


def test_the_notifier_reaches_an_abstract_socket() -> None:
    name = f"harvester-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(b"\0" + name.encode())
        server.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        notifier.ready("up")
        assert server.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_without_systemd_the_notifier_does_nothing(short_dir: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).send(READY="1") is False
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False
    gone = Notifier({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert gone.send(READY="1") is False  # systemd gone: no crash
    gone.close()
    other_pid = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other_pid.watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval_s is None


# -- configuration of the service ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0:9108", "loopback"),
        ("192.168.1.5:9108", "loopback"),
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:70000", "HOST:PORT"),
        ("localhost:abc", "HOST:PORT"),
    ],
)
def test_a_metrics_address_off_loopback_or_malformed_is_refused(
    tmp_path: Path, address: str, message: str
) -> None:
    config = tmp_path / "h.toml"
    config.write_text(f'[metrics]\naddress = "{address}"\n')
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_metrics_are_off_by_default() -> None:
    with contextlib.chdir(tempfile.gettempdir()):
        assert load_settings(None).metrics.address == ""


def test_one_table_says_what_a_reload_applies_and_what_waits_for_a_restart(
    tmp_path: Path,
) -> None:
    with contextlib.chdir(tmp_path):  # no ./harvester.toml: the defaults
        running = load_settings(None)
    config = tmp_path / "h.toml"
    config.write_text(
        "[rate]\nrequests_per_s = 3.0\n[workers]\nconcurrency = 2\nlease_s = 60\n"
        '[api]\ntimeout_s = 5\n[log]\nlevel = "debug"\n[filters]\nexclude_sources = ["news"]\n'
    )
    new = load_settings(config)
    applied, restart = changes(running, new)
    assert applied == {
        "rate.requests_per_s": 3.0,
        "workers.concurrency": 2,
        "filters.exclude_sources": ("news",),
    }
    assert restart == ["api.timeout_s", "workers.lease_s", "log.level"]
    merged = reloaded(running, new)
    assert (merged.rate, merged.filters) == (new.rate, new.filters)
    assert merged.workers.concurrency == 2
    assert merged.workers.lease_s == running.workers.lease_s  # restart-only keys keep theirs
    assert (merged.api, merged.log, merged.store) == (running.api, running.log, running.store)
    assert changes(running, merged) == (applied, [])  # what runs differs only as applied
    for key in ("api.base_url", "store.path", "workers.lease_s", "metrics.address", "log.level"):
        assert not applies_in_flight(key), key
    for key in ("rate.burst", "workers.max_attempts", "filters.include_sources", "quota.mode"):
        assert applies_in_flight(key), key


# -- the unit's own command line, with systemd's environment ------------------------------


def unit_command(state_dir: Path, config: Path) -> list[str]:
    """ExecStart of the shipped unit, pointed at this checkout and a test's files."""
    unit = (Path(__file__).parent.parent / "systemd" / "altmetric-harvester.service").read_text()
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = line.removeprefix("ExecStart=").replace("%S", str(state_dir)).split()
    argv[argv.index("--config") + 1] = str(config)
    return [str(Path(sys.executable).parent / "harvester"), *argv[1:]]


async def test_the_units_command_line_takes_the_key_from_a_credential(
    simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    config, credentials = tmp_path / "h.toml", tmp_path / "credentials"
    write_config(config, simulator.base_url, rate=50, metrics_port=free_port())
    credentials.mkdir()
    (credentials / "altmetric-api-key").write_text(KEY + "\n")
    (tmp_path / "altmetric-harvester").mkdir()  # systemd makes the StateDirectory
    db = tmp_path / "altmetric-harvester" / "altmetric.db"
    with Store(db) as store:
        store.jobs.add([Identifier("doi", f"10.4242/unit.{n}") for n in range(2000)])
    environment = {k: v for k, v in os.environ.items() if k != "ALTMETRIC_API_KEY"}
    daemon = await asyncio.create_subprocess_exec(
        *unit_command(tmp_path, config),
        env={
            **environment,
            "CREDENTIALS_DIRECTORY": str(credentials),
            "NOTIFY_SOCKET": str(listener.path),
            "WATCHDOG_USEC": "60000000",
        },
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
    with Store(db) as store:
        store.jobs.add([Identifier("doi", f"10.4242/grow.{n}") for n in range(400)])
    async with Simulator(SimulatorSettings(key=KEY, record_sent=False)) as sim:
        sim.gates.append(count_in_flight)
        config, port = tmp_path / "h.toml", free_port()
        write_config(config, sim.base_url, rate=1000, metrics_port=port, concurrency=8)
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
            write_config(
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


# -- status reads whatever heartbeat the store holds ---------------------------------------


def heartbeat(pid: int, age_s: float, state: str = "running") -> str:
    return json.dumps(
        {
            "pid": pid,
            "state": state,
            "started_at": "2026-11-20T10:00:00.000000Z",
            "heartbeat_at_s": time.time() - age_s,
            "requests_per_s": 2.0,
            "achieved_per_s": 1.5,
            "quota_mode": "original_tweets",
            "concurrency": 3,
        }
    )


def status_of(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    assert main(["--db", str(db), "status", "--json"]) == 0
    as_json = capsys.readouterr().out
    assert main(["--db", str(db), "status"]) == 0
    return json.loads(as_json)["daemon"], capsys.readouterr().out


def test_status_tells_a_live_daemon_from_a_dead_or_unreadable_heartbeat(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid, pid = int(ended.stdout), os.getpid()
    with Store(db_path) as store:
        store.jobs.add([Identifier("doi", "10.4242/hb.1")])
    live = (
        f"running (pid {pid}, since 2026-11-20T10:00:00.000000Z, 1.50 req/s of 2 allowed, "
        "concurrency 3, quota mode original_tweets)"
    )
    cases = [
        ("not json at all", False, "daemon not running\n"),
        (json.dumps({"pid": "many"}), False, "daemon not running\n"),
        (heartbeat(pid, age_s=1), True, live),
        (heartbeat(pid, age_s=120), False, f"not running (last heartbeat 0:02:00 ago, pid {pid})"),
        (heartbeat(pid, age_s=1, state="stopped"), False, "not running (last heartbeat 0:00:01"),
        (
            heartbeat(dead_pid, age_s=1),
            False,
            f"not running (last heartbeat 0:00:01 ago, pid {dead_pid})",
        ),
        (heartbeat(0, age_s=1), False, "not running (last heartbeat"),
    ]
    for saved, running, shown in cases:
        with Store(db_path) as store:
            store.state.save({"heartbeat": saved})
        daemon, table = status_of(db_path, capsys)
        assert daemon["running"] is running, saved
        assert shown in table, (saved, table)
    for quota in ("[1, 2]", json.dumps({"at_s": time.time(), "limit": "lots"}), "{"):
        with Store(db_path) as store:
            store.state.save({"quota": quota})
        assert main(["--db", str(db_path), "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["quota"]["source"] == "ledger"


# -- the watchdog goes quiet when the store stops answering ---------------------------------


class StillHarvest:
    """The part of the pipeline the service loop reads."""

    def live_view(self) -> LiveView:
        quota = QuotaView(
            limit=100,
            used=10,
            remaining=90,
            mode=QuotaMode.FULL,
            source="ledger",
            window_s=3600.0,
            refused_until_s=None,
            up_thresholds={QuotaMode.FULL: 90, QuotaMode.ORIGINAL_TWEETS: 98},
            at_s=time.time(),
        )
        return LiveView(
            finished=3,
            outstanding=1,
            concurrency=2,
            requests_per_s=1.0,
            requests={Outcome.OK: 3},
            outcomes=Counter({JobState.DONE: 3}),
            quota=quota,
        )


async def test_the_watchdog_stops_while_the_store_fails(
    listener: NotifyListener, db_path: Path
) -> None:
    store = Store(db_path)
    store_thread = AsyncStore(store)
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "100000"})
    service = ServiceLoop(StillHarvest(), store_thread, notifier, "2026-11-22T00:00:00Z")
    task = asyncio.create_task(service.run())
    try:
        await listener.wait_for(has("STATUS"))
        await asyncio.sleep(0.3)
        assert sum("WATCHDOG" in message for message in listener.messages) >= 3
        saved = store.state.load("heartbeat")
        assert saved is not None and json.loads(saved[0])["concurrency"] == 2

        await store_thread._run(store.conn.close)  # the store stops answering
        service.report_soon()
        await asyncio.sleep(0.2)
        quiet_from = len(listener.messages)
        await asyncio.sleep(0.5)  # ten watchdog intervals
        assert not any("WATCHDOG" in message for message in listener.messages[quiet_from:])
        assert not task.done()  # the loop lives on, and says what is wrong in the log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
        store_thread.shutdown()


async def test_an_upgrade_at_start_extends_systemds_start_timeout(
    simulator: Simulator, listener: NotifyListener, tmp_path: Path
) -> None:
    db, config = tmp_path / "old.db", tmp_path / "h.toml"
    build_pre_compression_store(db, [b'{"altmetric_id": 1}', b"Not Found"])
    write_config(config, simulator.base_url, rate=50, metrics_port=free_port())
    daemon = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "harvester", "--config", str(config), "--db", str(db), "run"),
        env={**os.environ, "ALTMETRIC_API_KEY": KEY, "NOTIFY_SOCKET": str(listener.path)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
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
