"""The shared rate controller: exact pacing, learning the server's rate from refusals
(from above and from below), the allowance headers, pauses, and what is kept."""

from __future__ import annotations

import asyncio
import time

import pytest
from ratemodel import Bucket, Clock, Harvest

from harvester.harvest.ratelimit import AUTO_START_PER_S, RateController
from harvester.harvest.ratesignals import seconds_to_boundary
from harvester.harvest.ratestate import LearnedRate, RatePolicy


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


def controller_at(policy: RatePolicy, clock: Clock, **kwargs: object) -> RateController:
    return RateController(policy, clock=clock, wall_clock=lambda: 0.0, **kwargs)  # type: ignore[arg-type]


def answer(
    controller: RateController, clock: Clock, count: int, per_s: float, refused_every: int = 0
) -> None:
    """`count` requests at `per_s`, each answered at once; every `refused_every`-th refused."""
    for n in range(1, count + 1):
        clock.now_s += 1 / per_s
        ticket = controller.admit()
        if refused_every and n % refused_every == 0:
            controller.on_rate_limited(ticket, None)
        else:
            controller.on_accepted(ticket)


# -- pacing --------------------------------------------------------------------------------


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


# -- one refusal event at a time ------------------------------------------------------------


def test_a_volley_of_refusals_from_requests_in_flight_is_one_event() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=40, burst=1), clock)
    tickets = [controller.admit() for _ in range(10)]
    for ticket in tickets:  # all sent before the first refusal came back
        controller.on_rate_limited(ticket, None)
    assert controller.rate_per_s == 20  # too soon to measure: one decrease_factor step
    later = controller.admit()
    controller.on_rate_limited(later, None)  # sent after the decision: a new event
    assert controller.rate_per_s == 10


def test_a_refusal_at_a_burst_lowers_the_burst_before_the_rate() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=40, burst=5), clock)
    controller.on_rate_limited(controller.admit(), None)
    assert controller.view().burst == 1
    assert controller.rate_per_s == 40
    controller.on_rate_limited(controller.admit(), None)
    assert controller.rate_per_s < 40


def test_a_stray_refusal_leaves_the_rate_alone_but_a_pattern_does_not() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=50, burst=1), clock)
    answer(controller, clock, 400, per_s=50, refused_every=400)  # one in 400: timing
    assert controller.rate_per_s == 50
    answer(controller, clock, 200, per_s=50, refused_every=10)  # one in 10: too fast
    assert controller.rate_per_s < 50


def test_a_close_refusal_steps_down_a_little_a_refused_volley_far_under() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=100, burst=1), clock)
    answer(controller, clock, 300, per_s=100)  # 3 s at 100/s, all accepted

    def volley(accepted_every: int) -> None:
        """0.1 s of requests in flight, then their answers (refused but one in N)."""
        tickets = [controller.admit() for _ in range(10)]
        clock.now_s += 0.1
        for ticket in tickets:
            if ticket % accepted_every:
                controller.on_rate_limited(ticket, None)
            else:
                controller.on_accepted(ticket)

    volley(accepted_every=2)  # 1 refused in 300 when the volley's first refusal came:
    assert controller.rate_per_s == 100  # a stray of timing
    volley(accepted_every=2)  # 6 in 310: a pattern, close above the server's rate
    assert 94 <= controller.rate_per_s < 100
    for _ in range(10):  # then the server takes one request in ten: far above it
        volley(accepted_every=10)
    assert controller.rate_per_s < 70


def test_retry_after_pauses_everyone_and_no_acceptance_backs_off() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=10, burst=1), clock)
    assert controller.on_rate_limited(controller.admit(), 7.0) == 7.0
    assert controller.paused_for_s == pytest.approx(7.0)
    clock.now_s += 8
    pauses = []
    for _ in range(4):  # the server accepts nothing: each event backs off longer
        pauses.append(controller.on_rate_limited(controller.admit(), None))
        clock.now_s += pauses[-1] + 0.01
    assert [
        low <= pause_s <= 2 * low for low, pause_s in zip([0.5, 1, 2, 4], pauses, strict=True)
    ] == [True] * 4


