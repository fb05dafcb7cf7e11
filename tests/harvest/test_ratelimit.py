"""The shared rate controller: exact pacing from the start, AIMD, window boundaries."""

from __future__ import annotations

import asyncio
import time

import pytest

from harvester.harvest.ratelimit import RateController, RatePolicy, seconds_to_boundary


async def count_admitted(controller: RateController, seconds: float) -> list[float]:
    """Admission times (from start) of eager callers over `seconds`."""
    started = time.monotonic()
    times: list[float] = []

    async def caller() -> None:
        while True:
            await controller.acquire()
            times.append(time.monotonic() - started)

    tasks = [asyncio.create_task(caller()) for _ in range(8)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return times


async def test_no_burst_at_start_and_exact_rate() -> None:
    controller = RateController(RatePolicy(requests_per_s=40, burst=10))
    times = await count_admitted(controller, 1.0)
    assert sum(1 for t in times if t < 0.1) <= 5  # a fresh aiolimiter would let 10 through
    assert 38 <= len(times) <= 42


async def test_a_pause_holds_every_caller() -> None:
    controller = RateController(RatePolicy(requests_per_s=100, burst=1))
    controller.pause_for(0.4)
    times = await count_admitted(controller, 0.6)
    assert times and min(times) >= 0.39


async def test_refusals_halve_the_rate_once_per_burst() -> None:
    controller = RateController(RatePolicy(requests_per_s=40, burst=1))
    for _ in range(10):  # a whole volley of in-flight requests refused together
        controller.on_rate_limited(retry_after_s=0.0)
    assert controller.rate_per_s == 20


async def test_retry_after_sets_the_pause_else_jittered_backoff() -> None:
    controller = RateController(RatePolicy(requests_per_s=10, burst=1))
    assert controller.on_rate_limited(retry_after_s=7.0) == 7.0
    assert 6.9 <= controller.paused_for_s <= 7.0
    other = RateController(RatePolicy(requests_per_s=10, burst=1))
    pause_s = other.on_rate_limited(retry_after_s=None)
    assert 0.5 <= pause_s <= 1.0


async def test_the_rate_climbs_back_after_quiet_but_never_above_configured() -> None:
    policy = RatePolicy(requests_per_s=40, burst=1, increase_after_s=0.05, increase_step=0.25)
    controller = RateController(policy)
    controller.on_rate_limited(retry_after_s=0.0)
    assert controller.rate_per_s == 20
    rates = []
    for _ in range(8):
        await asyncio.sleep(0.06)
        controller.on_accepted()
        rates.append(controller.rate_per_s)
    assert rates[:3] == [30, 40, 40]
    assert max(rates) == 40


async def test_the_rate_never_falls_below_its_floor() -> None:
    controller = RateController(RatePolicy(requests_per_s=64, burst=1))
    for _ in range(20):
        controller._last_refusal_s = -1e9  # each refusal a separate event
        controller.on_rate_limited(retry_after_s=0.0)
    assert controller.rate_per_s == 1.0


async def test_spent_allowance_sleeps_to_the_boundary() -> None:
    controller = RateController(RatePolicy(requests_per_s=10, burst=1))
    now_s = 1_700_000_000.0 + 3_000  # 50 minutes into an hour... of some hour
    assert controller.on_remaining(hourly=5, daily=100, now_s=now_s) == 0.0
    pause_s = controller.on_remaining(hourly=0, daily=100, now_s=now_s)
    assert pause_s == pytest.approx(seconds_to_boundary(now_s, 3600))
    assert 0 < pause_s <= 3601
    daily_pause_s = controller.on_remaining(hourly=3, daily=0, now_s=now_s)
    assert daily_pause_s == pytest.approx(86_400 - now_s % 86_400 + 1)


def test_seconds_to_boundary() -> None:
    assert seconds_to_boundary(7_200.0, 3_600) == 3_601.0
    assert seconds_to_boundary(7_199.5, 3_600) == 1.5


async def test_a_reload_sets_the_new_rate_but_keeps_a_learned_back_off() -> None:
    calm = RateController(RatePolicy(requests_per_s=40, burst=1))
    calm.reconfigure(RatePolicy(requests_per_s=60, burst=2))
    assert calm.rate_per_s == 60  # no refusals: the new rate applies at once
    times = await count_admitted(calm, 0.5)
    assert 26 <= len(times) <= 34

    refused = RateController(RatePolicy(requests_per_s=40, burst=1))
    refused.on_rate_limited(retry_after_s=0.0)
    assert refused.rate_per_s == 20
    refused.reconfigure(RatePolicy(requests_per_s=60, burst=1))
    assert refused.rate_per_s == 20  # the server said 40 was too much: climb back as usual
    refused.reconfigure(RatePolicy(requests_per_s=10, burst=1))
    assert refused.rate_per_s == 10  # never above the new setting
