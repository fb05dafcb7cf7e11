"""systemd's notify protocol: readiness, status, watchdog, reload and stop.

A unix datagram to `$NOTIFY_SOCKET` per message (a leading `@` names an abstract
socket). Without `$NOTIFY_SOCKET` every call does nothing, so the daemon runs the same
under systemd, in a terminal or in a test. The watchdog interval comes from
`$WATCHDOG_USEC` (only when `$WATCHDOG_PID` is absent or names this process); the
daemon pings at half of it, from the event loop itself, so a stuck loop stops the
pings and systemd restarts the service.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

SEND_TIMEOUT_S = 0.25


class Notifier:
    """Sends sd_notify messages; a silent no-op when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(environ)
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # systemd reads at once; if its queue is ever full, wait a moment rather
            # than drop READY or STOPPING, but never hold the event loop for long.
            self._socket.settimeout(SEND_TIMEOUT_S)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False if it could not be sent."""
        if self._socket is None or self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError:
            return False  # systemd gone or socket full: never a reason to crash
        return True

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.send(READY="1")
        else:
            self.send(READY="1", STATUS=status)

    def status(self, text: str) -> None:
        self.send(STATUS=text.replace("\n", " "))

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) tie the reload together.
        self.send(
            RELOADING="1", MONOTONIC_USEC=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        )

    def stopping(self) -> None:
        self.send(STOPPING="1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # the abstract namespace
    return value if value.startswith("/") else None


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
