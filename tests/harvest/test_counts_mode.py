"""`api.endpoint = "counts"`: the free counts call through the same queue, rate control
and store, derived into the same tables under the fetch call's source names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import KEY, dois, drain, queue, rows, run_main

from harvester.config import ApiSettings, RateSettings, Settings, StoreSettings, WorkerSettings
from harvester.sim.server import Simulator, SimulatorSettings


def settings_for(base_url: str, db: Path, endpoint: str) -> Settings:
    return Settings(
        api=ApiSettings(base_url=base_url, timeout_s=5, endpoint=endpoint),
        rate=RateSettings(requests_per_s=500, burst=10),
        workers=WorkerSettings(concurrency=8),
        store=StoreSettings(path=db),
    )


async def test_a_counts_harvest_stores_and_derives_what_the_counts_call_answers(
    tmp_path: Path,
) -> None:
    counts_db, fetch_db = tmp_path / "counts.db", tmp_path / "fetch.db"
    identifiers = dois(60, "10.5150/counted.")
    queue(counts_db, identifiers)
    queue(fetch_db, identifiers)
    async with Simulator(SimulatorSettings(key=KEY, tweet_quota=1_500_000)) as sim:
        report = await drain(settings_for(sim.base_url, counts_db, "counts"))
        counts_calls = [record for record in sim.sent if record.endpoint == "counts"]
        assert report.exit_code == 0
        assert len(counts_calls) == 60 and len(sim.sent) == 60  # no fetch call at all
        await drain(settings_for(sim.base_url, fetch_db, "fetch"))
        assert sim.tweet_quota is not None
    answered = [record for record in counts_calls if record.status == 200]
    assert answered
    # Stored raw, as sent, with the call they came from.
    stored = rows(counts_db, "SELECT sha256, endpoint, mode FROM responses WHERE http_status = 200")
    assert sorted(sha for sha, *_ in stored) == sorted(record.sha256 for record in answered)
    assert {(endpoint, mode) for _, endpoint, mode in stored} == {("counts", "counts")}
    assert rows(counts_db, "SELECT count(*) FROM tweet_ledger") == [(0,)]
    # The same outputs, read from either call: score, and accounts per source under
    # the same names (the counts call has no post counts per source).
    by_call = [
        {
            doi: (score, sources)
            for doi, score, sources in rows(
                db,
                """SELECT o.doi, o.score,
                          (SELECT group_concat(source || ':' || unique_users_count, ',')
                           FROM (SELECT source, unique_users_count FROM counts c
                                 WHERE c.response_id = o.response_id ORDER BY source))
                   FROM latest_outputs o""",
            )
        }
        for db in (counts_db, fetch_db)
    ]
    assert by_call[0] == by_call[1] and len(by_call[0]) == len(answered)
    assert rows(counts_db, "SELECT count(*) FROM counts WHERE posts_count IS NOT NULL") == [(0,)]
    assert rows(counts_db, "SELECT count(*) FROM score_context")[0][0] > 0
    assert rows(counts_db, "SELECT count(*) FROM readers")[0][0] > 0


def test_status_says_no_tweet_quota_applies_to_the_counts_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = queue(tmp_path / "s.db", dois(2, "10.5150/status."))
    config = tmp_path / "counts.toml"
    config.write_text('[api]\nendpoint = "counts"\n')
    code, out, _ = run_main(capsys, "--config", str(config), "--db", str(db), "status")
    assert code == 0 and "tweet quota  none: the counts call" in out
    code, out, _ = run_main(capsys, "--config", str(config), "--db", str(db), "status", "--json")
    assert json.loads(out)["quota"]["applies"] is False
    code, out, _ = run_main(capsys, "--db", str(db), "status", "--json")
    assert json.loads(out)["quota"]["applies"] is True
