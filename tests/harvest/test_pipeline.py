"""The harvest end to end: the daemon against the simulator on loopback, into a real
SQLite file; bad answers retried, never stored as done; leases and keys kept right."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pytest
from aiohttp import web
from helpers import KEY, dois, drain, queue, rows, stored_responses

from harvester.cli import main
from harvester.config import (
    ApiSettings,
    RateSettings,
    Settings,
    StoreSettings,
    WorkerSettings,
)
from harvester.harvest.policy import decide
from harvester.identifiers import Identifier
from harvester.logs import configure_logging, get_logger, register_secret
from harvester.model import ExitCode
from harvester.sim import universe
from harvester.sim.server import FetchRequest, Gate, Simulator, text_response


def settings_for(base_url: str, db_path: Path, **workers: float) -> Settings:
    worker_settings = {"concurrency": 16, "max_attempts": 3, "backoff_base_s": 0.01, **workers}
    return Settings(
        api=ApiSettings(base_url=base_url, timeout_s=5.0),
        rate=RateSettings(requests_per_s=2000.0, burst=50),
        workers=WorkerSettings(**worker_settings),  # type: ignore[arg-type]
        store=StoreSettings(path=db_path),
    )


async def harvest(settings: Settings, key: str = KEY) -> int:
    return (await drain(settings, key)).exit_code


async def test_full_harvest_stores_exactly_the_bytes_sent(
    simulator: Simulator, db_path: Path
) -> None:
    identifiers = [
        *dois(280, "10.5555/t."),
        Identifier("doi", "10.5555/odd#chars?100%<x>caf\u00e9"),
        *(Identifier("pmid", str(1000 + n)) for n in range(20)),
    ]
    queue(db_path, identifiers)
    assert await harvest(settings_for(simulator.base_url, db_path)) == 0

    sent = {(record.id_type, record.identifier): record for record in simulator.sent}
    stored = stored_responses(db_path)
    assert len(stored) == len(identifiers) == len(sent)
    for id_type, identifier, state, status, sha256, body in stored:
        record = sent[(id_type, identifier)]
        assert sha256 == record.sha256 == hashlib.sha256(body).hexdigest()
        assert status == record.status
        known = universe.is_known(id_type, identifier)
        assert state == ("done" if known else "not_found")
        if known:
            assert isinstance(json.loads(body), dict)
        else:
            assert (status, body) == (404, b"Not Found")
    states = dict(rows(db_path, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert states["not_found"] >= 1  # the universe holds unknown outputs among 300
    assert set(states) <= {"done", "not_found"}


async def test_a_rejected_key_stops_the_daemon_and_consumes_no_job(
    simulator: Simulator, db_path: Path
) -> None:
    queue(db_path, dois(200, "10.5555/t."))
    exit_code = await harvest(settings_for(simulator.base_url, db_path), key="wrong-key")
    assert exit_code == ExitCode.KEY_REJECTED
    assert rows(db_path, "SELECT state, count(*), sum(attempts) FROM jobs GROUP BY state") == [
        ("pending", 200, 0)
    ]
    assert rows(db_path, "SELECT count(*) FROM responses") == [(0,)]
    assert len(simulator.sent) < 200  # it stopped rather than trying every job


def bad_body_gate(bad_answers_per_identifier: int) -> Gate:
    """A gate that answers the first few fetches of each identifier with a broken body."""
    served: dict[str, int] = {}
    broken = [
        lambda: web.Response(body=b'{"altmetric_id": 1, "cut', content_type="application/json"),
        lambda: web.Response(body=b"[1, 2, 3]", content_type="application/json"),
        lambda: web.Response(body=b"<html>oops</html>", content_type="application/json"),
    ]

    async def gate(request: web.Request, fetch: FetchRequest) -> web.StreamResponse | None:
        count = served.get(fetch.identifier, 0)
        served[fetch.identifier] = count + 1
        if count >= bad_answers_per_identifier:
            return None
        if count % 4 == 3:
            return await truncated(request)
        return broken[count % len(broken)]()

    return gate


async def truncated(request: web.Request) -> web.StreamResponse:
    """Promise 4,000 bytes, send 20 and hang up."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 4000
    await response.prepare(request)
    await response.write(b'{"altmetric_id": 12,')
    assert request.transport is not None
    request.transport.close()
    return response


async def test_bad_bodies_are_retried_and_never_stored_as_done(
    simulator: Simulator, db_path: Path
) -> None:
    simulator.gates.append(bad_body_gate(bad_answers_per_identifier=4))
    identifiers = [i for i in dois(60, "10.5555/bad.") if universe.is_known(i.id_type, i.value)]
    queue(db_path, identifiers)
    settings = settings_for(simulator.base_url, db_path, max_attempts=5)
    assert await harvest(settings) == 0
    assert rows(db_path, "SELECT state, count(*), min(attempts) FROM jobs GROUP BY state") == [
        ("done", len(identifiers), 5)
    ]
    for *_, body in stored_responses(db_path):
        assert isinstance(json.loads(body), dict)
    assert rows(db_path, "SELECT count(*) FROM responses") == [(len(identifiers),)]


