"""The tweet-ID quota: the ladder of modes, refusals, recovery and backfill, alone and
against the simulator's quota."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from helpers import KEY, drain, queue, rows

from harvester.cli import main
from harvester.config import (
    ApiSettings,
    FilterSettings,
    QuotaSettings,
    RateSettings,
    Settings,
    StoreSettings,
    WorkerSettings,
)
from harvester.harvest.quota import QuotaState, params_for_mode
from harvester.identifiers import Identifier
from harvester.model import JobState, QuotaMode
from harvester.sim import universe
from harvester.sim.server import Simulator, SimulatorSettings


def twitter_heavy(count: int, low: int = 100, high: int = 500) -> list[Identifier]:
    """DOIs whose outputs carry between `low` and `high` tweets."""
    found: list[Identifier] = []
    n = 0
    while len(found) < count:
        doi = f"10.4242/heavy.{n}"
        n += 1
        output = universe.output_for("doi", doi)
        if output and low <= len(output["posts"].get("twitter", ())) <= high:
            found.append(Identifier("doi", doi))
    return found


def settings_for(base_url: str, db_path: Path, quota: QuotaSettings) -> Settings:
    return Settings(
        api=ApiSettings(base_url=base_url, timeout_s=5),
        rate=RateSettings(requests_per_s=60, burst=2),
        workers=WorkerSettings(concurrency=4),
        store=StoreSettings(path=db_path),
        quota=quota,
    )


# -- units -------------------------------------------------------------------------------


def test_params_for_each_mode() -> None:
    filters = FilterSettings(include_sections=("posts",))
    assert params_for_mode(filters, QuotaMode.FULL) == {"include_sections": "posts"}
    assert params_for_mode(filters, QuotaMode.ORIGINAL_TWEETS)["post_types"] == "original_tweets"
    assert params_for_mode(filters, QuotaMode.NO_TWITTER)["exclude_sources"] == "twitter"
    excluding = FilterSettings(exclude_sources=("news",))
    assert params_for_mode(excluding, QuotaMode.NO_TWITTER)["exclude_sources"] == "news,twitter"
    including = FilterSettings(include_sources=("twitter", "news"))
    assert params_for_mode(including, QuotaMode.NO_TWITTER) == {"include_sources": "news"}


def test_the_ladder_follows_usage_headroom_and_the_server() -> None:
    state = QuotaState(QuotaSettings(limit=10_000, original_tweets_at=0.9, no_twitter_at=0.98))
    for _ in range(20):
        state.started(QuotaMode.FULL)
        state.answered(QuotaMode.FULL, 200)
    state.recorded(4000, 4000, 0)
    assert state.mode() == QuotaMode.FULL
    state.ledger_used = 8_850
    assert state.mode() == QuotaMode.ORIGINAL_TWEETS  # 8,850 + a 200-tweet answer >= 9,000
    for _ in range(10):
        state.started(QuotaMode.ORIGINAL_TWEETS)  # in flight: their tweets are not known yet
    assert state.mode() == QuotaMode.NO_TWITTER
    state.server_says(limit=10_000, remaining=9_000, now_s=time.time())
    assert state.used() == 1_000
    for _ in range(10):
        state.answered(QuotaMode.ORIGINAL_TWEETS, None)
    assert state.mode() == QuotaMode.FULL  # the server's count wins
    state.refused(time.time() + 60)
    assert state.mode() == QuotaMode.NO_TWITTER


def test_a_pinned_mode_is_kept() -> None:
    state = QuotaState(QuotaSettings(mode="original_tweets"))
    state.ledger_used = 0
    assert state.mode() == QuotaMode.ORIGINAL_TWEETS


# -- against the simulator's quota ----------------------------------------------------


async def test_the_ladder_degrades_before_the_wall_and_backfill_completes(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    window_s = 3.0
    sim_settings = SimulatorSettings(key=KEY, tweet_quota=5_000, tweet_quota_window_s=window_s)
    quota = QuotaSettings(limit=5_000, window_s=window_s)
    identifiers = twitter_heavy(40)
    async with Simulator(sim_settings) as simulator:
        queue(db_path, identifiers)
        settings = settings_for(simulator.base_url, db_path, quota)
        report = await drain(settings)
        gate = simulator.tweet_quota
        assert gate is not None
        modes = [mode for (mode,) in rows(db_path, "SELECT mode FROM responses ORDER BY id")]
        assert {QuotaMode.FULL, QuotaMode.ORIGINAL_TWEETS, QuotaMode.NO_TWITTER} <= set(modes)
        assert (
            modes.index(QuotaMode.FULL)
            < modes.index(QuotaMode.ORIGINAL_TWEETS)
            < modes.index(QuotaMode.NO_TWITTER)
        )
        assert gate.refusals <= 1
        assert report.outcomes[JobState.DONE] == 40

        capsys.readouterr()
        assert main(["--db", str(db_path), "backfill", "--twitter"]) == 0
        queued = int(capsys.readouterr().out.split()[1])
        assert queued == modes.count(QuotaMode.ORIGINAL_TWEETS) + modes.count(QuotaMode.NO_TWITTER)
        degraded = -1  # outputs whose latest answer is not in full mode, once counted
        for _ in range(12):  # one window's worth of full fetches at a time
            await asyncio.sleep(window_s)
            await drain(settings)
            degraded = rows(
                db_path,
                """SELECT count(*) FROM jobs j WHERE (SELECT mode FROM
                responses WHERE job_id = j.id ORDER BY id DESC LIMIT 1) != 'full'""",
            )[0][0]
            if degraded == 0:
                break
        assert degraded == 0
        assert rows(db_path, "SELECT count(*) FROM jobs WHERE state != 'done'") == [(0,)]
        assert gate.refusals <= 1 + 12  # at most one a window, and in practice none
        assert gate.refusals <= 1


async def test_refetching_an_output_charges_nothing_and_status_reports_the_quota(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim_settings = SimulatorSettings(key=KEY, tweet_quota=100_000, tweet_quota_window_s=3600)
    quota = QuotaSettings(limit=100_000, window_s=3600)
    async with Simulator(sim_settings) as simulator:
        queue(db_path, twitter_heavy(5))
        settings = settings_for(simulator.base_url, db_path, quota)
        await drain(settings)
        gate = simulator.tweet_quota
        assert gate is not None
        used_before = gate.used(time.monotonic())
        ledger_before = rows(db_path, "SELECT count(*) FROM tweet_ledger")[0][0]
        assert used_before == ledger_before > 0
        charged = "SELECT count(*), sum(id_count) FROM tweet_charges"
        [(charge_rows, _)] = rows(db_path, charged)
        assert main(["--db", str(db_path), "retry", "--state", "done"]) == 0
        await drain(settings)
        assert gate.used(time.monotonic()) == used_before
        assert rows(db_path, "SELECT count(*) FROM tweet_ledger")[0][0] == ledger_before
        # The view's rows are the charge rows' IDs, each once; the re-fetch wrote no row.
        assert rows(db_path, charged) == [(charge_rows, ledger_before)]
        assert rows(db_path, "SELECT count(DISTINCT tweet_id) FROM tweet_ledger") == [
            (ledger_before,)
        ]
        assert rows(db_path, "SELECT count(*) FROM responses WHERE mode = 'full'") == [(10,)]

    capsys.readouterr()
    config = db_path.parent / "q.toml"
    config.write_text("[quota]\nlimit = 100000\nwindow_s = 3600\n")
    assert main(["--config", str(config), "--db", str(db_path), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["quota"]["limit"] == 100_000
    assert status["quota"]["used"] == ledger_before
    assert status["quota"]["remaining"] == 100_000 - ledger_before
    assert status["quota"]["mode"] == "full"
    assert main(["--config", str(config), "--db", str(db_path), "status"]) == 0
    assert f"tweet quota {ledger_before:,} of 100,000 used" in capsys.readouterr().out


async def test_a_quota_refusal_switches_to_no_twitter_without_costing_an_attempt(
    db_path: Path,
) -> None:
    # Our ledger knows nothing of the 990 tweets another client already used.
    sim_settings = SimulatorSettings(key=KEY, tweet_quota=1_000, tweet_quota_window_s=3600)
    quota = QuotaSettings(limit=1_000_000, window_s=3600)  # we believe there is plenty
    async with Simulator(sim_settings) as simulator:
        gate = simulator.tweet_quota
        assert gate is not None
        for n in range(990):
            gate._charged_at[f"x{n}"] = time.monotonic()
            gate._charges.append((time.monotonic(), f"x{n}"))
        queue(db_path, twitter_heavy(6))
        report = await drain(settings_for(simulator.base_url, db_path, quota))
        assert 1 <= gate.refusals <= 4  # only the requests already in flight
    assert report.outcomes[JobState.DONE] == 6
    assert rows(db_path, "SELECT max(attempts) FROM jobs") == [(1,)]
    assert rows(db_path, "SELECT DISTINCT mode FROM responses") == [(QuotaMode.NO_TWITTER,)]
