"""The daemon as a service: `daemon` (its lock, signals and run), `reload` (what SIGHUP
may change), `heartbeat` (what it tells the store and systemd every few seconds),
`metrics` (Prometheus), `progress` (the bar or the progress events) and `notify`
(sd_notify)."""
