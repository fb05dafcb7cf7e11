"""The daemon as a service: its lock, signals, heartbeat, reload, metrics and systemd."""
