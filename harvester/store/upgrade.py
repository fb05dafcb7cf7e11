"""Progress of a schema upgrade that moves rows, for the person waiting on it.

Most migrations change a few definitions and take milliseconds. The ones that move
data (m004 compressed every body; m006 and m007 rewrite mentions and the tweet
ledger) take minutes on a store of millions of outputs, and they run when a command
first opens the store for writing. Silence for minutes reads as a hang, so each step
shows a progress line on a terminal and, for logs and journald, a line when it starts,
every 10 seconds while it runs, and when it ends.
"""

from __future__ import annotations

import time

from harvester.logs import get_logger
from harvester.progress import ProgressLine

log = get_logger("harvester.store")
LOG_EVERY_S = 10.0


class UpgradeProgress:
    """One data-moving step of one migration: `advance` as rows move, then `close`."""

    def __init__(self, step: str, total: int) -> None:
        self.step = step
        self.total = total
        self.done = 0
        self._bar = ProgressLine(f"upgrading the store: {step}", total)
        self._logged_s = time.monotonic()
        if total:
            log.info("store.upgrade.start", step=step, total=total)

    def advance(self, rows: int) -> None:
        self.done += rows
        self._bar.update(self.done)
        now_s = time.monotonic()
        if now_s - self._logged_s >= LOG_EVERY_S:
            self._logged_s = now_s
            log.info("store.upgrade.progress", step=self.step, done=self.done, total=self.total)

    def close(self) -> None:
        self._bar.close()
        if self.total:
            log.info("store.upgrade.done", step=self.step, done=self.done)

    def __enter__(self) -> UpgradeProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
