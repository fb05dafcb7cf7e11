"""`harvester check`: one request tells whether the key works for the configured call,
with the limits the server sent. The CLI runs as a process against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import KEY, free_port, harvester_async, write_config

from harvester.sim.server import Simulator, SimulatorSettings

ENV = {"ALTMETRIC_API_KEY": KEY}


async def check(cfg: Path, *args: str, key: str = KEY) -> tuple[int, str, str]:
    return await harvester_async(
        "--config", str(cfg), "--db", str(cfg.parent / "s.db"), "check", *args,
        env={"ALTMETRIC_API_KEY": key},
    )  # fmt: skip


async def test_a_working_key_and_the_limits_the_server_sent(tmp_path: Path) -> None:
    sim_settings = SimulatorSettings(key=KEY, hourly_limit=3600, tweet_quota=1_500_000)
    async with Simulator(sim_settings) as sim:
        cfg = write_config(tmp_path / "h.toml", sim.base_url, rate={"requests_per_s": 50})
        code, out, err = await check(cfg)
        assert code == 0, err
        code, document, err = await check(cfg, "--json")
        assert code == 0, err
        sent = [(record.endpoint, record.identifier) for record in sim.sent]
    assert sent == [("fetch", "241939"), ("fetch", "241939")]  # one request each
    assert "the key works for the fetch call" in out
    assert "3,599 left of 3,600" in out
    report = json.loads(document)
    assert report["key_works"] is True and report["http_status"] == 200
    assert (report["hourly_limit"], report["hourly_remaining"]) == (3600, 3598)
    assert report["tweet_limit"] == 1_500_000
    # 3,598 left, spread over what remains of the hour: at least 1/s, under 50/s.
    assert 0.99 < report["allowance_per_s"] <= 3598
    assert report["would_use_per_s"] == min(50, report["allowance_per_s"])
    assert KEY not in out + document + err


async def test_a_refused_key_exits_3_and_says_what_a_free_key_can_do(tmp_path: Path) -> None:
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        cfg = write_config(tmp_path / "h.toml", sim.base_url)
        code, out, err = await check(cfg, key="not-the-key")
    assert code == 3, err
    assert "the API refused the key for the fetch call (HTTP 403)" in out
    assert 'api.endpoint = "counts"' in out
    assert "not-the-key" not in out + err


async def test_the_counts_endpoint_is_checked_with_the_counts_call(tmp_path: Path) -> None:
    async with Simulator(SimulatorSettings(key=KEY)) as sim:
        cfg = write_config(tmp_path / "h.toml", sim.base_url, api={"endpoint": "counts"})
        code, out, err = await check(cfg)
        kinds = [record.endpoint for record in sim.sent]
        assert "GET " + sim.base_url + "/id/241939" in out
    assert code == 0, err
    assert kinds == ["counts"]
    assert "the key works for the counts call" in out


async def test_an_unreachable_api_cannot_tell_and_exits_1(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "h.toml", f"http://127.0.0.1:{free_port()}/v1", api={"timeout_s": 2}
    )
    code, out, err = await check(cfg)
    assert code == 1, (out, err)
    assert "could not tell" in out


async def test_a_missing_key_is_an_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "h.toml", "http://127.0.0.1:9/v1")
    code, _, err = await harvester_async("--config", str(cfg), "check")
    assert code == 1 and "ALTMETRIC_API_KEY" in err
