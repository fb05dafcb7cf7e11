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
    ) in store.iter_latest_responses():
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


def parse_body(body: bytes) -> Any:
    """The parsed JSON body, or None for a body that is not JSON (a 404's text)."""
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


def verify_checksums(store: Store, on_checked: Callable[[int], None]) -> tuple[int, list[Mismatch]]:
    """Recompute every stored body's sha256; returns (checked, mismatches)."""
    mismatches: list[Mismatch] = []
    checked = 0
    for response_id, id_type, identifier, stored, matches in store.iter_checksums():
        checked += 1
        if not matches:
            mismatches.append(Mismatch(response_id, id_type, identifier, stored))
        on_checked(checked)
    return checked, mismatches
