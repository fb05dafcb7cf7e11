"""The networks users are on, end to end: `run`, `check` and `discover` (real
subprocesses) against the simulator served over TLS with a throwaway CA (trustme) and
through a real forward proxy (proxy.py) that the tests start, all on loopback.

- With `api.ca_file` (or `SSL_CERT_FILE`) naming the CA, a harvest works; without it,
  or with a certificate for another host name, each command fails at once with one
  line that says what is wrong and which setting fixes it (exit 1), and no job is
  charged an attempt or marked failed.
- Through the proxy: plain HTTP, and HTTPS through CONNECT, chosen by `api.proxy` or
  by `$HTTPS_PROXY`; the proxy's credentials never reach a log or an error.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from helpers import KEY, cli_env, dois, harvester_async, queue, rows, write_config

from harvester.sim.server import Simulator, SimulatorSettings

ENV = {"ALTMETRIC_API_KEY": KEY}
API_NAME = "api.altmetric.test"  # known to the proxy only (tests/harvest/loopback_names.py)
PROXY_USER, PROXY_PASSWORD = "ann", "pr0xy-s3cret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "network-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@contextlib.asynccontextmanager
async def tls_simulator(ca: trustme.CA, *names: str) -> AsyncIterator[tuple[Simulator, int]]:
    """The simulator over TLS on 127.0.0.1, its certificate for `names`, by `ca`."""
    simulator = Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=120))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    runner = web.AppRunner(simulator.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        yield simulator, runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """proxy.py on 127.0.0.1 with basic auth, resolving `*.test` to loopback: its port."""
    directory = tmp_path_factory.mktemp("proxy")
    port_file = directory / "port"
    log = (directory / "proxy.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--num-acceptors",
            "1",
            "--num-workers",
            "2",
            "--basic-auth",
            f"{PROXY_USER}:{PROXY_PASSWORD}",
            "--plugins",
            "loopback_names.LoopbackTestNames",
            "--log-level",
            "WARNING",
        ],
        env=cli_env({"PYTHONPATH": str(Path(__file__).parent)}),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, (directory / "proxy.log").read_text()
            assert time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def proxy_url(port: int, *, credentials: bool = True) -> str:
    userinfo = f"{PROXY_USER}:{PROXY_PASSWORD}@" if credentials else ""
    return f"http://{userinfo}127.0.0.1:{port}"


def config(directory: Path, base_url: str, **api: object) -> Path:
    return write_config(
        directory / "h.toml",
        base_url,
        api={"timeout_s": 10, **api},
        rate={"requests_per_s": 200, "burst": 8},
        workers={"concurrency": 4, "backoff_base_s": 0.05, "backoff_max_s": 0.1},
    )


async def command(cfg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await harvester_async(
        "--config", str(cfg), "--db", str(cfg.parent / "s.db"), *args, env={**ENV, **(env or {})}
    )  # fmt: skip


async def all_three_work(cfg: Path, env: dict[str, str] | None = None) -> None:
    """`run --drain` harvests what is queued, `check` says the key works, `discover`
    stores a page: each exit 0."""
    queue(cfg.parent / "s.db", dois(12, "10.5555/net."))
    code, _, err = await command(cfg, "run", "--drain", env=env)
    assert code == 0, err[-2000:]
    assert rows(cfg.parent / "s.db", "SELECT DISTINCT state FROM jobs") in (
        [("done",)],
        [("done",), ("not_found",)],
        [("not_found",), ("done",)],
    )
    code, out, err = await command(cfg, "check", env=env)
    assert code == 0 and "the key works for the fetch call" in out, err
    code, out, err = await command(
        cfg, "discover", "--timeframe", "1d", "--max-pages", "1", env=env
    )
    assert code == 0 and out.startswith("discovered 100 of 120 results on 1 page:"), err


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def nothing_charged(db: Path) -> None:
    assert rows(db, "SELECT state, count(*), max(attempts) FROM jobs GROUP BY state") == [
        ("pending", 12, 0)
    ]


# -- TLS -------------------------------------------------------------------------------


async def test_with_the_network_ca_configured_everything_works(
    ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    async with tls_simulator(ca, "localhost") as (_, port):
        cfg = config(tmp_path, f"https://localhost:{port}/v1", ca_file=str(ca_file))
        await all_three_work(cfg)


async def test_ssl_cert_file_works_as_usual(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    async with tls_simulator(ca, "localhost") as (_, port):
        cfg = config(tmp_path, f"https://localhost:{port}/v1")
        code, out, err = await command(cfg, "check", env={"SSL_CERT_FILE": str(ca_file)})
    assert code == 0 and "the key works" in out, err


async def test_without_the_ca_each_command_fails_at_once_and_says_what_fixes_it(
    ca: trustme.CA, tmp_path: Path
) -> None:
    async with tls_simulator(ca, "localhost") as (simulator, port):
        cfg = config(tmp_path, f"https://localhost:{port}/v1")
        db = queue(tmp_path / "s.db", dois(12, "10.5555/tls."))
        started = time.monotonic()
        code, _, err = await command(cfg, "run", "--drain")
        assert code == 1, err
        assert time.monotonic() - started < 20  # at once: no retries, no backoff
        line = last_line(err)
        assert line == (
            f"harvester run: certificate verify failed for localhost:{port}; set "
            "api.ca_file to your network's CA bundle (unable to get local issuer certificate)"
            "; the harvest stopped, unfinished jobs stay pending"
        )
        nothing_charged(db)
        for args in (("check",), ("check", "--json"), ("discover", "--timeframe", "1d")):
            code, out, err = await command(cfg, *args)
            assert code == 1, (args, out, err)
            if args == ("check", "--json"):
                assert "api.ca_file" in out
                continue
            if args == ("check",):
                assert err.count("\n") == 1, err  # one line, and no report
            line = last_line(err)  # discover's log events come before it
            assert line.startswith(f"harvester {args[0]}: certificate verify failed"), err
            assert "api.ca_file" in line
        assert simulator.sent == []  # no request ever reached it
    nothing_charged(db)


async def test_a_certificate_for_another_host_name_fails_at_once(
    ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    async with tls_simulator(ca, "elsewhere.test") as (_, port):
        cfg = config(tmp_path, f"https://localhost:{port}/v1", ca_file=str(ca_file))
        db = queue(tmp_path / "s.db", dois(12, "10.5555/name."))
        code, _, err = await command(cfg, "run", "--drain")
        assert code == 1, err
        assert "it is for another host name; check api.base_url (Hostname mismatch" in (
            last_line(err)
        )
        code, _, err = await command(cfg, "check")
        assert code == 1 and "Hostname mismatch" in err and err.count("\n") == 1, err
    nothing_charged(db)


# -- proxies ---------------------------------------------------------------------------


async def test_plain_http_through_the_configured_proxy(proxy: int, tmp_path: Path) -> None:
    async with Simulator(SimulatorSettings(key=KEY, citations_per_timeframe=120)) as simulator:
        cfg = config(tmp_path, simulator.base_url, proxy=proxy_url(proxy))
        await all_three_work(cfg)
        # The proof that it went through the proxy: without its credentials, refused.
        cfg = config(tmp_path, simulator.base_url, proxy=proxy_url(proxy, credentials=False))
        code, _, err = await command(cfg, "check")
    assert code == 1 and "the proxy refused us (HTTP 407" in err, err
    assert err.count("\n") == 1


async def test_https_through_connect_from_the_environment(
    ca: trustme.CA, ca_file: Path, proxy: int, tmp_path: Path
) -> None:
    async with tls_simulator(ca, API_NAME) as (_, port):
        cfg = config(tmp_path, f"https://{API_NAME}:{port}/v1", ca_file=str(ca_file))
        await all_three_work(cfg, env={"HTTPS_PROXY": proxy_url(proxy)})
        code, out, err = await command(cfg, "check", env={"https_proxy": proxy_url(proxy)})
        assert code == 0, err
        assert f"proxy      http://{PROXY_USER}:***@127.0.0.1:{proxy} (from $https_proxy)" in out
        code, _, err = await command(
            cfg, "check", env={"HTTPS_PROXY": proxy_url(proxy, credentials=False)}
        )
        assert code == 1 and "HTTP 407" in err, err


async def test_https_through_connect_from_the_config_over_the_environment(
    ca: trustme.CA, ca_file: Path, proxy: int, tmp_path: Path
) -> None:
    async with tls_simulator(ca, API_NAME) as (_, port):
        cfg = config(
            tmp_path, f"https://{API_NAME}:{port}/v1", ca_file=str(ca_file), proxy=proxy_url(proxy)
        )
        dead = {"HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
        await all_three_work(cfg, env=dead)
        code, _, err = await command(cfg, "run", "--drain", env=dead)
    assert code == 0, err
    assert PROXY_PASSWORD not in err  # the logs: the credentials are secrets too
