"""Getting data back out: `export` (JSON lines or CSV), `show` and `verify`."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from harvester.store import Store

EXPORT_FIELDS = ("type", "identifier", "state", "http_status", "sha256", "fetched_at", "mode")


def export_records(store: Store, *, with_body: bool) -> Iterator[dict[str, Any]]:
    """One record per job that has a response, from its latest response."""
    for (
        id_type,
        identifier,
        state,
        status,
        sha256,
        fetched_at,
        mode,
        body,
    ) in store.iter_latest_responses(with_body=with_body):
        record: dict[str, Any] = {
            "type": id_type,
            "identifier": identifier,
            "state": state,
            "http_status": status,
            "sha256": sha256,
            "fetched_at": fetched_at,
            "mode": mode,
        }
        if with_body:
            record["body"] = parse_body(body)
        yield record


def parse_body(body: bytes | None) -> Any:
    """The parsed JSON body, or None for a body that is not JSON (a 404's text)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def write_jsonl(store: Store, out: IO[str], on_record: Callable[[int], None]) -> int:
    count = 0
    for count, record in enumerate(export_records(store, with_body=True), start=1):
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        on_record(count)
    return count


def write_csv(store: Store, out: IO[str], on_record: Callable[[int], None]) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for count, record in enumerate(export_records(store, with_body=False), start=1):
        writer.writerow(record)
        on_record(count)
    return count


@dataclass(frozen=True, slots=True)
class Mismatch:
    response_id: int
    id_type: str
    identifier: str
    stored_sha256: str
    problem: str


def verify_checksums(store: Store, on_checked: Callable[[int], None]) -> tuple[int, list[Mismatch]]:
    """Decompress every stored body and recompute its sha256; returns (bodies checked,
    the responses whose bytes are not what was stored)."""
    damaged: dict[int, str] = {}
    checked = 0
    for body_id, problem in store.iter_body_checks():
        checked += 1
        if problem is not None:
            damaged[body_id] = problem
        on_checked(checked)
    mismatches = [
        Mismatch(*row, problem=problem)
        for body_id, problem in damaged.items()
        for row in store.responses_of_bodies([body_id])
    ]
    mismatches += [
        Mismatch(*row, problem="its sha256 or size is not its body's")
        for row in store.responses_not_matching_their_body()
    ]
    return checked, sorted(mismatches, key=lambda mismatch: mismatch.response_id)
