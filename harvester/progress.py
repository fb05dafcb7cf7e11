"""A one-line progress display for terminals; silent when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO


class ProgressLine:
    """Redraws one line on a terminal at most ten times a second."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._started_s = time.monotonic()
        self._last_draw_s = 0.0
        self._drawn = False

    def update(self, completed: int, note: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now_s = time.monotonic()
        if not force and now_s - self._last_draw_s < 0.1:
            return
        self._last_draw_s = now_s
        self.stream.write("\r\x1b[2K" + self._render(completed, now_s, note))
        self.stream.flush()
        self._drawn = True

    def _render(self, completed: int, now_s: float, note: str) -> str:
        elapsed_s = max(now_s - self._started_s, 1e-9)
        rate = completed / elapsed_s
        parts = [self.label]
        if self.total:
            fraction = min(completed / self.total, 1.0)
            filled = int(fraction * 24)
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {completed:,}/{self.total:,}")
            parts.append(f"{fraction:6.1%}")
            if rate > 0 and completed < self.total:
                parts.append(f"ETA {_clock((self.total - completed) / rate)}")
        else:
            parts.append(f"{completed:,}")
        parts.append(f"{rate:,.0f}/s")
        if note:
            parts.append(note)
        return " ".join(parts)

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
