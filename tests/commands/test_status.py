"""`status` never misleads: no prediction without a daemon, an ETA taken at the running
daemon's own rate (never at a rate left over from earlier runs), and a daemon told
alive only by a fresh heartbeat of a live process.

The stores of the first tests hold the answers of an earlier run, harvested for real
from the simulator and dated a minute back; `status` runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    KEY,
    dois,
    harvester_async,
    queue,
    start_harvester,
    store_answer,
    write_config,
)

from harvester.cli import main
from harvester.identifiers import Identifier
from harvester.model import iso_utc
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store
from harvester.store.jobs import waiting_jobs

EARLIER = 900  # answers of the earlier run: 3/s over the last 5 minutes


def config_at_rate(path: Path, base_url: str, *, rate: float) -> None:
    write_config(
        path,
        base_url,
        rate={"requests_per_s": rate, "burst": 1 if rate < 10 else 16},
        workers={"concurrency": 2 if rate < 10 else 16, "drain_deadline_s": 0.5},
    )


async def harvester(*args: str) -> tuple[int, str, str]:
    return await harvester_async(*args, env={"ALTMETRIC_API_KEY": KEY})


async def status(config: Path, db: Path) -> tuple[dict[str, Any], str]:
    code, as_json, err = await harvester(
        "--config", str(config), "--db", str(db), "status", "--json"
    )
    assert code == 0, err
    code, text, err = await harvester("--config", str(config), "--db", str(db), "status")
    assert code == 0, err
    assert KEY not in as_json + text
    return json.loads(as_json), text


async def store_after_an_earlier_run(simulator: Simulator, tmp_path: Path) -> tuple[Path, Path]:
    """A store whose earlier run harvested EARLIER answers a minute ago, with 100
    jobs queued since; the config points at the simulator, fast."""
    config, db = tmp_path / "h.toml", tmp_path / "s.db"
    config_at_rate(config, simulator.base_url, rate=2000)
    queue(db, dois(EARLIER, "10.6262/old."))
    code, _, err = await harvester("--config", str(config), "--db", str(db), "run", "--drain")
    assert code == 0, err[-2000:]
    with Store(db) as store:
        store.conn.execute("UPDATE responses SET fetched_at = ?", (iso_utc(time.time() - 60),))
        store.conn.commit()
        store.jobs.add(dois(100, "10.6262/new."))
    return config, db


async def test_without_a_daemon_status_predicts_nothing(
    simulator: Simulator, tmp_path: Path
) -> None:
    config, db = await store_after_an_earlier_run(simulator, tmp_path)

    document, text = await status(config, db)

    assert document["daemon"]["running"] is False
    assert document["jobs"]["pending"] == 100
    assert document["throughput_per_s"]["last_5m"] == EARLIER / 300  # history, still told
    assert document["eta_s"] is None
    assert document["quota"]["next_mode"] is None
    assert document["quota"]["next_change_at"] is None
    assert document["quota"]["mode"] == "full" and document["quota"]["used"] > 0
    assert "next:" not in text
    assert "eta" not in text
    assert "(earlier runs; no daemon is running)" in text


async def test_with_a_daemon_the_eta_is_at_its_own_rate(
    simulator: Simulator, tmp_path: Path
) -> None:
    """The earlier run stored 3 answers a second over the last 5 minutes; this daemon
    is allowed 0.5 a second. The ETA is at this daemon's rate: at most 1/s, as status
    counts its answers over at least a second since it started."""
    config, db = await store_after_an_earlier_run(simulator, tmp_path)
    config_at_rate(config, simulator.base_url, rate=0.5)
    daemon = await start_harvester(
        *("--config", str(config), "--db", str(db), "run"),
        env={"ALTMETRIC_API_KEY": KEY},
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            document, text = await status(config, db)
            if document["daemon"]["running"] and document["eta_s"] is not None:
                break
            assert time.monotonic() < deadline, document
            await asyncio.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), timeout=20)

    left = document["jobs"]["pending"] + document["jobs"]["in_progress"]
    assert document["throughput_per_s"]["last_5m"] >= EARLIER / 300  # the earlier run
    assert document["eta_s"] >= left  # at 1/s or less, not at 3/s
    assert "eta for the jobs that can run now, at this daemon's recent rate" in text
    assert "no daemon is running" not in text
    assert document["quota"]["next_mode"] == "original_tweets"  # the ladder, predicted


async def test_status_names_the_hourly_allowance_a_daemon_paces_by(tmp_path: Path) -> None:
    """Issue 24: the heartbeat's allowance_per_s is in `status --json` (the README lists
    it), and with `"auto"` the text names the hourly allowance the daemon paces by."""
    config, db = tmp_path / "h.toml", tmp_path / "s.db"
    queue(db, dois(5, "10.6262/allowance."))
    settings = SimulatorSettings(key=KEY, hourly_limit=36_000, hourly_used=0)
    async with Simulator(settings) as simulator:
        write_config(config, simulator.base_url, rate={"requests_per_s": "auto"})
        daemon = await start_harvester(
            *("--config", str(config), "--db", str(db), "run"),
            env={"ALTMETRIC_API_KEY": KEY},
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                document, text = await status(config, db)
                if document["daemon"].get("allowance_per_s") is not None:
                    break
                assert time.monotonic() < deadline, document
                await asyncio.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), timeout=20)
    live = document["daemon"]
    assert live["running"] and live["rate_limited_by"] == "hourly_allowance"
    assert live["allowance_per_s"] > 0
    assert "paced by the hourly allowance: " in text
    assert "X-HourlyRateLimit-Remaining leaves spread to the hour's end" in text


def test_a_scheduled_tasks_last_run_is_said_in_words(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "h.toml"
    config.write_text(
        '[schedule]\ndiscover_every = "1d"\nrefresh_every = "1d"\nrefresh_older_than = "7d"\n'
    )
    queue(db_path, dois(1, "10.1000/sched."))
    last = {
        "discover": {
            "last_at": "2026-12-01T00:00:00.000000Z",
            "last": {"pages": 3, "queued": 1250},
        },
        "refresh": {
            "last_at": "2026-12-01T00:00:00.000000Z",
            "last": {"error": "the store is busy"},
        },
    }
    with Store(db_path) as store:
        store.state.save({"schedule": json.dumps(last)})
    assert main(["--config", str(config), "--db", str(db_path), "status"]) == 0
    shown = capsys.readouterr().out
    assert "last 2026-12-01T00:00:00.000000Z: pages 3, queued 1,250" in shown
    assert "last 2026-12-01T00:00:00.000000Z: failed: the store is busy" in shown
    assert "{" not in shown


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


def test_status_shows_the_rate_configured_learned_and_allowed_now(
    db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "h.toml"
    config.write_text("[rate]\nrequests_per_s = 20\nburst = 4\n")
    queue(db_path, dois(1, "10.1000/rate."))

    def rate_status() -> tuple[dict[str, Any], str]:
        assert main(["--config", str(config), "--db", str(db_path), "status", "--json"]) == 0
        as_json = json.loads(capsys.readouterr().out)["rate"]
        assert main(["--config", str(config), "--db", str(db_path), "status"]) == 0
        return as_json, capsys.readouterr().out

    rate, table = rate_status()
    assert rate == {
        "configured_per_s": 20.0,
        "configured_burst": 4,
        "learned_per_s": None,
        "learned_burst": None,
        "learned_at": None,
        "allowed_per_s": None,
        "limited_by": None,
    }
    assert "rate  configured 20/s burst 4\n" in table
    learned = {"requests_per_s": 9.5, "burst": 1, "refused_per_s": 10.2, "learned_at_s": 1.8e9}
    live = json.loads(heartbeat(os.getpid(), age_s=1))
    live.update(requests_per_s=9.5, rate_limited_by="learned")
    with Store(db_path) as store:
        store.state.save({"learned_rate": json.dumps(learned), "heartbeat": json.dumps(live)})
    rate, table = rate_status()
    assert rate["learned_per_s"] == 9.5 and rate["learned_burst"] == 1
    assert rate["learned_at"] == iso_utc(1.8e9)
    assert (rate["allowed_per_s"], rate["limited_by"]) == (9.5, "learned")
    assert f"learned 9.5/s burst 1 at {iso_utc(1.8e9)}; allowed now 9.5/s (learned)" in table
    config.write_text("[rate]\nrequests_per_s = 'auto'\n")
    rate, table = rate_status()
    assert rate["configured_per_s"] == "auto"
    assert "rate  configured auto burst 1;" in table


# -- jobs that wait: a Retry-After, a long backoff -----------------------------------------


def test_the_eta_counts_only_the_jobs_that_can_run_now(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running daemon stored 30 answers in its last 5 minutes (0.1 a second). Its one
    job left may not run for a day (Retry-After): the ETA is not 10 s, and status says
    when that job is due; 20 jobs more that can run now are 200 s."""
    now_s = time.time()
    with Store(db_path) as store:
        for n in range(30):
            store_answer(store, Identifier("doi", f"10.4242/eta.{n}"), b"{}")
        store.jobs.add([Identifier("doi", "10.4242/eta.later")])
        tomorrow = iso_utc(now_s + 86_400)
        store.conn.execute(
            "UPDATE jobs SET next_attempt_at = ?, last_error = 'rate limited (Retry-After)'"
            " WHERE identifier = '10.4242/eta.later'",
            (tomorrow,),
        )
        live = json.loads(heartbeat(os.getpid(), age_s=1))
        live["started_at"] = iso_utc(now_s - 600)
        store.state.save({"heartbeat": json.dumps(live)})

    def status_now() -> tuple[dict[str, Any], str]:
        assert main(["--db", str(db_path), "status", "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert main(["--db", str(db_path), "status"]) == 0
        return document, capsys.readouterr().out

    document, text = status_now()
    assert document["daemon"]["running"] and document["jobs"]["pending"] == 1
    assert document["eta_s"] == 0  # nothing can run now; it was 10 (1 job at 0.1/s)
    assert (document["waiting"], document["next_due_at"]) == (1, tomorrow)
    assert "waiting 1 jobs may not run before a later time" in text and tomorrow in text

    with Store(db_path) as store:
        store.jobs.add(dois(20, "10.4242/eta.now."))
    document, text = status_now()
    assert document["jobs"]["pending"] == 21 and document["waiting"] == 1
    assert document["eta_s"] == 200  # the 20 that can run now, at 0.1 a second
    assert "eta for the jobs that can run now, at this daemon's recent rate: 0:03:20" in text


def test_waiting_jobs_are_counted_at_every_priority_and_in_the_backfill(db_path: Path) -> None:
    """The count reads each priority's waiting end of the runnable indexes."""
    now_s = time.time()
    with Store(db_path) as store:
        for priority in (-5, 0, 7):
            store.jobs.add(dois(4, f"10.4242/p{priority}."), priority=priority)
        later = [iso_utc(now_s + 60 * n) for n in (3, 1, 2)]
        store.conn.execute(
            "UPDATE jobs SET next_attempt_at = CASE priority WHEN -5 THEN ? WHEN 0 THEN ?"
            " ELSE ? END WHERE identifier LIKE '%.0' OR identifier LIKE '%.1'",
            later,
        )
        store.conn.execute(
            "UPDATE jobs SET needs_full = 1, next_attempt_at = ? WHERE identifier = '10.4242/p7.3'",
            (iso_utc(now_s + 30),),
        )
        waiting, first = waiting_jobs(store.conn, iso_utc(time.time()))
    assert (waiting, first) == (7, iso_utc(now_s + 30))
