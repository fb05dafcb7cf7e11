"""structlog, configured in exactly one place.

JSON lines when stderr is not a terminal (journald, files, pipes), readable console
output when it is. Every event passes a redaction step that replaces the API key
(whole or any prefix of 8 characters or more, raw, percent-encoded or JSON-escaped)
and a proxy's credentials wherever they appear, tracebacks included: no secret may
reach a log, whatever a library puts in an exception message.

When stderr is journald's stream, each line starts with its syslog priority
(`<4>` for a warning, sd-daemon(3)), so `journalctl -p warning` can filter. On a
terminal, lines are written above the progress bar, never glued onto its end.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import IO, Any, TextIO, cast

import structlog
from structlog.typing import EventDict

from harvester import redaction
from harvester.progress import write_above


def register_secret(secret: str) -> None:
    """Redact the key `secret` from every later log event: whole, any prefix of 8
    characters or more, in any spelling (`harvester.redaction`). Loading the key
    registers it already; this is for keys that are not loaded (the demo's)."""
    redaction.register(secret)


_redact_text = redaction.redact


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item) for item in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _redact_text(str(value))


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last word before rendering."""
    return {key: _redact(value) for key, value in event_dict.items()}


# sd-daemon(3): the prefix journald reads as a line's syslog priority.
SYSLOG_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}

Renderer = Callable[[Any, str, EventDict], str]


def is_journal(stream: IO[str]) -> bool:
    """Whether `stream` is the journald stream systemd connected us to.

    $JOURNAL_STREAM ("DEVICE:INODE") is inherited by every child process, whatever
    its own stderr is, so it counts only if the stream is that very file."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(stream.fileno())
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):  # unset, malformed, or no descriptor
        return False


def with_priority(renderer: Renderer) -> Renderer:
    """A renderer whose lines start with their syslog priority, `<6>{...}`."""

    def render(logger: Any, method: str, event_dict: EventDict) -> str:
        priority = SYSLOG_PRIORITIES.get(event_dict.get("level", ""), 6)
        return f"<{priority}>{renderer(logger, method, event_dict)}"

    return render


class _LineWriter:
    """Where log lines go: the given stream, else sys.stderr as it is at each write,
    not as it was when logging was configured (tests and embedding programs swap it).
    Lines are written above a progress bar on the same terminal."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream

    def _target(self) -> IO[str]:
        return self._stream or sys.stderr

    def write(self, text: str) -> None:
        write_above(self._target(), text)

    def flush(self) -> None:
        self._target().flush()


def configure_logging(
    level: str = "info", *, stream: IO[str] | None = None, json_lines: bool | None = None
) -> None:
    target = stream or sys.stderr
    if json_lines is None:
        json_lines = not target.isatty()
    renderer: Renderer = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)  # type: ignore[assignment]
    )
    if is_journal(target):
        renderer = with_priority(renderer)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # A file-like object is all structlog needs of `file`: it calls write and flush.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _LineWriter(stream))),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


MESSAGE_CHARS = 200
# A word of a message longer than LONG_WORD_CHARS is a value the user gave (an SQL
# expression, a path, a line of a file), cut in its middle to that length, or shorter
# while the line is over MESSAGE_CHARS. Other words are never cut.
LONG_WORD_CHARS = 100
SHORTER_WORD_CHARS = 48


def say(text: str, *, priority: str = "error") -> None:
    """One message of the CLI's own on stderr (not a log event): under journald each
    line with its syslog priority, so `journalctl -p` sees it; on a terminal above the
    progress bar. Only a value the user gave can make it long: such a word is cut in
    its middle, keeping how it starts and ends, and nothing else is, so the words that
    say what is wrong and what to do are always there. A list to choose from is on
    lines of its own (`errors.listing`)."""
    lines = [_fitted(line) for line in text.split("\n")]
    prefix = f"<{SYSLOG_PRIORITIES[priority]}>" if is_journal(sys.stderr) else ""
    write_above(sys.stderr, "".join(f"{prefix}{line}\n" for line in lines))


def _fitted(line: str) -> str:
    words = line.split(" ")
    fitted = line
    for limit in (LONG_WORD_CHARS, SHORTER_WORD_CHARS):
        fitted = " ".join(
            _cut(word, limit) if len(word) > LONG_WORD_CHARS else word for word in words
        )
        if len(fitted) <= MESSAGE_CHARS:
            break
    return fitted


def _cut(word: str, limit: int) -> str:
    return word[: limit // 2] + "…" + word[-(limit - limit // 2 - 1) :]
