"""The store: the only SQL in the harvester. `Store` opens one store file; its rooms
are `core` (opening, the unit of work), `connection`, `schema`, `lock`, `jobs`,
`responses`, `bodies` and `codec`, `ledger`, `state`, `snapshot` and `derived`,
`readonly`, `filters` and `tables` (users' read-only SQL), and `aio` (the store on a
thread of its own, for the event loop)."""

from harvester.store.core import Store

__all__ = ["Store"]
