"""`refresh` and `retry`: jobs put back in the queue (`backfill`: harvest/test_quota.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers import harvest_from_simulator, harvester, rows, run_main

from harvester.scheduling import parse_age


async def test_refresh_requeues_old_snapshots_matching_the_where(
    harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = rows(harvested, "SELECT count(*) FROM jobs WHERE state = 'done'")[0][0]
    code, out, _ = run_main(capsys, "--db", str(harvested), "refresh", "--older-than", "30d")
    assert code == 0 and "requeued 0 outputs" in out  # all fetched just now
    journal = rows(harvested, "SELECT journal FROM outputs WHERE journal IS NOT NULL LIMIT 1")
    [(name,)] = journal
    in_journal = rows(harvested, f"SELECT count(*) FROM latest_outputs WHERE journal = '{name}'")[
        0
    ][0]
    code, out, _ = run_main(
        capsys,
        "--db",
        str(harvested),
        "refresh",
        "--older-than",
        "0s",
        "--where",
        f"journal = '{name}'",
    )
    assert code == 0 and f"requeued {in_journal} outputs" in out
    states = dict(rows(harvested, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert states["pending"] == in_journal and states["done"] == done - in_journal

    await harvest_from_simulator(harvested, 40)  # the daemon takes the new snapshots
    assert (
        rows(
            harvested,
            "SELECT count(*) FROM outputs GROUP BY job_id HAVING count(*) > 1",
        )
        == [(2,)] * in_journal
    )


def test_retry_puts_failed_jobs_back(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    harvester("--db", str(db), "enqueue", stdin="10.1000/a\n10.1000/b\n")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE jobs SET state = 'failed', attempts = 5, last_error = 'HTTP 500'")
    conn.commit()
    result = harvester("--db", str(db), "retry", "--state", "failed")
    assert result.returncode == 0 and "requeued 2 failed jobs" in result.stdout
    assert conn.execute("SELECT state, attempts FROM jobs").fetchall() == [("pending", 0)] * 2
    conn.close()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("1d12h", 129_600)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1y", "3 days"])
def test_parse_age_refuses_what_is_not_an_age(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_backfill_is_refused_with_the_counts_call(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "counts.toml"
    config.write_text('[api]\nendpoint = "counts"\n')
    before = rows(harvested, "SELECT state, count(*) FROM jobs GROUP BY 1")
    code, _, err = run_main(
        capsys, "--config", str(config), "--db", str(harvested), "backfill", "--twitter"
    )
    assert code == 1 and "api.endpoint is 'counts'" in err
    assert rows(harvested, "SELECT state, count(*) FROM jobs GROUP BY 1") == before
