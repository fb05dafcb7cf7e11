"""What a reload (SIGHUP) applies in flight and what waits for a restart: one table."""

from __future__ import annotations

import contextlib
from pathlib import Path

from harvester.config import load_settings
from harvester.service.reload import applies_in_flight, changes, reloaded


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
