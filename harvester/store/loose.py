"""The fetch API's loose values, read into what SQLite should hold.

Real answers bend the documented shape: numbers arrive as numbers, as text ("95")
or as -1 for "unknown"; dates as ISO text or as Unix seconds; a list where one value
was expected. Pure functions, shared by the readers of an answer's sections
(`snapshot`) and of its posts (`posts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_INTEGER = 2**63 - 1  # SQLite's largest integer


def count(value: Any) -> int | None:
    """A non-negative whole number that fits SQLite, from a number or numeric text;
    None for -1 (the API's "unknown"), booleans, and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            value = int(digits)
        else:
            try:
                value = float(digits)
            except ValueError:
                return None
    if isinstance(value, float):
        if not 0 <= value <= MAX_INTEGER:  # NaN fails this too
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_INTEGER:
        return value
    return None


def number(value: Any) -> float | None:
    """A non-negative number from a number or numeric text; None otherwise (and for -1)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return result if 0 <= result < float("inf") else None


def timestamp(value: Any) -> str | None:
    """ISO 8601 text as the API wrote it, or Unix seconds turned into it (UTC)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def text(value: Any, *, lower: bool = False) -> str | None:
    if isinstance(value, list):  # handles, isbns: the first names the output
        value = value[0] if value else None
    if value is None or isinstance(value, dict | bool):
        return None
    stripped = str(value).strip()
    if not stripped:
        return None
    return stripped.lower() if lower else stripped


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def first(entry: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if entry.get(name) is not None:
            return entry[name]
    return None
