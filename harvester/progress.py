"""A one-line progress display for terminals; silent when output is not a terminal.

The bar is redrawn in place ("\\r", erase line, text) and never ends its line, so
anything else written to the same terminal while it shows would land glued onto
its end. The bar that was drawn last is therefore the module's `_showing` bar, and
`write_above` (which the log writer uses) erases it, writes whole lines, and draws
it again below them. One lock orders the bar's draws and those writes, as logs may
come from another thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

ERASE_LINE = "\r\x1b[2K"  # to the line's start, then erase the whole line

_lock = threading.RLock()
_showing: ProgressLine | None = None


class ProgressLine:
    """Redraws one line on a terminal at most ten times a second."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        unit: str = "",
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit  # e.g. "MB": counts and the rate are shown in it
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._started_s = time.monotonic()
        self._last_draw_s = 0.0
        self._line = ""  # the text on screen, "" until the first draw
        self._latest: tuple[int, str] = (0, "")  # the last update, drawn or not

    def update(self, completed: int, note: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        self._latest = (completed, note)
        now_s = time.monotonic()
        if not force and now_s - self._last_draw_s < 0.1:
            return
        self._last_draw_s = now_s
        global _showing
        with _lock:
            self._line = _fit(self._render(completed, now_s, note), self.stream)
            self.redraw()
            _showing = self

    def redraw(self) -> None:
        """Draw the last text again (after lines written above it)."""
        self.stream.write(ERASE_LINE + self._line)
        self.stream.flush()

    def shows_on(self, stream: IO[str]) -> bool:
        """Whether this bar is on screen where `stream` writes."""
        return self.enabled and bool(self._line) and _same_file(self.stream, stream)

    def _render(self, completed: int, now_s: float, note: str) -> str:
        elapsed_s = max(now_s - self._started_s, 1e-9)
        rate = completed / elapsed_s
        parts = [self.label]
        if self.total:
            fraction = min(completed / self.total, 1.0)
            filled = int(fraction * 24)
            unit = f" {self.unit}" if self.unit else ""
            parts.append(
                f"[{'#' * filled}{'.' * (24 - filled)}] {completed:,}/{self.total:,}{unit}"
            )
            parts.append(f"{fraction:6.1%}")
            if rate > 0 and completed < self.total:
                parts.append(f"ETA {_clock((self.total - completed) / rate)}")
        else:
            parts.append(f"{completed:,}")
        parts.append(f"{rate:,.1f} {self.unit}/s" if self.unit else f"{rate:,.0f}/s")
        if note:
            parts.append(note)
        return " ".join(parts)

    def close(self) -> None:
        """End the bar's line; later writes no longer make room for it."""
        global _showing
        if self.enabled and self._line:
            self.update(*self._latest, force=True)  # the final count, not the last drawn
        with _lock:
            if _showing is self:
                _showing = None
            if self.enabled and self._line:
                self.stream.write("\n")
                self.stream.flush()
            self._line = ""


def write_above(stream: IO[str], text: str) -> None:
    """Write `text` (whole lines, ending in a newline) to `stream`, above the progress
    bar if one shows on the same terminal: erase the bar, write, draw the bar again."""
    with _lock:
        bar = _showing
        if bar is None or not bar.shows_on(stream):
            stream.write(text)
            return
        bar.stream.flush()
        stream.write(ERASE_LINE + text)
        stream.flush()
        bar.redraw()


def _same_file(first: IO[str], second: IO[str]) -> bool:
    """The same stream, or two streams open on the same file (say the same terminal)."""
    if first is second:
        return True
    try:
        one, other = os.fstat(first.fileno()), os.fstat(second.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a StringIO), or closed
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def _fit(text: str, stream: IO[str]) -> str:
    """Cut the bar to the terminal's width: a line that wraps cannot be erased by
    ERASE_LINE, which erases only the row the cursor is on."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return text
    return text[: columns - 1] if columns > 1 else text


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
