"""The store: the only SQL in the harvester. `Store` opens one store file; its rooms
are `core` (opening, the unit of work), `connection`, `schema` with its data-moving
upgrades (`upgrade`, `upgrade_mentions`, `upgrade_ledger`, `upgrade_split`), `lock`, `jobs`,
`responses`, `bodies` and `codec`, `ledger` with its in-memory index (`charged`),
`state`, `snapshot` (with `posts` and `loose`, no SQL) and `derived` (with
`derive_pool`, no SQL), `aliases` (every identifier of an output), `imports` (the
dump's records) and `discovered` (discovery pages), `wide` (the `outputs_wide` view),
`readonly`, `filters` and `tables` (users' read-only SQL), and `aio` (the store on a
thread of its own, for the event loop)."""

from harvester.store.core import Store

__all__ = ["Store"]