async def test_bad_bodies_past_max_attempts_fail_with_the_error_kept(
    simulator: Simulator, db_path: Path
) -> None:
    simulator.gates.append(bad_body_gate(bad_answers_per_identifier=99))
    queue(db_path, dois(20, "10.5555/fail."))
    assert await harvest(settings_for(simulator.base_url, db_path, max_attempts=2)) == 0
    [(state, count, attempts)] = rows(
        db_path, "SELECT state, count(*), max(attempts) FROM jobs GROUP BY state"
    )
    assert (state, count, attempts) == ("failed", 20, 2)
    errors = {error for (error,) in rows(db_path, "SELECT last_error FROM jobs")}
    assert errors == {"JSON body is not an object"}  # the second broken answer is the last
    assert rows(db_path, "SELECT count(*) FROM responses") == [(0,)]


async def test_server_errors_retry_then_succeed(simulator: Simulator, db_path: Path) -> None:
    seen: set[str] = set()

    async def first_try_fails(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        if fetch.identifier in seen:
            return None
        seen.add(fetch.identifier)
        return text_response(503, "temporarily unavailable")

    simulator.gates.append(first_try_fails)
    queue(db_path, dois(40, "10.5555/flaky."))
    assert await harvest(settings_for(simulator.base_url, db_path)) == 0
    assert rows(db_path, "SELECT count(*) FROM jobs WHERE state IN ('done', 'not_found')") == [
        (40,)
    ]
    assert rows(db_path, "SELECT min(attempts), max(attempts) FROM jobs") == [(2, 2)]


async def test_the_key_never_reaches_the_logs(simulator: Simulator, db_path: Path) -> None:
    captured = io.StringIO()
    configure_logging("debug", stream=captured, json_lines=True)
    register_secret(KEY)
    simulator.gates.append(bad_body_gate(bad_answers_per_identifier=1))
    queue(db_path, dois(30, "10.5555/log."))
    await harvest(settings_for(simulator.base_url, db_path))
    await harvest(settings_for(simulator.base_url, db_path), key=KEY + "x")  # a 403 run, too
    get_logger("test").error("deliberate", url=f"http://h/v1/fetch?key={KEY}", detail=[KEY])
    text = captured.getvalue()
    events = [json.loads(line) for line in text.splitlines()]
    assert {"harvest.start", "harvest.stop", "harvest.fetch_failed", "deliberate"} <= {
        event["event"] for event in events
    }
    assert KEY not in text
    assert "key=***" in text


async def test_jobs_waiting_longer_than_their_lease_are_not_fetched_twice(
    simulator: Simulator, db_path: Path
) -> None:
    # 12 jobs at 2 requests/s wait up to 6 s for a token, longer than the 2 s lease:
    # the lease sweep must leave this run's own claims alone.
    queue(db_path, dois(12, "10.5555/lease."))
    settings = settings_for(simulator.base_url, db_path, lease_s=2.0)
    settings = dataclasses.replace(
        settings,
        api=ApiSettings(base_url=simulator.base_url, timeout_s=1.0),
        rate=RateSettings(requests_per_s=2.0, burst=1),
    )
    assert await harvest(settings) == 0
    assert len(simulator.sent) == 12
    assert rows(db_path, "SELECT count(*) FROM responses") == [(12,)]


async def test_odd_retry_after_and_echoed_keys_do_no_harm(
    simulator: Simulator, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, int] = {}

    async def awkward(request: web.Request, fetch: FetchRequest) -> web.Response | None:
        count = seen.get(fetch.identifier, 0)
        seen[fetch.identifier] = count + 1
        if count == 0:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "\u00b2"})
        if count == 1:
            return text_response(500, f"error in GET {request.path_qs}")  # echoes the key
        return None

    simulator.gates.append(awkward)
    queue(db_path, dois(6, "10.5555/odd."))
    settings = settings_for(simulator.base_url, db_path, max_attempts=1)
    assert await harvest(settings) == 0
    errors = [error for (error,) in rows(db_path, "SELECT last_error FROM jobs")]
    assert all(KEY not in error for error in errors)
    assert all("key=***" in error for error in errors)  # failed on the echoing 500
    assert main(["--db", str(db_path), "status", "--json"]) == 0
    assert KEY not in capsys.readouterr().out


async def test_a_worker_error_retries_the_job_instead_of_stranding_it(
    simulator: Simulator, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_decide = decide

    def flaky_decide(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("a bug of ours")
        return real_decide(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("harvester.harvest.workers.decide", flaky_decide)
    identifiers = [i for i in dois(10, "10.5555/bug.") if universe.is_known(i.id_type, i.value)]
    queue(db_path, identifiers)
    assert await harvest(settings_for(simulator.base_url, db_path, max_attempts=3)) == 0
    assert rows(db_path, "SELECT DISTINCT state FROM jobs") == [("done",)]
    assert rows(db_path, "SELECT max(attempts) FROM jobs") == [(2,)]
