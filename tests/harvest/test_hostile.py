"""A harvest against a hostile server, end to end: `harvester run --drain` (a real
subprocess) asks a loopback server that echoes the request (and so the key), sends
answers that never end, compression bombs, lies about lengths, resets and captive
portal pages. Nothing over `api.max_answer_bytes` is stored, the daemon's memory stays
within its usual bound, each bad answer ends `failed` with a message naming its size,
and no 8-character prefix of the key is left anywhere: the store file, its WAL, the
bodies, `show`, `status`, exports or the logs."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from helpers import HARVESTER, cli_env, harvester_async, queue, rows, write_config

from harvester.identifiers import Identifier
from harvester.redaction import PREFIX_CHARS

KEY = "h0st1le/k3y+5ecr3t-77"  # percent-encoded in the query, so both spellings echo back
PREFIXES = (KEY[:PREFIX_CHARS], quote(KEY[:PREFIX_CHARS], safe=""))  # "h0st1le/", "h0st1le%2F"
BOMB_MIB = 256  # a bomb inflates to this: four times the default bound of 64 MiB
PEAK_RSS_MB = 200  # the daemon's usual bound (~65 MB for this harvest without hostile answers)

# Identifier -> what the hostile server does; `ok-N` answer as the API would.
HOSTILE = {
    "10.5555/echo-200": "done",  # a 200 whose fields echo the URL and a cut-short key
    "10.5555/echo-404": "not_found",  # a 404 whose text echoes the URL
    "10.5555/echo-500": "failed",  # a 500 whose text has the key past byte 100
    "10.5555/endless-1": "failed",
    "10.5555/endless-2": "failed",
    "10.5555/bomb-1": "failed",
    "10.5555/bomb-2": "failed",
    "10.5555/huge": "failed",  # declares 100 MB
    "10.5555/reset": "failed",
    "10.5555/portal": "failed",  # a 200 of HTML, as a captive portal sends
}


@functools.cache
def gzip_bomb(mib: int) -> bytes:
    """A gzip body of zeros inflating to `mib` MiB, made a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join([*(packer.compress(zeros) for _ in range(mib)), packer.flush()])


async def hostile(request: web.Request) -> web.StreamResponse:
    identifier = request.match_info["identifier"]
    echo = request.raw_path  # the request target, key and all
    if identifier == "10.5555/echo-200":
        body = {"altmetric_id": 7, "doi": identifier, "title": "Echo", "url": echo, "k": KEY[:9]}
        return web.json_response(body)
    if identifier == "10.5555/echo-404":
        return web.Response(status=404, text=f"Not Found: {echo}")
    if identifier == "10.5555/echo-500":
        return web.Response(status=500, text="x" * 100 + f" in GET {echo}")
    if identifier.startswith("10.5555/endless"):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"[" * 65536
        while True:
            await response.write(chunk)
    if identifier.startswith("10.5555/bomb"):
        bomb = gzip_bomb(BOMB_MIB)
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)
    if identifier == "10.5555/huge":
        response = web.StreamResponse(headers={"Content-Length": "100000000"})
        await response.prepare(request)
        await response.write(b"{" * 1000)
        await asyncio.sleep(30)
    if identifier == "10.5555/reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)
    if identifier == "10.5555/portal":
        return web.Response(text="<html>Sign in to the network</html>", content_type="text/html")
    number = identifier.rpartition("-")[2]
    return web.json_response({"altmetric_id": int(number), "doi": identifier, "title": "Fine"})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    gzip_bomb(BOMB_MIB)  # made before the harvest starts
    app.router.add_get("/v1/fetch/doi/{identifier:.*}", hostile)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


# Runs the harvester as its only child, then says the child's peak RSS (KB) last on stderr.
MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


