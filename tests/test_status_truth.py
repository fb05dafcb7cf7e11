"""`status` never misleads: no prediction without a daemon, and an ETA taken at the
running daemon's own rate, never at a rate left over from earlier runs.

Every store here holds the answers of an earlier run, harvested for real from the
simulator and dated a minute back; `status` runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harvester.identifiers import Identifier
from harvester.model import iso_utc
from harvester.sim.server import Simulator, SimulatorSettings
from harvester.store import Store

KEY = "status-key-6262"
EARLIER = 900  # answers of the earlier run: 3/s over the last 5 minutes


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorSettings(key=KEY, record_sent=False)) as sim:
        yield sim


def write_config(path: Path, base_url: str, *, rate: float) -> None:
    path.write_text(f"""
[api]
base_url = "{base_url}"
[rate]
requests_per_s = {rate}
burst = {1 if rate < 10 else 16}
[workers]
concurrency = {2 if rate < 10 else 16}
drain_deadline_s = 0.5
""")


async def harvester(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "harvester", *args),
        env={**os.environ, "ALTMETRIC_API_KEY": KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


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
    write_config(config, simulator.base_url, rate=2000)
    with Store(db) as store:
        store.jobs.add([Identifier("doi", f"10.6262/old.{n}") for n in range(EARLIER)])
    code, _, err = await harvester("--config", str(config), "--db", str(db), "run", "--drain")
    assert code == 0, err[-2000:]
    with Store(db) as store:
        store.conn.execute("UPDATE responses SET fetched_at = ?", (iso_utc(time.time() - 60),))
        store.conn.commit()
        store.jobs.add([Identifier("doi", f"10.6262/new.{n}") for n in range(100)])
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
    write_config(config, simulator.base_url, rate=0.5)
    daemon = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "harvester", "--config", str(config), "--db", str(db), "run"),
        env={**os.environ, "ALTMETRIC_API_KEY": KEY},
        stdout=asyncio.subprocess.DEVNULL,
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
    assert "eta for the jobs left at this daemon's recent rate" in text
    assert "no daemon is running" not in text
    assert document["quota"]["next_mode"] == "original_tweets"  # the ladder, predicted
