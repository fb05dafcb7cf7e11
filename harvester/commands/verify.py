"""`harvester verify`: decompress every distinct stored body, recompute its sha256,
check each response against its body, and list the responses whose bytes are not
what was received."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harvester.commands.context import Invocation
from harvester.model import ExitCode
from harvester.progress import ProgressLine
from harvester.store import Store


def cmd_verify(invocation: Invocation) -> ExitCode:
    """`harvester verify`: exit 1 on any mismatch."""
    with invocation.open_store(read_only=True) as store:
        progress = ProgressLine("verify", store.bodies.count())
        checked, mismatches = verify_checksums(store, progress.update)
        progress.close()
        responses = store.responses.count()
    for mismatch in mismatches:
        print(
            f"MISMATCH response {mismatch.response_id} {mismatch.id_type}:{mismatch.identifier}"
            f" stored sha256 {mismatch.stored_sha256}: {mismatch.problem}"
        )
    print(
        f"checked {checked:,} distinct bodies of {responses:,} responses, "
        f"{len(mismatches):,} mismatches"
    )
    return ExitCode.FAILURE if mismatches else ExitCode.OK


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
