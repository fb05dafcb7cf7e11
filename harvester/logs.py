"""structlog, configured in exactly one place.

JSON lines when stderr is not a terminal (journald, files, pipes), readable console
output when it is. Every event passes a redaction step that replaces the API key
(raw and percent-encoded) wherever it appears, tracebacks included: the key must
never reach a log, whatever a library puts in an exception message.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any
from urllib.parse import quote

import structlog

_secrets: list[str] = []


def register_secret(secret: str) -> None:
    """Redact `secret` (and its URL-encoded form) from every later log event."""
    for form in (secret, quote(secret, safe="")):
        if form and form not in _secrets:
            _secrets.append(form)


def _redact_text(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


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


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the last word before rendering."""
    return {key: _redact(value) for key, value in event_dict.items()}


class _CurrentStderr:
    """sys.stderr as it is at each write, not as it was when logging was configured
    (tests and embedding programs swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "info", *, stream: IO[str] | None = None, json_lines: bool | None = None
) -> None:
    if json_lines is None:
        json_lines = not (stream or sys.stderr).isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
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
        logger_factory=structlog.WriteLoggerFactory(file=stream or _CurrentStderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
