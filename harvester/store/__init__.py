"""The store: the only SQL in the harvester. `Store` opens one store file; its rooms
are `core` (opening, the unit of work), `connection`, `schema` with its data-moving
upgrades (`upgrade`, `upgrade_mentions`, `upgrade_ledger`, `upgrade_split`), `lock`, `jobs`,
`responses`, `bodies` and `codec`, `ledger` with its in-memory index (`charged`),
`state`, `snapshot` (with `posts` and `loose`, no SQL) and `derived` (with
`derive_pool`, no SQL), `aliases` (every identifier of an output), `imports` (the
dump's records) and `discovered` (discovery pages), `wide` (the `outputs_wide` view),
`readonly`, `filters` and `tables` (users' read-only SQL), `names` (which tables a user
may export), and `aio` (the store on a thread of its own, for the event loop).

`Store` is imported on first use, so that a light room (`names`, for a completion's
TAB) costs no more than itself."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harvester.store.core import Store

__all__ = ["Store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        return importlib.import_module("harvester.store.core").Store
    raise AttributeError(f"module 'harvester.store' has no attribute {name!r}")
