"""Stored answers: the bytes come back exactly as received, with their checksum."""

from __future__ import annotations

import hashlib

from helpers import dois, stored_response

from harvester.model import JobOutcome
from harvester.store import Store


def test_record_keeps_exact_bytes_and_checksum(store: Store) -> None:
    store.jobs.add(dois(1, "10.1000/x"))
    [job] = store.jobs.claim(1, lease_s=60)
    body = '{"title": "caf\u00e9 \\u00e9", "n": 1.50}'.encode()
    store.record(
        [JobOutcome(job.id, job.lease_token, "done", True, response=stored_response(body))]
    )
    row = store.responses.latest(job.id)
    assert row is not None
    assert bytes(row["body"]) == body
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["size_bytes"] == len(body)
    [(_, problem)] = list(store.bodies.iter_checks())
    assert problem is None