async def measured_drain(config: Path, db: Path) -> tuple[int, str, float]:
    """`harvester run --drain`, installed as users install it: its exit code, stderr and
    peak RSS in MB. The test extras' pandas is hidden from it: sqlite-utils imports
    pandas whenever it can, ~60 MB that a daemon without it never carries."""
    no_pandas = db.parent / "no-pandas"
    no_pandas.mkdir()
    (no_pandas / "pandas.py").write_text('raise ImportError("not installed with the daemon")\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MEASURED,
        *HARVESTER,
        "--config",
        str(config),
        "--db",
        str(db),
        "run",
        "--drain",
        env=cli_env({"ALTMETRIC_API_KEY": KEY, "PYTHONPATH": str(no_pandas)}),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=240)
    lines = err.decode().splitlines()
    assert process.returncode is not None
    return process.returncode, "\n".join(lines[:-1]), int(lines[-1]) / 1024


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [prefix for prefix in PREFIXES if prefix.encode() in data]


async def test_a_hostile_server_is_survived_and_the_key_is_never_kept(
    server: str, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    identifiers = [*HOSTILE, *(f"10.5555/ok-{n}" for n in range(40))]
    queue(db, [Identifier("doi", identifier) for identifier in identifiers])
    config = write_config(
        tmp_path / "h.toml",
        server,
        api={"timeout_s": 20},
        rate={"requests_per_s": 1000, "burst": 8},
        workers={
            "concurrency": 8,
            "max_attempts": 2,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.01,
        },
    )
    code, log, peak_mb = await measured_drain(config, db)
    assert code == 4, log[-3000:]  # drained, some jobs failed
    assert peak_mb <= PEAK_RSS_MB, f"peak RSS {peak_mb:.0f} MB"

    states = dict(rows(db, "SELECT identifier, state FROM jobs"))
    assert {i: states[i] for i in HOSTILE} == HOSTILE
    assert all(states[f"10.5555/ok-{n}"] == "done" for n in range(40))
    errors = dict(rows(db, "SELECT identifier, last_error FROM jobs WHERE state = 'failed'"))
    for identifier in ("10.5555/endless-1", "10.5555/bomb-2"):
        assert errors[identifier].startswith(
            "answer cut off at api.max_answer_bytes (67,108,864 bytes)"
        ), errors[identifier]
    assert errors["10.5555/huge"] == (
        "answer of 100,000,000 bytes refused: over api.max_answer_bytes (67,108,864)"
    )
    assert errors["10.5555/echo-500"].startswith("HTTP 500: xxx")
    assert errors["10.5555/portal"] == "invalid JSON body"
    assert max(size for (size,) in rows(db, "SELECT size_bytes FROM bodies")) < 1000

    # The echoes were stored without the key, and say so; the checksums hold.
    params = dict(
        rows(
            db,
            "SELECT j.identifier, r.request_params FROM responses r JOIN jobs j ON j.id = r.job_id"
            " WHERE j.identifier LIKE '10.5555/echo%'",
        )
    )
    assert json.loads(params["10.5555/echo-200"]) == {"key_redacted": 2}
    assert json.loads(params["10.5555/echo-404"]) == {"key_redacted": 1}
    verify = await harvester_async("--db", str(db), "verify")
    assert verify[0] == 0, verify
    code, shown, _ = await harvester_async("--db", str(db), "show", "doi", "10.5555/echo-200")
    assert code == 0
    assert json.loads(shown)["url"] == "/v1/fetch/doi/10.5555/echo-200?key=***"
    assert json.loads(shown)["k"] == "***"

    # No prefix of the key anywhere a user, a log reader or a disk thief could look.
    outputs = [log]
    for args in (
        ("show", "doi", "10.5555/echo-404", "--json"),
        ("show", "doi", "10.5555/echo-200", "--raw"),
        ("status", "--json"),
        ("export", "--format", "jsonl", "--table", "bodies"),
        ("export", "--format", "jsonl", "--table", "jobs"),
        ("export", "--format", "jsonl", "--table", "responses"),
        ("export", "--format", "jsonl"),
    ):
        code, out, err = await harvester_async("--db", str(db), *args)
        assert code == 0, (args, err)
        outputs += [out, err]
    for path in (db, db.with_name("store.db-wal")):
        if path.exists():
            outputs.append(path.read_bytes().decode("latin-1"))
    assert [leak for text in outputs for leak in leaks(text)] == []