def test_the_rate_never_falls_below_its_floor() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=64, burst=1), clock)
    for _ in range(40):
        controller.on_rate_limited(controller.admit(), None)
        clock.now_s += 1
    assert controller.rate_per_s == pytest.approx(0.01)


# -- convergence, in virtual time (tests/harvest/ratemodel.py) -----------------------------


@pytest.mark.parametrize(
    ("server_rate", "server_burst", "multiple", "burst", "retry_after"),
    [
        (10, 1, 2, 2, False),
        (10, 1, 10, 10, False),
        (10, 5, 10, 10, True),
        (50, 5, 2, 2, True),
        (50, 5, 10, 10, False),
        (50, 1, 2, 2, False),
    ],
)
def test_from_above_it_finds_and_holds_the_servers_rate(
    server_rate: float, server_burst: int, multiple: int, burst: int, retry_after: bool
) -> None:
    policy = RatePolicy(server_rate * multiple, burst)
    harvest = Harvest(policy, Bucket(server_rate, server_burst), retry_after=retry_after)
    tally = harvest.run(70, count_from_s=10)
    assert tally.rate(70) >= 0.9 * server_rate
    assert tally.refused_share <= 0.02


@pytest.mark.parametrize("server_burst", [1, 5])
def test_at_or_below_the_servers_rate_it_uses_all_of_it_without_refusals(
    server_burst: int,
) -> None:
    harvest = Harvest(RatePolicy(9, 1), Bucket(10, server_burst))
    tally = harvest.run(30, count_from_s=0)
    assert tally.refused == 0
    assert tally.rate(30) >= 0.98 * 9


def test_from_below_a_learned_rate_climbs_to_what_the_server_allows() -> None:
    learned = LearnedRate(requests_per_s=2.0, burst=1, refused_per_s=None, learned_at_s=0.0)
    harvest = Harvest(RatePolicy(20, 1), Bucket(20, 5), learned=learned)
    assert harvest.controller.rate_per_s == 2.0  # it starts where it was left
    tally = harvest.run(60, count_from_s=40)
    assert harvest.controller.rate_per_s == 20  # grew by half a step, up to the configured
    assert tally.refused == 0
    rising = [rate for _, rate in harvest.rates]
    assert rising == sorted(rising)


def test_from_below_past_an_old_ceiling_the_rate_keeps_probing() -> None:
    old = LearnedRate(requests_per_s=8.0, burst=1, refused_per_s=9.0, learned_at_s=0.0)
    harvest = Harvest(RatePolicy(40, 1), Bucket(30, 5), learned=old)
    tally = harvest.run(120, count_from_s=90)
    assert tally.rate(120) >= 0.85 * 30  # the server allows more now: it found out
    assert tally.refused_share <= 0.02


# -- the allowance headers -----------------------------------------------------------------


def test_the_hours_remainder_is_spread_over_the_time_left() -> None:
    wall_s = 1_700_002_800.0 - 500  # 500 s before an hour boundary (1_700_002_800 % 3600 == 0)
    assert wall_s % 3600 == 3100
    controller = RateController(RatePolicy(100, 1), wall_clock=lambda: wall_s)
    tickets = [controller.admit() for _ in range(11)]
    controller.on_allowance(tickets[0], hourly_remaining=1010, daily_remaining=None)
    # 10 requests left after the one answered are in flight: 1000 over 501 s
    assert controller.rate_per_s == pytest.approx(1000 / 501)
    assert controller.view().limited_by == "hourly_allowance"
    controller.on_allowance(tickets[-1], hourly_remaining=5000, daily_remaining=200)
    assert controller.rate_per_s == pytest.approx(200 / seconds_to_boundary(wall_s, 86_400))
    assert controller.view().limited_by == "daily_allowance"


