"""systemd's notify protocol: messages reach a real socket, an abstract one, or
nobody, without harm."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from helpers import NotifyListener, has

from harvester.service.notify import Notifier


async def test_the_notifier_speaks_to_a_real_socket(listener: NotifyListener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "2000000"})
    assert notifier.enabled and notifier.watchdog_interval_s == 2.0
    notifier.ready("starting up")
    notifier.status("line one\nline two")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    notifier.close()

    await listener.wait_for(has("STOPPING"))
    messages = listener.messages
    assert messages[0] == {"READY": "1", "STATUS": "starting up"}
    assert messages[1] == {"STATUS": "line one line two"}
    assert messages[2] == {"WATCHDOG": "1"}
    assert messages[3]["RELOADING"] == "1" and int(messages[3]["MONOTONIC_USEC"]) > 0
    assert messages[4] == {"STOPPING": "1"}


def test_the_notifier_reaches_an_abstract_socket() -> None:
    name = f"harvester-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(b"\0" + name.encode())
        server.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        notifier.ready("up")
        assert server.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_without_systemd_the_notifier_does_nothing(short_dir: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).send(READY="1") is False
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False
    gone = Notifier({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert gone.send(READY="1") is False  # systemd gone: no crash
    gone.close()
    other_pid = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other_pid.watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval_s is None
