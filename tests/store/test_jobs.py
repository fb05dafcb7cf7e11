"""The job queue: queueing, claiming under a lease, outcomes, requeueing, backfill."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from helpers import dois, outcome_with_tweets, stored_response

from harvester.identifiers import Identifier
from harvester.model import JobOutcome, QuotaMode, iso_utc
from harvester.store import Store


def test_add_jobs_dedupes_and_counts(store: Store) -> None:
    first = store.jobs.add([*dois(5, "10.1000/x"), *dois(2, "10.1000/x")])
    assert (first.added, first.already_queued) == (5, 2)
    second = store.jobs.add(dois(7, "10.1000/x"))
    assert (second.added, second.already_queued) == (2, 5)
    assert store.jobs.counts_by_state()["pending"] == 7


def test_add_keeps_every_character_and_queues_in_key_order(store: Store) -> None:
    """Batches reach SQLite as JSON arrays, one per type: whatever an identifier holds
    must come out as it went in, and jobs are numbered in (type, identifier) order."""
    tricky = [
        Identifier("doi", '10.1000/"quoted"\\back\\slash'),
        Identifier("uri", "https://example.org/a b?c=ü&d=東京"),
        Identifier("doi", "10.1000/emoji-\U0001f600"),
        Identifier("handle", "10101/tab\there"),
        Identifier("doi", "10.1000/a"),
        Identifier("pmid", "42"),
        Identifier("doi", "10.1000/a"),
    ]
    counts = store.jobs.add(tricky, batch_size=3)
    assert (counts.added, counts.already_queued) == (6, 1)
    stored = store.conn.execute("SELECT id_type, identifier FROM jobs ORDER BY id").fetchall()
    assert set(stored) == set(tricky)
    # Sorted within each batch of 3 (the duplicate is in the third batch alone).
    assert stored[:3] == sorted(tricky[:3])
    assert stored[3:] == sorted(tricky[3:6])


def test_requeueing_a_done_job_does_not_reset_it(store: Store) -> None:
    store.jobs.add(dois(1, "10.1000/x"))
    [job] = store.jobs.claim(10, lease_s=60)
    store.record(
        [JobOutcome(job.id, job.lease_token, "done", True, response=stored_response(b"{}"))]
    )
    assert store.jobs.add(dois(1, "10.1000/x")).already_queued == 1
    assert store.jobs.counts_by_state()["done"] == 1


def test_claim_leases_each_job_once(store: Store) -> None:
    store.jobs.add(dois(10, "10.1000/x"))
    first = store.jobs.claim(4, lease_s=60)
    second = store.jobs.claim(100, lease_s=60)
    assert len(first) == 4 and len(second) == 6
    assert not {job.id for job in first} & {job.id for job in second}
    assert store.jobs.claim(100, lease_s=60) == []
    assert store.jobs.counts_by_state()["in_progress"] == 10


def test_concurrent_claims_from_two_connections_never_overlap(db_path: Path) -> None:
    with Store(db_path) as setup:
        setup.jobs.add(dois(2000, "10.1000/x"))
    claimed: list[list[int]] = [[], []]

    def claimer(slot: int) -> None:
        with Store(db_path) as own:
            while batch := own.jobs.claim(7, lease_s=60):
                claimed[slot].extend(job.id for job in batch)

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = claimed[0] + claimed[1]
    assert len(everything) == 2000 == len(set(everything))


def test_claim_order_is_priority_then_age(store: Store) -> None:
    store.jobs.add(dois(3, "10.1000/low"))
    store.jobs.add(dois(2, "10.1000/high"), priority=5)
    first_two = store.jobs.claim(2, lease_s=60)
    assert {job.identifier for job in first_two} == {"10.1000/high0", "10.1000/high1"}


def test_retry_outcome_counts_attempt_and_schedules(store: Store) -> None:
    store.jobs.add(dois(1, "10.1000/x"))
    [job] = store.jobs.claim(1, lease_s=60)
    later = iso_utc(time.time() + 3600)
    store.record([JobOutcome(job.id, job.lease_token, "pending", True, later, "HTTP 503")])
    assert store.jobs.claim(1, lease_s=60) == []  # not due yet
    assert store.jobs.outlook() == (0, later)
    row = store.jobs.find(Identifier(job.id_type, job.identifier))
    assert row is not None
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503")


def test_requeue_leased_returns_orphans(store: Store) -> None:
    store.jobs.add(dois(3, "10.1000/x"))
    store.jobs.claim(3, lease_s=60)
    assert store.jobs.requeue_leased(expired_only=True) == 0
    assert store.jobs.requeue_leased(expired_only=False) == 3
    assert store.jobs.counts_by_state()["pending"] == 3


def test_expired_leases_are_requeued(store: Store) -> None:
    store.jobs.add(dois(2, "10.1000/x"))
    store.jobs.claim(2, lease_s=-1)
    assert store.jobs.requeue_leased(expired_only=True) == 2


def test_retry_jobs_resets_failed(store: Store) -> None:
    store.jobs.add(dois(2, "10.1000/x"))
    for job in store.jobs.claim(2, lease_s=60):
        store.record([JobOutcome(job.id, job.lease_token, "failed", True, None, "HTTP 500")])
    assert store.jobs.retry("failed") == 2
    assert len(store.jobs.claim(5, lease_s=60)) == 2


def test_backfill_picks_jobs_whose_latest_response_is_degraded(store: Store) -> None:
    store.jobs.add(dois(3, "10.1000/b"))
    jobs = store.jobs.claim(3, lease_s=60)
    store.record(
        [
            outcome_with_tweets(jobs[0], (), QuotaMode.NO_TWITTER),
            outcome_with_tweets(jobs[1], (), QuotaMode.ORIGINAL_TWEETS),
            outcome_with_tweets(jobs[2], (), QuotaMode.FULL),
        ]
    )
    assert store.jobs.queue_backfill() == 2
    assert store.jobs.claim(5, lease_s=60, backfill=False) == []
    backfilled = store.jobs.claim(5, lease_s=60, backfill=True)
    assert {job.id for job in backfilled} == {jobs[0].id, jobs[1].id}
    assert all(job.needs_full for job in backfilled)