def test_a_spent_allowance_sleeps_to_the_boundary() -> None:
    now_s = 1_700_000_000.0 + 3_000
    controller = RateController(RatePolicy(10, 1), wall_clock=lambda: now_s)
    ticket = controller.admit()
    assert controller.on_allowance(ticket, hourly_remaining=5, daily_remaining=100) == 0.0
    pause_s = controller.on_allowance(ticket, hourly_remaining=0, daily_remaining=100)
    assert pause_s == pytest.approx(seconds_to_boundary(now_s, 3600))
    assert 0 < pause_s <= 3601
    daily_pause_s = controller.on_allowance(ticket, hourly_remaining=3, daily_remaining=0)
    assert daily_pause_s == pytest.approx(86_400 - now_s % 86_400 + 1)


def test_seconds_to_boundary() -> None:
    assert seconds_to_boundary(7_200.0, 3_600) == 3_601.0
    assert seconds_to_boundary(7_199.5, 3_600) == 1.5


def test_auto_starts_small_then_from_what_the_headers_allow() -> None:
    wall_s = 1_700_002_800.0 - 1_000
    controller = RateController(RatePolicy(None, 1), wall_clock=lambda: wall_s)
    assert controller.rate_per_s == AUTO_START_PER_S
    assert controller.view().limited_by == "auto"
    controller.on_allowance(controller.admit(), hourly_remaining=3_003, daily_remaining=None)
    assert controller.rate_per_s == pytest.approx(3_003 / 1_001)
    assert controller.view().configured_per_s is None


def test_auto_without_headers_grows_until_refused() -> None:
    harvest = Harvest(RatePolicy(None, 1), Bucket(20, 5))
    tally = harvest.run(90, count_from_s=60)
    assert tally.rate(90) >= 0.9 * 20
    assert tally.refused_share <= 0.02


# -- reloads, restarts and what is shown -----------------------------------------------------


def test_a_reload_applies_the_new_rate_but_keeps_what_refusals_taught() -> None:
    clock = Clock()
    calm = controller_at(RatePolicy(requests_per_s=40, burst=1), clock)
    calm.reconfigure(RatePolicy(requests_per_s=60, burst=2))
    assert calm.rate_per_s == 60 and calm.view().burst == 2  # nothing learned: at once
    refused = controller_at(RatePolicy(requests_per_s=40, burst=3), clock)
    refused.on_rate_limited(refused.admit(), None)  # the burst...
    refused.on_rate_limited(refused.admit(), None)  # ...then the rate
    assert refused.rate_per_s == 20
    refused.reconfigure(RatePolicy(requests_per_s=60, burst=3))
    assert refused.rate_per_s == 20 and refused.view().burst == 1  # climbs back as usual
    refused.reconfigure(RatePolicy(requests_per_s=10, burst=1))
    assert refused.rate_per_s == 10  # never above the new setting


def test_the_learned_rate_is_kept_as_json_and_read_back() -> None:
    clock = Clock()
    controller = controller_at(RatePolicy(requests_per_s=40, burst=1), clock)
    assert controller.learned() is None  # nothing learned yet
    controller.on_rate_limited(controller.admit(), None)
    learned = controller.learned()
    assert learned is not None and learned.requests_per_s == 20 and learned.burst == 1
    again = LearnedRate.from_json(learned.to_json())
    assert again == learned
    restarted = controller_at(RatePolicy(requests_per_s=40, burst=4), clock, learned=again)
    assert restarted.rate_per_s == 20 and restarted.view().burst == 1
    assert restarted.view().learned_per_s == 20
    for damaged in ("", "[]", '{"requests_per_s": -1, "burst": 1}', '{"requests_per_s": "x"}'):
        assert LearnedRate.from_json(damaged) is None
