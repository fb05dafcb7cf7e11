"""Logs that journald and terminals understand, and a run that is never silent.

The daemon runs as a real subprocess: its stderr is a file standing in for journald's
stream, a pipe, or a real pseudo-terminal whose output is replayed the way a terminal
draws it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import signal
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import KEY, Terminal, daemon_config, dois, queue, start_harvester

from harvester.logs import configure_logging, get_logger, register_secret
from harvester.progress import ERASE_LINE, ProgressLine
from harvester.sim.server import Simulator, SimulatorSettings

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def logs_config(
    path: Path, base_url: str, *, rate: float, max_attempts: int = 5, progress_every_s: float = 60
) -> None:
    daemon_config(
        path,
        base_url,
        rate=rate,
        workers={"max_attempts": max_attempts, "drain_deadline_s": 2},
        log={"progress_every_s": progress_every_s},
    )


def queued_store(path: Path, count: int) -> Path:
    return queue(path, dois(count, "10.5151/logs."))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    configure_logging("info")


# -- 1. journald: every line carries its syslog priority -----------------------------------


def logged(path: Path) -> str:
    """What the daemon wrote so far (a small file: reading it does not block for long)."""
    return path.read_text()


async def wait_for_text(path: Path, text: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in logged(path):
        assert time.monotonic() < deadline, f"no {text!r} in {logged(path)!r}"
        await asyncio.sleep(0.02)


async def run_until_stopped(config: Path, db: Path, log_path: Path, journal_stream: str) -> str:
    """The daemon on an empty queue, its stderr the file `log_path`, stopped by SIGTERM
    (a warning) once it logged its first progress event (its signal handlers are in)."""
    with log_path.open("wb") as stderr:
        daemon = await start_harvester(
            *("--config", str(config), "--db", str(db), "run"),
            env={"ALTMETRIC_API_KEY": KEY, "JOURNAL_STREAM": journal_stream},
            stderr=stderr,
        )
    try:
        await wait_for_text(log_path, "harvest.progress")
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), timeout=20) == 0
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
    return logged(log_path)


def device_inode(path: Path) -> str:
    status = path.stat()
    return f"{status.st_dev}:{status.st_ino}"


async def test_on_journalds_stream_each_line_starts_with_its_syslog_priority(
    simulator: Simulator, tmp_path: Path
) -> None:
    config, db, log_path = tmp_path / "h.toml", queued_store(tmp_path / "s.db", 0), tmp_path / "j"
    logs_config(config, simulator.base_url, rate=10, progress_every_s=0.05)
    log_path.touch()  # its device and inode are the "journal stream" the daemon is given

    text = await run_until_stopped(config, db, log_path, device_inode(log_path))

    lines = text.splitlines()
    assert lines and all(re.match(r"<[2-7]>\{", line) for line in lines), lines
    events = {json.loads(line[3:])["event"]: line[:3] for line in lines}
    assert events["harvest.start"] == "<6>"
    assert events["harvest.signal"] == "<4>"  # `journalctl -p warning` keeps this one
    assert events["harvest.stop"] == "<6>"
    assert KEY not in text


async def test_a_journal_stream_that_is_not_our_stderr_adds_no_prefix(
    simulator: Simulator, tmp_path: Path
) -> None:
    """$JOURNAL_STREAM is inherited by children whose stderr is elsewhere (a file, a
    pipe): it counts only when it names the very file stderr is."""
    config, db, log_path = tmp_path / "h.toml", queued_store(tmp_path / "s.db", 0), tmp_path / "f"
    logs_config(config, simulator.base_url, rate=10, progress_every_s=0.05)
    elsewhere = tmp_path / "journal"
    elsewhere.touch()

    for journal_stream in (device_inode(elsewhere), "garbage", ""):
        text = await run_until_stopped(config, db, log_path, journal_stream)
        events = [json.loads(line) for line in text.splitlines()]  # plain JSON, every line
        assert {"harvest.start", "harvest.signal", "harvest.stop"} <= {e["event"] for e in events}


def test_every_level_maps_to_its_sd_daemon_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    log_path = tmp_path / "journal"
    register_secret(KEY)
    with log_path.open("w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", device_inode(log_path))
        configure_logging("debug", stream=stream)
        log = get_logger("test")
        log.debug("a.debug")
        log.info("an.info", key=KEY)
        log.warning("a.warning")
        log.error("an.error")
        log.critical("a.critical")
        try:
            raise ValueError(f"GET /v1/doi/x?key={KEY}")
        except ValueError:
            log.exception("an.exception")
    lines = log_path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>", "<3>"]
    assert all(line[3] == "{" and "\n" not in line for line in lines)  # tracebacks: one line
    assert KEY not in log_path.read_text()


# -- 2. on a terminal, a log line never glues onto the progress bar ------------------------


def screen(output: str) -> list[str]:
    """The lines a terminal shows after `output`: "\\r" returns to the first column,
    "ESC[2K" erases the cursor's line, "\\n" starts the next line, and any other
    character is drawn at the cursor, over what was there."""
    lines: list[list[str]] = [[]]
    column = 0
    position = 0
    while position < len(output):
        if output.startswith("\x1b[2K", position):
            lines[-1] = []
            position += 4
            continue
        char = output[position]
        position += 1
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        else:
            line = lines[-1]
            line.extend(" " * (column - len(line)))
            line[column : column + 1] = [char]
            column += 1
    return ["".join(line) for line in lines]


async def test_on_a_terminal_log_lines_go_above_the_progress_bar(tmp_path: Path) -> None:
    """A fifth of the answers are 500s, each logged as `harvest.fetch_failed` while the
    bar is drawn; replayed as a terminal draws it, no line holds both bar and log."""
    config, db = tmp_path / "h.toml", queued_store(tmp_path / "s.db", 300)
    faults = SimulatorSettings(key=KEY, record_sent=False, fault_rate=0.2, fault_kinds=("500",))
    async with Simulator(faults) as sim:
        logs_config(config, sim.base_url, rate=150, max_attempts=20, progress_every_s=0.05)
        terminal = Terminal(
            *("--config", str(config), "--db", str(db), "run", "--drain"),
            env={"ALTMETRIC_API_KEY": KEY},
        )
        code, output = await asyncio.to_thread(terminal.finish)  # the simulator serves meanwhile
    assert code == 0, output[-2000:]

    assert KEY not in output
    bar_draws = [match.start() for match in re.finditer(r"harvest \[", output)]
    logged_meanwhile = [
        match.start()
        for match in TIMESTAMP.finditer(output)
        if bar_draws and bar_draws[0] < match.start() < bar_draws[-1]
    ]
    assert len(bar_draws) >= 3 and len(logged_meanwhile) >= 3  # they did interleave

    lines = [line for line in screen(output.replace("\r\n", "\n")) if line.strip()]
    for line in lines:
        if TIMESTAMP.search(line):
            assert TIMESTAMP.match(line), f"a log line glued onto other text: {line!r}"
        assert "harvest [" not in line or line.startswith("harvest ["), line
    assert any("harvest.fetch_failed" in line for line in lines)
    assert sum(line.startswith("harvest [") for line in lines) == 1  # the bar, once, at the end
    assert not any("harvest.progress" in line for line in lines)  # the bar says it here
    [bar] = [line for line in lines if line.startswith("harvest [")]
    assert re.search(r"\d+ retr(y|ies) so far", bar) and "pending retries" not in output


async def test_a_bar_without_retries_says_none(tmp_path: Path) -> None:
    config, db = tmp_path / "h.toml", queued_store(tmp_path / "s.db", 20)
    async with Simulator(SimulatorSettings(key=KEY, record_sent=False)) as sim:
        logs_config(config, sim.base_url, rate=150, max_attempts=20, progress_every_s=0.05)
        terminal = Terminal(
            *("--config", str(config), "--db", str(db), "run", "--drain"),
            env={"ALTMETRIC_API_KEY": KEY},
        )
        code, output = await asyncio.to_thread(terminal.finish)
    assert code == 0, output[-2000:]
    assert "harvest [" in output and "so far" not in output and "pending retries" not in output


# -- 3. off a terminal, a steady `harvest.progress` event ----------------------------------


async def test_off_a_terminal_progress_is_logged_at_a_steady_interval(
    simulator: Simulator, tmp_path: Path
) -> None:
    config, db = tmp_path / "h.toml", queued_store(tmp_path / "s.db", 150)
    logs_config(config, simulator.base_url, rate=100, progress_every_s=0.2)
    daemon = await start_harvester(
        *("--config", str(config), "--db", str(db), "run", "--drain"),
        env={"ALTMETRIC_API_KEY": KEY},
    )
    _, err = await asyncio.wait_for(daemon.communicate(), timeout=60)
    assert daemon.returncode == 0, err.decode()[-2000:]

    events = [json.loads(line) for line in err.decode().splitlines()]
    progress = [event for event in events if event["event"] == "harvest.progress"]
    assert len(progress) >= 3, events
    for event in progress:
        assert event["level"] == "info"
        assert {"done", "pending", "achieved_per_s", "eta_s"} <= event.keys()
    assert [e["done"] for e in progress] == sorted(e["done"] for e in progress)
    assert [e["pending"] for e in progress] == sorted(
        (e["pending"] for e in progress), reverse=True
    )
    running = [e for e in progress if e["pending"] > 0 and e["achieved_per_s"] > 0]
    assert running, progress
    for event in running:
        assert event["eta_s"] == round(event["pending"] / event["achieved_per_s"])
        assert event["achieved_per_s"] <= 100 * 1.5  # about the allowed rate, not a total


def test_the_bar_fits_the_terminals_width() -> None:
    """A bar wider than the terminal would wrap, and erasing its line would leave the
    wrapped part on screen; so it is cut to the width."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    with open(terminal, "w") as stream:
        bar = ProgressLine("harvest", 1000, stream=stream)
        bar.update(5, "pending retries 0 " * 5, force=True)
        bar.close()
    shown = os.read(controller, 4096).decode()
    os.close(controller)
    assert shown.startswith(ERASE_LINE + "harvest [")
    draws = shown.rstrip("\r\n").split(ERASE_LINE)[1:]  # closing draws the final count
    assert draws and all(len(draw) == 39 for draw in draws), draws
