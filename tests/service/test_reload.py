"""What a reload (SIGHUP) applies in flight and what waits for a restart: one table;
and what it refuses (a value out of range, a mix that clashes), keeping the old
settings, told in one `harvest.reload_refused` event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import KEY, dois, harvester_async, queue, start_harvester, write_config

from harvester.config import load_settings, settings_from_mapping
from harvester.errors import ConfigError
from harvester.service.reload import applies_in_flight, changes, reloaded
from harvester.sim.server import Simulator


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


def test_a_reload_checks_the_settings_it_would_run_on(tmp_path: Path) -> None:
    """A new file may be fine on its own and still clash with a running value that
    only a restart changes: filters with the counts call still running."""
    running = settings_from_mapping({"api": {"endpoint": "counts"}})
    new = settings_from_mapping({"filters": {"exclude_sources": ["twitter"]}})
    with pytest.raises(ConfigError) as raised:
        reloaded(running, new)
    assert "filters.exclude_sources = 'twitter' is for the fetch call" in str(raised.value)
    assert "keys that need a restart keep their running values" in str(raised.value)
    assert reloaded(running, settings_from_mapping({"rate": {"burst": 3}})).rate.burst == 3


# -- SIGHUP with a value out of range, to a real daemon ------------------------------------

# key: (the sections of a config with it out of range, the range the message gives)
OUT_OF_RANGE: dict[str, tuple[dict[str, dict[str, Any]], str]] = {
    "workers.lease_s": ({"workers": {"lease_s": 1e300}}, "between 1 and 86400 (seconds)"),
    "rate.requests_per_s": ({"rate": {"requests_per_s": 1e-300}}, "between 0.01 and 1000000"),
    "workers.concurrency": ({"workers": {"concurrency": 0}}, "between 1 and 1024"),
    "schedule.refresh_every": (
        {"schedule": {"refresh_every": "0.1s", "refresh_older_than": "1d"}},
        "between 1s and 365d",
    ),
}


def events_in(path: Path, after: int = 0) -> list[dict[str, Any]]:
    """The daemon's JSON events logged to `path` after its first `after` lines, but
    the progress events."""
    lines = path.read_text().splitlines()[after:]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [event for event in events if event["event"] != "harvest.progress"]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def daemon_status(db: Path) -> dict[str, Any]:
    code, out, err = await harvester_async("--db", str(db), "status", "--json")
    assert code == 0, err
    return dict(json.loads(out)["daemon"])


async def test_sighup_with_a_value_out_of_range_keeps_the_old_settings(
    simulator: Simulator, tmp_path: Path
) -> None:
    db, config, log_path = tmp_path / "s.db", tmp_path / "h.toml", tmp_path / "daemon.log"
    queue(db, dois(5000, "10.4242/reload."))
    write_config(config, simulator.base_url, rate={"requests_per_s": 5})
    with log_path.open("wb") as log_file:
        process = await start_harvester(
            "--config", str(config), "--db", str(db), "run",
            env={"ALTMETRIC_API_KEY": KEY}, stderr=log_file,
        )  # fmt: skip
    try:

        async def running() -> bool:
            return bool((await daemon_status(db))["running"])

        await until(running, "the daemon's first heartbeat")
        for key, (sections, words) in OUT_OF_RANGE.items():
            write_config(config, simulator.base_url, **{"rate": {"requests_per_s": 5}, **sections})
            seen = len(log_path.read_text().splitlines())
            process.send_signal(signal.SIGHUP)

            async def answered(seen: int = seen) -> bool:
                return any(
                    e["event"].startswith("harvest.reload") for e in events_in(log_path, seen)
                )

            await until(answered, f"the reload of {key} answered")
            [refused] = events_in(log_path, seen)
            assert refused["event"] == "harvest.reload_refused", refused
            assert refused["error"].startswith(f"{key} must be "), refused
            assert words in refused["error"] and refused["action"] == "kept the old settings"
            assert process.returncode is None
        live = await daemon_status(db)
        assert live["running"] and live["requests_per_s"] == 5 and live["concurrency"] == 8

        write_config(config, simulator.base_url, rate={"requests_per_s": 7})  # a good one
        process.send_signal(signal.SIGHUP)

        async def applied() -> bool:
            return bool((await daemon_status(db))["requests_per_s"] == 7)

        await until(applied, "the good reload applied")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in log_path.read_text()
