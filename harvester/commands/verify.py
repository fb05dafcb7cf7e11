"""`harvester verify`: decompress every distinct stored body, recompute its sha256,
check each response against its body, and list the responses whose bytes are not
what was received, with the command that fetches them again. A store file SQLite
cannot read is said to be damaged as a whole, with what can be done about it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from harvester.commands.context import Invocation
from harvester.errors import StoreError
from harvester.model import ExitCode
from harvester.progress import ProgressLine
from harvester.store import Store


def cmd_verify(invocation: Invocation) -> ExitCode:
    """`harvester verify`: exit 1 on any mismatch."""
    try:
        with invocation.open_store(read_only=True) as store:
            progress = ProgressLine("verify", store.bodies.count())
            checked, mismatches = verify_checksums(store, progress.update)
            progress.close()
            responses = store.responses.count()
    except sqlite3.DatabaseError as error:
        if "malformed" not in str(error).lower():
            raise
        raise StoreError(DAMAGED_FILE.format(error=error)) from None
    for mismatch in mismatches:
        print(
            f"MISMATCH response {mismatch.response_id} {mismatch.id_type}:{mismatch.identifier}"
            f" stored sha256 {mismatch.stored_sha256}: {mismatch.problem}"
        )
    print(
        f"checked {checked:,} distinct bodies of {responses:,} responses, "
        f"{len(mismatches):,} mismatches"
    )
    if mismatches:
        print(how_to_fetch_again(sorted({mismatch.response_id for mismatch in mismatches})))
    return ExitCode.FAILURE if mismatches else ExitCode.OK


# SQLite cannot read some of the file's pages: no body-by-body check can go further.
DAMAGED_FILE = (
    "the store file itself is damaged, not only an answer ({error}): restore it from a "
    "backup, or copy out what SQLite can still read with sqlite3's .recover"
)
SHOWN_IDS = 100  # damaged responses named in the refresh command, at most


def how_to_fetch_again(response_ids: list[int]) -> str:
    """The command that fetches the damaged answers again, where they are their
    output's latest (an older snapshot cannot be fetched again: the API answers now)."""
    ids = ", ".join(str(response_id) for response_id in response_ids[:SHOWN_IDS])
    more = len(response_ids) > SHOWN_IDS
    where = f"response_id IN ({ids}{', ...' if more else ''})"
    return (
        "to fetch them again (those that are their output's latest answer): "
        f"harvester refresh --older-than 0s --where '{where}'"
        + (f" (the first {SHOWN_IDS:,} of {len(response_ids):,} shown)" if more else "")
    )


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
    for body_id, problem in store.bodies.iter_checks():
        checked += 1
        if problem is not None:
            damaged[body_id] = problem
        on_checked(checked)
    mismatches = [
        Mismatch(*row, problem=problem)
        for body_id, problem in damaged.items()
        for row in store.responses.of_bodies([body_id])
    ]
    mismatches += [
        Mismatch(*row, problem="its sha256 or size is not its body's")
        for row in store.responses.not_matching_their_body()
    ]
    return checked, sorted(mismatches, key=lambda mismatch: mismatch.response_id)
