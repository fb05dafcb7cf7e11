"""How outcomes are batched on their way to the store (harvest.batches), and how deep
the feeder keeps the workers' queue (harvest.feeder.queue_depth)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harvester.config import RateSettings, Settings, StoreSettings, WorkerSettings
from harvester.harvest.batches import OutcomeBatches
from harvester.harvest.feeder import queue_depth
from harvester.model import JobOutcome, JobState


def outcome(job_id: int) -> JobOutcome:
    return JobOutcome(job_id, "token", JobState.DONE, True)


async def timed_batch(batches: OutcomeBatches) -> tuple[list[int], float]:
    started = time.monotonic()
    batch = await batches.next_batch()
    assert batch is not None
    return [item.job_id for item in batch], time.monotonic() - started


async def test_a_full_batch_goes_at_once() -> None:
    batches = OutcomeBatches(target=3, linger_s=5, max_size=10)
    for n in range(3):
        batches.add(outcome(n))
    ids, waited_s = await timed_batch(batches)
    assert ids == [0, 1, 2] and waited_s < 1


async def test_fewer_wait_for_the_linger_then_go() -> None:
    batches = OutcomeBatches(target=100, linger_s=0.2, max_size=1000)
    batches.add(outcome(1))
    ids, waited_s = await timed_batch(batches)
    assert ids == [1] and 0.15 < waited_s < 2


async def test_the_linger_ends_when_the_target_is_reached() -> None:
    batches = OutcomeBatches(target=3, linger_s=5, max_size=10)
    batches.add(outcome(1))
    taking = asyncio.create_task(timed_batch(batches))
    await asyncio.sleep(0.05)
    batches.add(outcome(2))
    batches.add(outcome(3))
    ids, waited_s = await taking
    assert ids == [1, 2, 3] and waited_s < 1


async def test_flush_ends_the_linger() -> None:
    batches = OutcomeBatches(target=100, linger_s=5, max_size=1000)
    batches.add(outcome(1))
    batches.flush()
    ids, waited_s = await timed_batch(batches)
    assert ids == [1] and waited_s < 1


async def test_a_flush_counts_for_one_batch_only() -> None:
    batches = OutcomeBatches(target=100, linger_s=0.2, max_size=1000)
    batches.add(outcome(1))
    batches.flush()
    await timed_batch(batches)
    batches.add(outcome(2))
    ids, waited_s = await timed_batch(batches)
    assert ids == [2] and waited_s > 0.15


async def test_a_writer_waits_for_the_first_outcome() -> None:
    batches = OutcomeBatches(target=2, linger_s=5, max_size=10)
    taking = asyncio.create_task(batches.next_batch())
    await asyncio.sleep(0.05)
    assert not taking.done()
    batches.add(outcome(1))
    batches.add(outcome(2))
    assert [item.job_id for item in await taking or []] == [1, 2]


async def test_close_hands_out_the_rest_in_pieces_then_none() -> None:
    batches = OutcomeBatches(target=100, linger_s=5, max_size=2)
    for n in range(5):
        batches.add(outcome(n))
    batches.close()
    got = []
    while (batch := await batches.next_batch()) is not None:
        got.append([item.job_id for item in batch])
    assert got == [[0, 1], [2, 3], [4]]
    assert len(batches) == 0


def settings(requests_per_s: float, concurrency: int) -> Settings:
    return Settings(
        rate=RateSettings(requests_per_s=requests_per_s, burst=1),
        workers=WorkerSettings(concurrency=concurrency),
        store=StoreSettings(path=Path("unused.db")),
    )


@pytest.mark.parametrize(
    ("requests_per_s", "concurrency", "depth"),
    [
        (1.0, 8, 8),  # a 3,600/hour key: one job per worker, as always
        (100.0, 8, 25),  # a quarter second of requests
        (1_000_000.0, 64, 256),  # at most four per worker
        (0.01, 1, 1),
    ],
)
def test_the_queue_holds_a_quarter_second_of_requests_within_bounds(
    requests_per_s: float, concurrency: int, depth: int
) -> None:
    assert queue_depth(settings(requests_per_s, concurrency)) == depth
