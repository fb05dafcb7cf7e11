"""What the CLI's verbs do, one module a verb (or a few small ones): `enqueue`,
`status`, `show`, `query`, `export`, `verify`, `derive`, `requeue` (refresh, retry,
backfill), `drain` (what `run` exits with), `simulate` and `demo`. Each `cmd_<verb>`
takes typed arguments, prints what the verb prints and returns its `ExitCode`; a
failure it expects is raised as a `HarvesterError` for the CLI to report.

Beside them: `context` (the global options and the settings and store they lead to),
`formats` (rows and answers on their way out) and `output` (where exports write).
Commands sit beside the service, never above it: `demo`, which needs the daemon,
gets it from the CLI; `derive --rebuild` takes the store's own lock (`store.lock`).
"""
