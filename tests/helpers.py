"""What the tests share: the test key, the `harvester` command run as users run it (a
subprocess on a pipe or on a pseudo-terminal), configs, stores to start from, ways to
look inside a store, and systemd's end of the notify socket.

The fixtures built on these are in conftest.py. Every test module imports from here;
none imports another test module or conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import pty
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from sqlite_utils import Database

from harvester.cli import main
from harvester.config import ApiSettings, RateSettings, Secret, Settings, StoreSettings
from harvester.harvest.report import HarvestReport
from harvester.identifiers import Identifier
from harvester.model import ClaimedJob, JobOutcome, QuotaMode, StoredResponse, iso_utc
from harvester.service.daemon import run_daemon
from harvester.sim import universe
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store
from harvester.store.schema import migrations

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, config/, systemd/
KEY = "test-key-9f8e7d"  # the API key of the tests' simulators
ODD_KEY = "k3y/with+odd&chars"  # a key that must be percent-encoded in a query
HARVESTER = (sys.executable, "-m", "harvester")  # the command, from this checkout

# What the outer environment may hold that would leak into a test's subprocess: a real
# key, systemd's hooks and a network's proxy (a test gives them explicitly where it
# means to).
PROXY_VARIABLES = tuple(
    name for base in ("http_proxy", "https_proxy", "no_proxy") for name in (base, base.upper())
)
OUTER = (
    "ALTMETRIC_API_KEY",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    *PROXY_VARIABLES,
)


# -- the command, as users run it -----------------------------------------------------------


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a real key or systemd's hooks, plus `extra`."""
    environment = {k: v for k, v in os.environ.items() if k not in OUTER}
    environment.update(extra or {})
    return environment


def harvester(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARVESTER, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )


async def harvester_async(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop that serves the simulator."""
    process = await start_harvester(*args, env=env, stdout=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def start_harvester(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] | None = asyncio.subprocess.DEVNULL,
    stderr: int | IO[Any] | None = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """The CLI started and left running (a daemon, say): by default stdout dropped and
    stderr piped (None: shared with the tests')."""
    return await asyncio.create_subprocess_exec(
        *HARVESTER, *args, env=cli_env(env), stdout=stdout, stderr=stderr
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`harvester ARGS` in this process: its exit code, stdout and stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Terminal:
    """The CLI with stdin, stdout and stderr on a pseudo-terminal, as a person runs it
    (subprocesses in tests never have a terminal otherwise)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._controller, terminal = pty.openpty()
        self.process = subprocess.Popen(
            [*HARVESTER, *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=cli_env({"COLUMNS": "120", **(env or {})}),
            close_fds=True,
        )
        os.close(terminal)
        self.output = bytearray()

    def type(self, text: str) -> None:
        os.write(self._controller, text.encode())

    def read_until(self, expected: str, timeout_s: float = 60) -> str:
        """Everything shown so far, once `expected` is among it."""
        while expected.encode() not in self.output:
            if not self._read_some(timeout_s):
                raise AssertionError(f"{expected!r} never shown in {self.text()!r}")
        return self.text()

    def finish(self, timeout_s: float = 60) -> tuple[int, str]:
        """Read to the end; the exit code and everything shown."""
        try:
            while self._read_some(timeout_s):
                pass
        finally:
            os.close(self._controller)
        return self.process.wait(timeout=timeout_s), self.text()

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def _read_some(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self._controller], [], [], timeout_s)
        if not ready:
            raise TimeoutError(self.text())
        try:
            chunk = os.read(self._controller, 65536)
        except OSError:  # EIO: the child closed its end
            return False
        self.output += chunk
        return bool(chunk)


def run_on_a_terminal(*args: str, timeout_s: float = 60) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal to the end: its exit code and what it showed."""
    return Terminal(*args).finish(timeout_s)


# -- configs -------------------------------------------------------------------------------


def write_config(path: Path, base_url: str, **sections: dict[str, Any]) -> Path:
    """A config file for the API at `base_url`: `[api] base_url`, then each section's
    keys (every value written as JSON, which TOML reads alike)."""
    sections["api"] = {"base_url": base_url, **sections.get("api", {})}
    path.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
            for name, keys in sections.items()
        )
    )
    return path


def daemon_config(
    path: Path, base_url: str, *, rate: float, workers: dict[str, Any], **sections: dict[str, Any]
) -> Path:
    """A config for a daemon that retries quickly: a 2 s timeout, bursts of 2, four
    workers backing off from 0.05 s to 0.2 s, unless `workers` says otherwise."""
    return write_config(
        path,
        base_url,
        api={"timeout_s": 2},
        rate={"requests_per_s": rate, "burst": 2},
        workers={"concurrency": 4, "backoff_base_s": 0.05, "backoff_max_s": 0.2, **workers},
        **sections,
    )


def config_for(directory: Path, base_url: str, **workers: Any) -> Path:
    """A config (`directory/h.toml`) that harvests the simulator at `base_url` fast."""
    return write_config(
        directory / "h.toml",
        base_url,
        rate={"requests_per_s": 500, "burst": 20},
        workers={"concurrency": 8, **workers},
    )


# -- stores to start from -------------------------------------------------------------------


def dois(count: int, stem: str) -> list[Identifier]:
    """`count` DOIs: `stem` followed by 0, 1, 2..."""
    return [Identifier("doi", f"{stem}{n}") for n in range(count)]


def queue(db_path: Path, identifiers: list[Identifier]) -> Path:
    """A store (made if need be) with `identifiers` queued."""
    with Store(db_path) as store:
        store.jobs.add(identifiers)
    return db_path


def stored_response(
    body: bytes, status: int = 200, mode: str = QuotaMode.FULL, tweet_ids: tuple[int, ...] = ()
) -> StoredResponse:
    """An answer as the harvest hands it to the store, fetched now."""
    return StoredResponse(status, body, "{}", mode, iso_utc(time.time()), tweet_ids)


def outcome_with_tweets(
    job: ClaimedJob, tweets: tuple[int, ...], mode: str = QuotaMode.FULL
) -> JobOutcome:
    """A claimed job done, its answer carrying `tweets` fetched in `mode`."""
    response = stored_response(b"{}", mode=mode, tweet_ids=tweets)
    return JobOutcome(job.id, job.lease_token, "done", True, response=response)


def store_answer(store: Store, identifier: Identifier, body: bytes, status: int = 200) -> int:
    """Claim the job of `identifier` and store `body` as its answer; the response id."""
    store.jobs.add([identifier])
    store.conn.execute(
        "UPDATE jobs SET state = 'pending' WHERE id_type = ? AND identifier = ?", identifier
    )
    [job] = store.jobs.claim(1, lease_s=60)
    state = "done" if status == 200 else "not_found"
    response = stored_response(body, status)
    store.record([JobOutcome(job.id, job.lease_token, state, True, response=response)])
    return int(store.conn.execute("SELECT max(id) FROM responses").fetchone()[0])


def build_pre_compression_store(db_path: Path, bodies: list[bytes]) -> None:
    """A store as versions before schema m004 left it: raw bodies inside `responses`.
    A body of b"Not Found" is stored as a 404, any other as a done 200."""
    database = Database(db_path)
    migrations.apply(database, stop_before="m004_compressed_bodies")
    now = iso_utc(time.time())
    for n, body in enumerate(bodies, start=1):
        status = 404 if body == b"Not Found" else 200
        database.execute(
            "INSERT INTO jobs (id, id_type, identifier, state, next_attempt_at, created_at,"
            " updated_at) VALUES (?, 'doi', ?, ?, ?, ?, ?)",
            (n, f"10.5150/old.{n}", "done" if status == 200 else "not_found", now, now, now),
        )
        database.execute(
            "INSERT INTO responses (job_id, http_status, sha256, size_bytes, request_params,"
            " fetched_at, body) VALUES (?, ?, ?, ?, '{}', ?, ?)",
            (n, status, hashlib.sha256(body).hexdigest(), len(body), now, body),
        )
    database.conn.commit()
    database.close()


async def drain(settings: Settings, key: str = KEY) -> HarvestReport:
    """The daemon in this process until the queue is drained: no bar, no signals."""
    return await run_daemon(
        settings, Secret(key), drain=True, show_progress=False, install_signals=False
    )


async def harvest_from_simulator(db_path: Path, count: int) -> None:
    """Queue `count` DOIs (10.5150/sim.N) and harvest them from a simulator, in process."""
    queue(db_path, dois(count, "10.5150/sim."))
    async with Simulator(SimulatorSettings(key=KEY)) as simulator:
        settings = Settings(
            api=ApiSettings(base_url=simulator.base_url, timeout_s=5),
            rate=RateSettings(requests_per_s=500, burst=10),
            store=StoreSettings(path=db_path),
        )
        report = await drain(settings)
    assert report.exit_code == 0


@contextlib.contextmanager
def simulator_process() -> Iterator[str]:
    """`harvester simulate` on a free loopback port, as a process: its base URL."""
    simulator = subprocess.Popen(
        [*HARVESTER, "simulate", "--port", "0", "--key", KEY],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert simulator.stdout is not None
        yield simulator.stdout.readline().split(" on ")[1].split()[0]
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
        if simulator.stdout is not None:
            simulator.stdout.close()


def harvest_store(directory: Path, count: int = 40) -> Path:
    """A store harvested by the real CLI: `enqueue` then `run --drain` `count` DOIs
    (10.1000/harvested.N) against `harvester simulate`."""
    with simulator_process() as base_url:
        db = directory / "harvested.db"
        ids = "".join(f"10.1000/harvested.{n}\n" for n in range(count))
        assert harvester("--db", str(db), "enqueue", stdin=ids).returncode == 0
        config = config_for(directory, base_url)
        result = harvester(
            "--config", str(config), "--db", str(db), "run", "--drain",
            env={"ALTMETRIC_API_KEY": KEY},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return db


def copy_store(source: Path, directory: Path) -> Path:
    """A private copy of a closed store (and its WAL, if one is left)."""
    target = directory / source.name
    for suffix in ("", "-wal"):
        if source.with_name(source.name + suffix).exists():
            shutil.copy(
                source.with_name(source.name + suffix), target.with_name(target.name + suffix)
            )
    return target


def doi_with(
    predicate: Callable[[dict[str, Any]], bool], limit: int = 20_000
) -> tuple[str, dict[str, Any]]:
    """The first known DOI whose output satisfies ``predicate`` (scanning the universe)."""
    for index in range(limit):
        doi = f"10.7777/scan.{index}"
        output = universe.output_for("doi", doi)
        if output is not None and predicate(output):
            return doi, output
    raise AssertionError("no such output in the scanned range")


# -- looking inside a store -------------------------------------------------------------------


def rows(source: Path | Store, sql: str) -> list[tuple[Any, ...]]:
    """What `sql` selects: from an open store, or from a store file opened read-only (so
    looking never writes, and works beside a running daemon)."""
    if isinstance(source, Store):
        return source.conn.execute(sql).fetchall()
    uri = f"{source.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute(sql).fetchall()


def stored_responses(db_path: Path) -> list[tuple[str, str, str, int, str, bytes]]:
    """Every stored response as (type, identifier, state, status, sha256, body), the
    body uncompressed by the store, as `show` and `export` see it."""
    with Store(db_path, read_only=True) as store:
        found = store.conn.execute(
            """SELECT r.id, j.id_type, j.identifier, j.state, r.http_status, r.sha256
               FROM responses AS r JOIN jobs AS j ON j.id = r.job_id ORDER BY r.id"""
        ).fetchall()
        return [(*row[1:], store.bodies.of_response(row[0])) for row in found]


# -- systemd's end of the notify socket ---------------------------------------------------------

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


def has(key: str, value: str | None = None) -> Callable[[Message], bool]:
    """A notify message that sets `key` (to `value`, if given)."""
    return lambda message: key in message and (value is None or message[key] == value)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- stores harvested over months, and Parquet datasets ---------------------------------------


def spread_over_months(db_path: Path, months: int) -> list[str]:
    """Make a closed store look harvested over `months` calendar months, in the order
    it was harvested: its responses (and their snapshots) split into `months` runs of
    response ids, the first run fetched `months - 1` months (of 31 days) ago, the last
    as it was. The months, oldest first, as YYYY-MM."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        found = conn.execute("SELECT id, fetched_at FROM responses ORDER BY id").fetchall()
        share = -(-len(found) // months)
        for index, (response_id, fetched_at) in enumerate(found):
            back_s = (months - 1 - index // share) * 31 * 86_400
            moved = iso_utc(datetime.datetime.fromisoformat(fetched_at).timestamp() - back_s)
            conn.execute("UPDATE responses SET fetched_at = ? WHERE id = ?", (moved, response_id))
            conn.execute(
                "UPDATE outputs SET fetched_at = ? WHERE response_id = ?", (moved, response_id)
            )
        return [month for (month,) in conn.execute(
            "SELECT DISTINCT substr(fetched_at, 1, 7) FROM responses ORDER BY 1"
        )]  # fmt: skip


def refresh_some(db_path: Path, config: Path, where: str) -> None:
    """`refresh --older-than 0s --where WHERE`, then `run --drain` with `config` (a
    simulator's): the outputs matching WHERE get a new snapshot each."""
    result = harvester("--db", str(db_path), "refresh", "--older-than", "0s", "--where", where)
    assert result.returncode == 0, result.stderr
    result = harvester(
        "--config", str(config), "--db", str(db_path), "run", "--drain",
        env={"ALTMETRIC_API_KEY": KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def query_json(db_path: Path, sql: str) -> list[dict[str, Any]]:
    """`harvester query SQL --format json` on the store: what a user gets."""
    result = harvester("--db", str(db_path), "query", sql, "--format", "json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


@contextlib.contextmanager
def serve_store(store: Path, cache: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`harvester serve` on a free loopback port for the block: its first line (which
    names the URL) and its process; the search index in `cache` ($XDG_CACHE_HOME).
    Stopped at the end if the block did not stop it."""
    process = subprocess.Popen(
        [*HARVESTER, "--db", str(store), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env({"XDG_CACHE_HOME": str(cache)}),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " read-only on http://" in line, process.communicate(timeout=30)
        yield line, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)


def served_url(line: str) -> str:
    """The URL in `harvester serve`'s first line."""
    return line.split(" on ")[1].split()[0]
